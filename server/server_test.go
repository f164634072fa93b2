package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Test graphs.
type (
	Msg   struct{ Text string }
	Shout struct{ Text string }
	Req   struct{ Name string }
	Done  struct{ Total int }
	Tick  struct{ N int }
	Used  struct{ N int }
	A     string
	B     string
)

// ErrNever is a step error no test expects.
var ErrNever = errors.New("never")

func testGraphs() []*docket.Graph {
	echo := docket.NewGraph("echo", docket.Input[Msg]())
	docket.Register1(echo, func(_ context.Context, m Msg) (Shout, error) {
		return Shout{Text: strings.ToUpper(m.Text)}, nil
	}, docket.Name("shout"))

	wait := docket.NewGraph("wait", docket.Input[Req]())
	docket.Register1(wait, func(ctx context.Context, r Req) (Done, error) {
		total := 0
		docket.HandleQuery(ctx, "total", func() (int, error) { return total, nil })
		docket.HandleUpdate(ctx, "add", func(_ context.Context, n int) (int, error) {
			if n == 13 {
				return 0, errors.New("unlucky")
			}
			total += n
			return total, nil
		}, func(n int) error {
			if n < 0 {
				return errors.New("only positive numbers")
			}
			return nil
		})
		if _, err := docket.Receive[string](ctx, "go"); err != nil {
			return Done{}, err
		}
		return Done{Total: total}, nil
	}, docket.Name("hold"))

	typed := docket.NewGraph("typed", docket.Input[Req]())
	docket.SignalInput[Tick](typed, "tick")
	docket.Register2(typed, func(_ context.Context, _ Req, t Tick) (Used, error) { return Used(t), nil }, docket.Name("use"))

	multi := docket.NewGraph("multi", docket.Input[Req]())
	docket.Register1(multi, func(_ context.Context, r Req) (A, error) { return A(r.Name), nil }, docket.Name("a"))
	docket.Register1(multi, func(_ context.Context, r Req) (B, error) { return B(r.Name), nil }, docket.Name("b"))
	return []*docket.Graph{echo, wait, typed, multi}
}

type fixture struct {
	t   *testing.T
	eng *docket.Engine
	srv *Server
	ts  *httptest.Server
}

// setup runs a server over an engine with the test graphs on a SQLite file.
func setup(t *testing.T, cfg Config) *fixture {
	t.Helper()
	db := "sqlite:" + filepath.Join(t.TempDir(), "docket.db")
	eng, err := docket.Open(context.Background(), docket.Config{Store: db, Graphs: testGraphs(), PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return serveEngine(t, eng, cfg)
}

func serveEngine(t *testing.T, eng *docket.Engine, cfg Config) *fixture {
	t.Helper()
	cfg.Engine = eng
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 20 * time.Millisecond
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv)
	ts.Config.RegisterOnShutdown(srv.Close)
	ts.Start()
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
		eng.Close()
	})
	return &fixture{t: t, eng: eng, srv: srv, ts: ts}
}

// call sends a request and returns the status and body. body may be a
// string (sent as is) or a value (sent as JSON).
func (f *fixture) call(method, path string, body any) (int, []byte) {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := f.ts.Client().Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	return res.StatusCode, data
}

// json calls and decodes the answer, failing unless the status is want.
func (f *fixture) json(method, path string, body any, want int, out any) {
	f.t.Helper()
	status, data := f.call(method, path, body)
	if status != want {
		f.t.Fatalf("%s %s: status %d, want %d: %s", method, path, status, want, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			f.t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
}

// fails checks that a call answers an error with the status and code.
func (f *fixture) fails(method, path string, body any, status int, code string) ErrorDetail {
	f.t.Helper()
	got, data := f.call(method, path, body)
	var eb ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || got != status || eb.Error.Code != code {
		f.t.Fatalf("%s %s: got %d %s, want %d %s", method, path, got, data, status, code)
	}
	if eb.Error.Message == "" || strings.Contains(eb.Error.Message, "goroutine ") {
		f.t.Errorf("%s %s: message %q", method, path, eb.Error.Message)
	}
	return eb.Error
}

func (f *fixture) start(graph, id string, inputs map[string]any) {
	f.t.Helper()
	raw := map[string]json.RawMessage{}
	for k, v := range inputs {
		b, _ := json.Marshal(v)
		raw[k] = b
	}
	f.json("POST", "/api/v1/executions", StartRequest{Graph: graph, ID: id, Inputs: raw}, http.StatusCreated, nil)
}

// waitFor polls the execution until cond holds.
func (f *fixture) waitFor(id string, cond func(*Execution) bool) *Execution {
	f.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var x Execution
		f.json("GET", "/api/v1/executions/"+url.PathEscape(id), nil, http.StatusOK, &x)
		if cond(&x) {
			return &x
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("%s: condition not met; last state %+v", id, x)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func finished(x *Execution) bool {
	return x.Status == "completed" || x.Status == "failed" || x.Status == "cancelled"
}

func waiting(x *Execution) bool { return len(x.Waiting) > 0 }

func TestGraphs(t *testing.T) {
	f := setup(t, Config{Examples: map[string]json.RawMessage{
		"echo":             json.RawMessage(`{"server.Msg":{"Text":"hi"}}`),
		"wait/update/add":  json.RawMessage(`5`),
		"wait/signal/go":   json.RawMessage(`"now"`),
		"wait/query/total": nil,
	}})
	var gl GraphList
	f.json("GET", "/api/v1/graphs", nil, http.StatusOK, &gl)
	var names []string
	for _, g := range gl.Graphs {
		names = append(names, g.Name)
		if g.Layout == nil || len(g.Layout.Nodes) == 0 {
			t.Errorf("%s: no layout", g.Name)
		}
	}
	if got := strings.Join(names, " "); got != "echo multi typed wait" {
		t.Errorf("graphs %q", got)
	}
	var g GraphInfo
	f.json("GET", "/api/v1/graphs/wait", nil, http.StatusOK, &g)
	if g.Inputs[0] != "server.Req" || string(g.UpdateExamples["add"]) != "5" || string(g.SignalExamples["go"]) != `"now"` ||
		len(g.Queries) != 1 || g.Queries[0] != "total" {
		t.Errorf("wait graph: %+v", g)
	}
	f.json("GET", "/api/v1/graphs/echo", nil, http.StatusOK, &g)
	if string(g.Example) != `{"server.Msg":{"Text":"hi"}}` {
		t.Errorf("echo example %s", g.Example)
	}
	f.fails("GET", "/api/v1/graphs/nope", nil, http.StatusNotFound, CodeUnknownGraph)
	var info Info
	f.json("GET", "/api/v1/info", nil, http.StatusOK, &info)
	if info.Graphs != 4 || info.Version == "" {
		t.Errorf("info %+v", info)
	}
}

func TestStartDescribeHistory(t *testing.T) {
	f := setup(t, Config{})
	body := StartRequest{Graph: "echo", ID: "e/1", Inputs: map[string]json.RawMessage{"server.Msg": json.RawMessage(`{"Text":"hi"}`)}}
	status, data := f.call("POST", "/api/v1/executions", body)
	var sr StartResponse
	if err := json.Unmarshal(data, &sr); err != nil || status != http.StatusCreated || sr.ID != "e/1" || !sr.Created {
		t.Fatalf("start: %d %s", status, data)
	}
	// The ID is an idempotency key.
	f.json("POST", "/api/v1/executions", body, http.StatusOK, &sr)
	if sr.Created {
		t.Error("second start created a new execution")
	}
	x := f.waitFor("e/1", finished)
	if x.Status != "completed" || x.Result == nil || string(x.Result.Value) != `{"Text":"HI"}` || x.Result.Type != "server.Shout" {
		t.Fatalf("execution %+v, result %+v", x, x.Result)
	}
	if len(x.Steps) != 1 || x.Steps[0].Name != "shout" || x.Steps[0].Status != "done" || x.Steps[0].Attempts != 1 ||
		string(x.Steps[0].Output.Value) != `{"Text":"HI"}` {
		t.Errorf("steps %+v", x.Steps)
	}
	if len(x.Inputs) != 1 || x.Inputs[0].Type != "server.Msg" || string(x.Inputs[0].Value) != `{"Text":"hi"}` {
		t.Errorf("inputs %+v", x.Inputs)
	}
	if !x.GraphServed || x.Layout == nil || x.Layout.Partial || len(x.Layout.Nodes) != 2 || len(x.Layout.Edges) != 1 {
		t.Errorf("layout %+v", x.Layout)
	}
	var h History
	f.json("GET", "/api/v1/executions/e%2F1/history", nil, http.StatusOK, &h)
	var kinds []string
	for _, e := range h.Events {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, " "); !strings.HasPrefix(got, "started step-ready") || !strings.HasSuffix(got, "step-done finished") {
		t.Errorf("history kinds %q", got)
	}
	// A random ID when none is given.
	body.ID = ""
	f.json("POST", "/api/v1/executions", body, http.StatusCreated, &sr)
	if sr.ID == "" || sr.ID == "e/1" {
		t.Errorf("random ID %q", sr.ID)
	}
}

func TestErrors(t *testing.T) {
	f := setup(t, Config{MaxBodyBytes: 1024})
	msg := map[string]json.RawMessage{"server.Msg": json.RawMessage(`{"Text":"x"}`)}
	f.start("echo", "done-1", map[string]any{"server.Msg": Msg{"x"}})
	f.waitFor("done-1", finished)

	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "POST", "/api/v1/executions", `{"graph": "echo",`, 400, CodeBadRequest},
		{"empty body", "POST", "/api/v1/executions", ``, 400, CodeBadRequest},
		{"two values", "POST", "/api/v1/executions", `{"graph":"echo"} {}`, 400, CodeBadRequest},
		{"unknown field", "POST", "/api/v1/executions", `{"graph":"echo","input":{}}`, 400, CodeBadRequest},
		{"no graph", "POST", "/api/v1/executions", `{}`, 400, CodeBadRequest},
		{"unknown graph", "POST", "/api/v1/executions", StartRequest{Graph: "nope"}, 404, CodeUnknownGraph},
		{"unknown input", "POST", "/api/v1/executions", StartRequest{Graph: "echo", Inputs: map[string]json.RawMessage{"x.Y": json.RawMessage(`1`)}}, 400, CodeInvalidInput},
		{"input of the wrong shape", "POST", "/api/v1/executions", StartRequest{Graph: "echo", Inputs: map[string]json.RawMessage{"server.Msg": json.RawMessage(`[1]`)}}, 400, CodeInvalidInput},
		{"missing input", "POST", "/api/v1/executions", StartRequest{Graph: "echo"}, 400, CodeInvalidInput},
		{"several results", "POST", "/api/v1/executions", StartRequest{Graph: "multi"}, 400, CodeInvalidInput},
		{"unknown result", "POST", "/api/v1/executions", StartRequest{Graph: "echo", Result: "x.Y", Inputs: msg}, 400, CodeInvalidInput},
		{"bad timeout", "POST", "/api/v1/executions", StartRequest{Graph: "echo", Timeout: "soon", Inputs: msg}, 400, CodeBadRequest},
		{"ID of another graph", "POST", "/api/v1/executions", StartRequest{Graph: "wait", ID: "done-1", Inputs: map[string]json.RawMessage{"server.Req": json.RawMessage(`{}`)}}, 409, CodeAlreadyStarted},
		{"body too large", "POST", "/api/v1/executions", `{"graph":"echo","id":"` + strings.Repeat("x", 2000) + `"}`, 413, CodeTooLarge},
		{"signal body too large", "POST", "/api/v1/executions/done-1/signals", `{"name":"go","payload":"` + strings.Repeat("x", 2000) + `"}`, 413, CodeTooLarge},
		{"describe unknown", "GET", "/api/v1/executions/nope", nil, 404, CodeNotFound},
		{"history unknown", "GET", "/api/v1/executions/nope/history", nil, 404, CodeNotFound},
		{"events unknown", "GET", "/api/v1/executions/nope/events", nil, 404, CodeNotFound},
		{"signal unknown", "POST", "/api/v1/executions/nope/signals", SignalRequest{Name: "go"}, 404, CodeNotFound},
		{"signal without name", "POST", "/api/v1/executions/done-1/signals", SignalRequest{}, 400, CodeBadRequest},
		{"signal finished", "POST", "/api/v1/executions/done-1/signals", SignalRequest{Name: "go"}, 409, CodeFinished},
		{"update unknown", "POST", "/api/v1/executions/nope/updates", UpdateRequest{Name: "add"}, 404, CodeNotFound},
		{"update finished", "POST", "/api/v1/executions/done-1/updates", UpdateRequest{Name: "add"}, 409, CodeFinished},
		{"update bad JSON", "POST", "/api/v1/executions/done-1/updates", `{"name":"add","request":{]}`, 400, CodeBadRequest},
		{"query unknown execution", "GET", "/api/v1/executions/nope/queries/docket.status", nil, 404, CodeNotFound},
		{"cancel unknown", "POST", "/api/v1/executions/nope/cancel", nil, 404, CodeNotFound},
		{"cancel finished", "POST", "/api/v1/executions/done-1/cancel", nil, 409, CodeFinished},
		{"bad status filter", "GET", "/api/v1/executions?status=asleep", nil, 400, CodeBadRequest},
		{"bad limit", "GET", "/api/v1/executions?limit=0", nil, 400, CodeBadRequest},
		{"bad time", "GET", "/api/v1/executions?created_after=yesterday", nil, 400, CodeBadRequest},
		{"bad cursor", "GET", "/api/v1/executions?cursor=zzz", nil, 400, CodeBadCursor},
		{"bad cursor in a stream", "GET", "/api/v1/events?cursor=zzz", nil, 400, CodeBadCursor},
		{"no such endpoint", "GET", "/api/v1/nothing", nil, 404, CodeNoRoute},
		{"wrong method", "DELETE", "/api/v1/executions/done-1", nil, 405, CodeMethod},
		{"outside the API", "GET", "/nothing", nil, 404, CodeNoRoute},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f.t = t
			f.fails(c.method, c.path, c.body, c.status, c.code)
		})
	}
	f.t = t
	// Not JSON at all.
	req, _ := http.NewRequest("POST", f.ts.URL+"/api/v1/executions", strings.NewReader("graph=echo"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnsupportedMediaType || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("form post: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
}

func TestListPaging(t *testing.T) {
	f := setup(t, Config{})
	for i := range 5 {
		f.start("echo", fmt.Sprintf("e-%d", i), map[string]any{"server.Msg": Msg{"x"}})
		time.Sleep(2 * time.Millisecond) // distinct creation times
	}
	f.start("wait", "w-1", map[string]any{"server.Req": Req{}})
	for i := range 5 {
		f.waitFor(fmt.Sprintf("e-%d", i), finished)
	}
	seen := map[string]bool{}
	var order []string
	cursor, pages := "", 0
	for {
		var page ExecutionList
		f.json("GET", "/api/v1/executions?graph=echo&limit=2&cursor="+url.QueryEscape(cursor), nil, http.StatusOK, &page)
		pages++
		for _, x := range page.Executions {
			if seen[x.ID] || x.Graph != "echo" || x.Status != "completed" {
				t.Errorf("page %d: %+v", pages, x)
			}
			seen[x.ID] = true
			order = append(order, x.ID)
		}
		if cursor = page.NextCursor; cursor == "" {
			break
		}
		if pages > 5 {
			t.Fatal("too many pages")
		}
	}
	if pages != 3 || strings.Join(order, " ") != "e-4 e-3 e-2 e-1 e-0" {
		t.Errorf("%d pages, order %v", pages, order)
	}
	var page ExecutionList
	f.json("GET", "/api/v1/executions?status=running", nil, http.StatusOK, &page)
	if len(page.Executions) != 1 || page.Executions[0].ID != "w-1" {
		t.Errorf("running: %+v", page.Executions)
	}
	future := url.QueryEscape(time.Now().Add(time.Hour).Format(time.RFC3339))
	f.json("GET", "/api/v1/executions?created_after="+future, nil, http.StatusOK, &page)
	if len(page.Executions) != 0 {
		t.Errorf("created in the future: %+v", page.Executions)
	}
	f.json("GET", "/api/v1/executions?created_before="+future+"&limit=100", nil, http.StatusOK, &page)
	if len(page.Executions) != 6 || page.NextCursor != "" {
		t.Errorf("all: %d, cursor %q", len(page.Executions), page.NextCursor)
	}
}

func TestSignalUpdateQueryCancel(t *testing.T) {
	f := setup(t, Config{})
	f.start("wait", "w-1", map[string]any{"server.Req": Req{Name: "a"}})
	x := f.waitFor("w-1", waiting)
	if x.Steps[0].Status != "suspended" || x.Waiting[0] != "hold: signal go" || strings.Join(x.Signals, ",") != "go" {
		t.Fatalf("waiting execution: %+v", x)
	}
	var q QueryResponse
	f.json("GET", "/api/v1/executions/w-1/queries/total", nil, http.StatusOK, &q)
	if string(q.Answer) != "0" {
		t.Errorf("total %s", q.Answer)
	}
	var u UpdateResponse
	f.json("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "add", Request: json.RawMessage("5"), UpdateID: "u1"}, http.StatusOK, &u)
	if string(u.Response) != "5" {
		t.Errorf("add 5: %s", u.Response)
	}
	// The same update ID answers the first answer again.
	f.json("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "add", Request: json.RawMessage("5"), UpdateID: "u1"}, http.StatusOK, &u)
	if string(u.Response) != "5" {
		t.Errorf("add 5 again: %s", u.Response)
	}
	f.fails("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "add", Request: json.RawMessage("-1")}, 400, CodeUpdateRejected)
	f.fails("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "add", Request: json.RawMessage("13")}, 422, CodeUpdateFailed)
	f.fails("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "multiply"}, 404, CodeUnknownUpdate)
	f.fails("POST", "/api/v1/executions/w-1/updates", UpdateRequest{}, 400, CodeBadRequest)
	f.fails("GET", "/api/v1/executions/w-1/queries/average", nil, 404, CodeUnknownQuery)
	f.json("GET", "/api/v1/executions/w-1/queries/total", nil, http.StatusOK, &q)
	if string(q.Answer) != "5" {
		t.Errorf("total after update %s", q.Answer)
	}
	f.json("GET", "/api/v1/executions/w-1/queries/docket.status", nil, http.StatusOK, &q)
	if string(q.Answer) != `"running"` {
		t.Errorf("status %s", q.Answer)
	}
	var acc Accepted
	f.json("POST", "/api/v1/executions/w-1/signals", SignalRequest{Name: "go", Payload: json.RawMessage(`"now"`)}, http.StatusAccepted, &acc)
	if acc.ID != "w-1" || acc.Note != "" {
		t.Errorf("signal: %+v", acc)
	}
	x = f.waitFor("w-1", finished)
	if x.Status != "completed" || string(x.Result.Value) != `{"Total":5}` {
		t.Errorf("after the signal: %s %+v", x.Status, x.Result)
	}
	var h History
	f.json("GET", "/api/v1/executions/w-1/history", nil, http.StatusOK, &h)
	var kinds []string
	for _, e := range h.Events {
		kinds = append(kinds, e.Kind+":"+e.Name)
	}
	if got := strings.Join(kinds, " "); !strings.Contains(got, "update:add") || !strings.Contains(got, "signal:go") {
		t.Errorf("history %s", got)
	}

	// A declared signal's payload must fit its type.
	f.start("typed", "t-1", map[string]any{"server.Req": Req{}})
	f.fails("POST", "/api/v1/executions/t-1/signals", SignalRequest{Name: "tick", Payload: json.RawMessage(`"seven"`)}, 400, CodeInvalidInput)
	f.json("POST", "/api/v1/executions/t-1/signals", SignalRequest{Name: "tick", Payload: json.RawMessage(`{"N":7}`)}, http.StatusAccepted, nil)
	if x := f.waitFor("t-1", finished); string(x.Result.Value) != `{"N":7}` {
		t.Errorf("typed: %+v", x.Result)
	}

	// Cancel.
	f.start("wait", "w-2", map[string]any{"server.Req": Req{}})
	f.waitFor("w-2", waiting)
	f.json("POST", "/api/v1/executions/w-2/cancel", nil, http.StatusAccepted, &acc)
	if x := f.waitFor("w-2", finished); x.Status != "cancelled" || x.Steps[0].Status != "cancelled" {
		t.Errorf("cancelled: %+v", x)
	}
}

// readEvent reads the next server-sent event.
func readEvent(t *testing.T, r *bufio.Reader) (string, []byte) {
	t.Helper()
	var name string
	var data []byte
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if name != "" {
				return name, data
			}
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = []byte(strings.TrimPrefix(line, "data: "))
		}
	}
}

func TestEventStreams(t *testing.T) {
	f := setup(t, Config{})
	f.start("wait", "w-1", map[string]any{"server.Req": Req{}})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/api/v1/executions/w-1/events", nil)
	res, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	r := bufio.NewReader(res.Body)
	signalled := false
	for {
		name, data := readEvent(t, r)
		var snap Snapshot
		if err := json.Unmarshal(data, &snap); err != nil || name != "execution" {
			t.Fatalf("event %s: %v %s", name, err, data)
		}
		if finished(snap.Execution) {
			if snap.Execution.Status != "completed" || snap.History[len(snap.History)-1].Kind != "finished" {
				t.Errorf("last snapshot %+v", snap)
			}
			break
		}
		if waiting(snap.Execution) && !signalled {
			f.json("POST", "/api/v1/executions/w-1/signals", SignalRequest{Name: "go"}, http.StatusAccepted, nil)
			signalled = true
		}
	}

	// The list stream sends the page, and again when it changes.
	req, _ = http.NewRequestWithContext(ctx, "GET", f.ts.URL+"/api/v1/events?graph=echo", nil)
	res2, err := f.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res2.Body.Close()
	r = bufio.NewReader(res2.Body)
	name, data := readEvent(t, r)
	var page ExecutionList
	if err := json.Unmarshal(data, &page); err != nil || name != "executions" || len(page.Executions) != 0 {
		t.Fatalf("first list event %s %s", name, data)
	}
	f.start("echo", "e-1", map[string]any{"server.Msg": Msg{"x"}})
	for {
		_, data = readEvent(t, r)
		if err := json.Unmarshal(data, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Executions) == 1 && page.Executions[0].Status == "completed" {
			break
		}
	}
	// Closing the server ends open streams.
	f.srv.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Errorf("stream did not end cleanly: %v", err)
	}
}

func TestPanicsAreRecovered(t *testing.T) {
	f := setup(t, Config{})
	f.srv.mux.HandleFunc("GET /api/v1/boom", func(http.ResponseWriter, *http.Request) { panic("boom") })
	e := f.fails("GET", "/api/v1/boom", nil, http.StatusInternalServerError, CodeInternal)
	if strings.Contains(e.Message, "boom") {
		t.Errorf("the panic value reached the client: %q", e.Message)
	}
}

func TestBasePathAndUI(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without an engine succeeded")
	}
	f := setup(t, Config{BasePath: "/docket/"})
	if _, err := New(Config{Engine: f.eng, BasePath: "docket"}); err == nil {
		t.Error("a relative base path was accepted")
	}
	var info Info
	f.json("GET", "/docket/api/v1/info", nil, http.StatusOK, &info)
	if info.BasePath != "/docket" {
		t.Errorf("base path %q", info.BasePath)
	}
	f.fails("GET", "/api/v1/info", nil, 404, CodeNoRoute)
	status, page := f.call("GET", "/docket/", nil)
	if status != 200 || !bytes.Contains(page, []byte(`<meta name="docket-base" content="/docket">`)) ||
		!bytes.Contains(page, []byte(`src="/docket/ui/app.js"`)) {
		t.Errorf("index: %d %s", status, page)
	}
	for _, asset := range []string{"app.js", "execution.js", "graph.js", "util.js", "style.css", "favicon.svg"} {
		if status, body := f.call("GET", "/docket/ui/"+asset, nil); status != 200 || len(body) < 100 {
			t.Errorf("%s: %d, %d bytes", asset, status, len(body))
		}
	}
	res, err := f.ts.Client().Get(f.ts.URL + "/docket/api/v1/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.HasPrefix(spec, []byte("openapi: 3")) {
		t.Errorf("openapi.yaml: %.40s", spec)
	}
	// Every endpoint is documented.
	for _, p := range []string{"/info", "/graphs", "/graphs/{name}", "/executions", "/events", "/executions/{id}",
		"/executions/{id}/history", "/executions/{id}/events", "/executions/{id}/signals", "/executions/{id}/updates",
		"/executions/{id}/queries/{name}", "/executions/{id}/cancel", "/openapi.yaml"} {
		if !bytes.Contains(spec, []byte("\n  "+p+":\n")) {
			t.Errorf("openapi.yaml lacks %s", p)
		}
	}
	// The base path without its slash redirects.
	c := f.ts.Client()
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	res, err = c.Get(f.ts.URL + "/docket")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusMovedPermanently || res.Header.Get("Location") != "/docket/" {
		t.Errorf("redirect: %d %s", res.StatusCode, res.Header.Get("Location"))
	}
}

// Handler mounts the API and UI at the root.
func TestHandler(t *testing.T) {
	eng, err := docket.Open(context.Background(), docket.Config{Store: "memory:", Graphs: testGraphs()})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	rec := httptest.NewRecorder()
	Handler(eng).ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/graphs", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), `"name":"echo"`) {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}
