package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/demo"
	"github.com/docket-run/docket/server"
)

// apiServer serves the demo graphs (with short pauses) over HTTP.
func apiServer(t *testing.T) string {
	t.Helper()
	set := demo.New(demo.Options{Pause: 0.01, ReminderDelay: 50 * time.Millisecond, RetryInterval: 5 * time.Millisecond})
	eng, err := docket.Open(context.Background(), docket.Config{
		Store: "sqlite:" + filepath.Join(t.TempDir(), "cli.db"), Graphs: set.Graphs(), PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Engine: eng, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		srv.Close()
		ts.Close()
		eng.Close()
	})
	return ts.URL
}

// cli runs the docket command in process and returns its exit status and
// output. env maps environment variables.
func cli(t *testing.T, vars map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut strings.Builder
	code := run(context.Background(), args, &env{stdin: strings.NewReader(vars["STDIN"]), stdout: &out, stderr: &errOut,
		getenv: func(k string) string { return vars[k] }})
	return code, out.String(), errOut.String()
}

func TestCLI(t *testing.T) {
	vars := map[string]string{"DOCKET_SERVER": apiServer(t)}
	ok := func(args ...string) string {
		t.Helper()
		code, out, errOut := cli(t, vars, args...)
		if code != 0 {
			t.Fatalf("docket %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}
	fails := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, out, errOut := cli(t, vars, args...)
		if code != wantCode || !strings.Contains(errOut, wantErr) {
			t.Errorf("docket %s: exit %d, stderr %q (stdout %q); want %d and %q", strings.Join(args, " "), code, errOut, out, wantCode, wantErr)
		}
		if n := strings.Count(strings.TrimSpace(errOut), "\n"); wantCode == 1 && n != 0 {
			t.Errorf("docket %s: the error is %d lines: %q", strings.Join(args, " "), n+1, errOut)
		}
	}
	waitStatus := func(id, status string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(ok("describe", id), "Status     "+status) {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not reach %s:\n%s", id, status, ok("describe", id))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	out := ok("graphs")
	if !regexp.MustCompile(`(?m)^GRAPH\s+STEPS\s+INPUTS\s+RESULTS\s+SIGNALS$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^storefront\s+6\s+demo\.CustomerID\s+demo\.Page\s+-$`).MatchString(out) {
		t.Errorf("graphs:\n%s", out)
	}
	var graphs []server.GraphInfo
	if err := json.Unmarshal([]byte(ok("graphs", "--json")), &graphs); err != nil || len(graphs) != 7 {
		t.Errorf("graphs --json: %v, %d graphs", err, len(graphs))
	}

	// Start, with the graph's one input as an argument and flags after it.
	if out := ok("start", "storefront", `"c-1"`, "--id", "s-1"); out != "started s-1 (graph storefront)\n" {
		t.Errorf("start: %q", out)
	}
	if out := ok("start", "--id", "s-1", "storefront", `"c-1"`); !strings.Contains(out, "s-1 exists already") {
		t.Errorf("start again: %q", out)
	}
	ok("start", "approval", "--id", "a-1", "--input", `demo.Expense={"employee":"ada","amount":90,"reason":"books"}`)
	vars["STDIN"] = `{"employee":"bob","amount":30,"reason":"lunch"}`
	ok("start", "approval", "-", "--id", "a-2")
	var sr server.StartResponse
	if err := json.Unmarshal([]byte(ok("start", "trip", `{"traveller":"ada","destination":"Atlantis"}`, "--json", "--id", "t-1")), &sr); err != nil || sr.ID != "t-1" || !sr.Created {
		t.Errorf("start --json: %+v %v", sr, err)
	}

	waitStatus("s-1", "completed")
	out = ok("describe", "s-1")
	for _, want := range []string{"Execution  s-1", "Graph      storefront (run 1)", `Result     demo.Page {"title":"Welcome back, Customer c-1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("describe lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^render-page\s+done\s+1\s`).MatchString(out) {
		t.Errorf("describe steps:\n%s", out)
	}
	var x server.Execution
	if err := json.Unmarshal([]byte(ok("describe", "s-1", "--json")), &x); err != nil || x.Status != "completed" || len(x.Steps) != 6 {
		t.Errorf("describe --json: %v %+v", err, x)
	}
	if out := ok("history", "s-1"); !regexp.MustCompile(`(?m)^\S+\s+started\s+-\s+storefront\s+run 1$`).MatchString(out) || !strings.Contains(out, "finished") {
		t.Errorf("history:\n%s", out)
	}

	// List, with filters and pages.
	out = ok("list")
	if !regexp.MustCompile(`(?m)^ID\s+GRAPH\s+STATUS\s+CREATED\s+TOOK\s+ERROR$`).MatchString(out) || !regexp.MustCompile(`(?m)^s-1\s+storefront\s+completed\s`).MatchString(out) {
		t.Errorf("list:\n%s", out)
	}
	out = ok("list", "--graph", "approval", "--limit", "1")
	m := regexp.MustCompile(`more: docket list --cursor (\S+)`).FindStringSubmatch(out)
	if m == nil || !strings.Contains(out, "a-2") {
		t.Fatalf("list page 1:\n%s", out)
	}
	if out := ok("list", "--graph", "approval", "--limit", "1", "--cursor", m[1]); !strings.Contains(out, "a-1") || strings.Contains(out, "more:") {
		t.Errorf("list page 2:\n%s", out)
	}
	if out := ok("list", "--status", "cancelled"); out != "No executions.\n" {
		t.Errorf("list cancelled: %q", out)
	}
	if out := ok("list", "--after", "1h", "--graph", "trip"); !strings.Contains(out, "t-1") {
		t.Errorf("list --after: %q", out)
	}
	var page server.ExecutionList
	if err := json.Unmarshal([]byte(ok("list", "--json")), &page); err != nil || len(page.Executions) < 4 {
		t.Errorf("list --json: %v %+v", err, page)
	}

	// Update, query and signal a waiting approval.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(ok("describe", "a-1"), "review: signal decision") {
		if time.Now().After(deadline) {
			t.Fatal("a-1 is not waiting")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if out := ok("update", "a-1", "comment", `{"by":"cli","text":"hi"}`); out != "1\n" {
		t.Errorf("update: %q", out)
	}
	fails(1, "docket: update \"comment\" rejected: a comment needs text (update_rejected)", "update", "a-1", "comment", `{"by":"cli","text":""}`)
	if out := ok("query", "a-1", "comments"); !strings.Contains(out, `"text": "hi"`) {
		t.Errorf("query: %q", out)
	}
	if out := ok("query", "a-1", "docket.status"); out != "\"running\"\n" {
		t.Errorf("query status: %q", out)
	}
	if out := ok("signal", "a-1", "decision", `{"approved": true, "by": "cli"}`); out != "sent signal decision to a-1\n" {
		t.Errorf("signal: %q", out)
	}
	waitStatus("a-1", "completed")
	if out := ok("describe", "a-1"); !strings.Contains(out, `"status":"approved by cli"`) {
		t.Errorf("approval result:\n%s", out)
	}

	// Cancel.
	if out := ok("cancel", "a-2"); out != "cancelling a-2\n" {
		t.Errorf("cancel: %q", out)
	}
	waitStatus("a-2", "cancelled")

	// Errors: one line, exit 1; command-line mistakes exit 2.
	fails(1, `docket: no execution "nope" (not_found)`, "describe", "nope")
	fails(1, `(finished)`, "signal", "a-1", "decision", "{}")
	fails(1, `(finished)`, "cancel", "a-2")
	fails(1, `(unknown_graph)`, "start", "nope", "--id", "x")
	fails(1, `(bad_request)`, "list", "--status", "asleep")
	fails(1, `(invalid_input)`, "start", "storefront", "--input", `demo.Nothing="x"`)
	fails(2, "the payload is not valid JSON", "signal", "a-1", "decision", "{nope")
	fails(2, "wrong number of arguments", "describe")
	fails(2, "flag provided but not defined: -bogus", "list", "--bogus")
	fails(2, `unknown command "frobnicate"`, "frobnicate")
	fails(2, "is not an http:// or https:// URL", "list", "--server", "localhost:7070")
	// Nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	l.Close()
	fails(1, "cannot reach the server at "+dead, "list", "--server", dead)

	if out := ok("version"); !strings.HasPrefix(out, "docket ") {
		t.Errorf("version: %q", out)
	}
	if out := ok("help"); !strings.Contains(out, "dev ") || !strings.Contains(out, "DOCKET_SERVER") {
		t.Errorf("help: %q", out)
	}
	if out := ok("help", "signal"); !strings.Contains(out, "usage: docket signal ID NAME") {
		t.Errorf("help signal: %q", out)
	}
	if code, _, _ := cli(t, vars); code != 2 {
		t.Errorf("no arguments: exit %d", code)
	}
}

// The dev server starts demos, picks another port when its own is taken,
// stops on cancellation, and started again on the same file resumes instead
// of starting more; docket server serves the same file without workers.
func TestDevAndServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the dev server")
	}
	db := filepath.Join(t.TempDir(), "dev.db")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	start := func(args ...string) (string, *syncBuffer, *syncBuffer, func() int) {
		t.Helper()
		return startCommand(t, args...)
	}

	url, out, errOut, stop := start("dev", "--db", db, "--addr", busy.Addr().String())
	if !strings.Contains(errOut.String(), "is in use; using another port") || strings.Contains(url, busy.Addr().String()) {
		t.Errorf("busy port: %s, %s", url, errOut.String())
	}
	if !strings.Contains(out.String(), "Started demo executions: storefront-1, flaky-1, reminder-1, approval-1, card-1, trip-1") {
		t.Errorf("dev output:\n%s", out.String())
	}
	vars := map[string]string{"DOCKET_SERVER": url}
	if code, o, e := cli(t, vars, "describe", "approval-1"); code != 0 || !strings.Contains(o, "approval") {
		t.Errorf("describe via dev: %d %s %s", code, o, e)
	}
	if code := stop(); code != 0 || !strings.Contains(out.String(), "shutting down") {
		t.Errorf("dev stopped with %d:\n%s", code, out.String())
	}

	// Again on the same file: what was in flight carries on.
	url, out, _, stop = start("dev", "--db", db, "--addr", "127.0.0.1:0")
	if !strings.Contains(out.String(), "still in flight") || strings.Contains(out.String(), "Started demo") {
		t.Errorf("second dev run:\n%s", out.String())
	}
	vars["DOCKET_SERVER"] = url
	if code, o, _ := cli(t, vars, "list", "--graph", "approval"); code != 0 || strings.Count(o, "approval-") != 1 {
		t.Errorf("second run's approvals:\n%s", o)
	}
	if code := stop(); code != 0 {
		t.Errorf("second dev run stopped with %d", code)
	}

	// docket server over the same file, without workers.
	if code, _, e := cli(t, nil, "server"); code != 2 || !strings.Contains(e, "--store is required") {
		t.Errorf("server without --store: %d %s", code, e)
	}
	url, out, _, stop = start("server", "--store", "sqlite:"+db, "--addr", "127.0.0.1:0")
	if !strings.Contains(out.String(), "no workers") {
		t.Errorf("server output:\n%s", out.String())
	}
	vars["DOCKET_SERVER"] = url
	if code, o, _ := cli(t, vars, "graphs"); code != 0 || !strings.Contains(o, "runs no graphs") {
		t.Errorf("server graphs: %d %s", code, o)
	}
	if code, o, e := cli(t, vars, "describe", "trip-1"); code != 0 || !strings.Contains(o, "book-car") {
		t.Errorf("server describe: %d %s %s", code, o, e)
	}
	if code, o, _ := cli(t, vars, "cancel", "approval-1"); code != 0 || !strings.Contains(o, "cancelling approval-1") {
		t.Errorf("server cancel: %d %s", code, o)
	}
	if code, _, e := cli(t, vars, "update", "approval-1", "comment", "{}"); code != 1 || !strings.Contains(e, "(graph_not_served)") {
		t.Errorf("server update: %d %s", code, e)
	}
	if code := stop(); code != 0 {
		t.Errorf("server stopped with %d", code)
	}
}

// startCommand runs a serving command (dev or server) until its URL is
// printed, and returns the URL, its outputs and a function that stops it
// and returns its exit code.
func startCommand(t *testing.T, args ...string) (string, *syncBuffer, *syncBuffer, func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, &env{stdout: &out, stderr: &errOut, getenv: func(string) string { return "" }})
	}()
	re := regexp.MustCompile(`web UI\s+(http://\S+)`)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := re.FindStringSubmatch(out.String()); m != nil && strings.Contains(out.String(), "\n\n") &&
			(args[0] != "dev" || strings.Contains(out.String(), "Ctrl-C")) {
			return m[1], &out, &errOut, func() int {
				cancel()
				select {
				case code := <-done:
					return code
				case <-time.After(15 * time.Second):
					t.Fatal("the command did not stop")
					return -1
				}
			}
		}
		select {
		case code := <-done:
			cancel()
			t.Fatalf("exited with %d: %s %s", code, out.String(), errOut.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no URL: %s %s", out.String(), errOut.String())
		}
	}
}
