package server

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

// A server whose engine runs no graphs (docket server) over a store that
// another engine works on: it describes, lists, signals and cancels, and
// says clearly what it cannot do.
func TestClientOnlyServer(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "shared.db")
	ctx := context.Background()
	worker, err := docket.Open(ctx, docket.Config{Store: db, Graphs: testGraphs(), PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	client, err := docket.Open(ctx, docket.Config{Store: db, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	f := serveEngine(t, client, Config{})

	for _, id := range []string{"w-1", "w-2"} {
		if _, err := worker.StartEncoded(ctx, docket.StartRequest{Graph: "wait", ID: id,
			Inputs: map[string]json.RawMessage{"server.Req": json.RawMessage(`{"Name":"x"}`)}}); err != nil {
			t.Fatal(err)
		}
	}
	var info Info
	f.json("GET", "/api/v1/info", nil, http.StatusOK, &info)
	var gl GraphList
	f.json("GET", "/api/v1/graphs", nil, http.StatusOK, &gl)
	if info.Graphs != 0 || len(gl.Graphs) != 0 {
		t.Errorf("graphs: %d, %v", info.Graphs, gl.Graphs)
	}
	x := f.waitFor("w-1", waiting)
	if x.GraphServed || !x.Layout.Partial || len(x.Layout.Nodes) != 1 || x.Steps[0].Name != "hold" || strings.Join(x.Signals, ",") != "go" {
		t.Errorf("describe: %+v %+v", x, x.Layout)
	}
	var page ExecutionList
	f.json("GET", "/api/v1/executions?graph=wait", nil, http.StatusOK, &page)
	if len(page.Executions) != 2 {
		t.Errorf("list: %+v", page)
	}
	var q QueryResponse
	f.json("GET", "/api/v1/executions/w-1/queries/docket.waiting", nil, http.StatusOK, &q)
	if string(q.Answer) != `["hold: signal go"]` {
		t.Errorf("docket.waiting: %s", q.Answer)
	}
	e := f.fails("POST", "/api/v1/executions", StartRequest{Graph: "wait"}, http.StatusNotFound, CodeUnknownGraph)
	if !strings.Contains(e.Message, "runs no graphs") {
		t.Errorf("start: %q", e.Message)
	}
	f.fails("POST", "/api/v1/executions/w-1/updates", UpdateRequest{Name: "add", Request: json.RawMessage("1")}, http.StatusNotImplemented, CodeGraphNotServed)
	f.fails("GET", "/api/v1/executions/w-1/queries/total", nil, http.StatusNotImplemented, CodeGraphNotServed)

	// The signal goes into the store; the worker's engine delivers it.
	var acc Accepted
	f.json("POST", "/api/v1/executions/w-1/signals", SignalRequest{Name: "go", Payload: json.RawMessage(`"now"`)}, http.StatusAccepted, &acc)
	f.fails("POST", "/api/v1/executions/w-1/signals", `{"name": "go", "payload": {`, http.StatusBadRequest, CodeBadRequest)
	f.fails("POST", "/api/v1/executions/nope/signals", SignalRequest{Name: "go"}, http.StatusNotFound, CodeNotFound)
	x = f.waitFor("w-1", finished)
	if x.Status != "completed" || x.Result == nil || string(x.Result.Value) != `{"Total":0}` || string(x.Steps[0].Output.Value) != `{"Total":0}` {
		t.Errorf("after the signal: %s %+v", x.Status, x.Result)
	}
	f.fails("POST", "/api/v1/executions/w-1/signals", SignalRequest{Name: "go"}, http.StatusConflict, CodeFinished)

	// The cancellation is recorded; the worker's engine carries it out.
	f.json("POST", "/api/v1/executions/w-2/cancel", nil, http.StatusAccepted, &acc)
	if x := f.waitFor("w-2", finished); x.Status != "cancelled" {
		t.Errorf("w-2: %s", x.Status)
	}
	f.fails("POST", "/api/v1/executions/w-2/cancel", nil, http.StatusConflict, CodeFinished)
}
