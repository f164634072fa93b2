package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(context.Background(), &out, dir); err != nil {
		t.Fatal(err)
	}
	want := "refused by the handler: job job-00 already has nodes\n" +
		"25 updates applied: 24 answered, 1 with the handler's error; 4 refused by the validators\n" +
		"state: 8 jobs, 16 nodes free, nothing pending\n" +
		"after shutdown: job-00:1 job-02:3 job-04:2 job-06:1 job-08:3 job-10:2 job-12:1 job-14:3; 16 nodes free; 24 cluster operations\n" +
		"the cluster agrees, and no node was ever held by two jobs\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
	// The SQLite file run left: the execution continued as new on the way.
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "cluster.db"),
		Graphs: []*docket.Graph{NewGraph(NewClusterAPI(), Options{})}, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	d, err := eng.Describe(ctx, "cluster-1")
	if err != nil || d.Status != "completed" || d.Run < 2 {
		t.Fatalf("%+v %v; want a completed execution past its first run", d, err)
	}
}

// openCluster starts a cluster manager on a SQLite file.
func openCluster(t *testing.T, nodes, historyLimit int, o Options) (*docket.Engine, *ClusterAPI, *docket.Handle[Summary]) {
	t.Helper()
	api := NewClusterAPI()
	g := NewGraph(api, o)
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "c.db"),
		Graphs: []*docket.Graph{g}, HistoryLimit: historyLimit})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	h, err := docket.Start[Summary](ctx, eng, g, "c", Cluster{Nodes: nodes})
	if err != nil {
		t.Fatal(err)
	}
	return eng, api, h
}

// updateSignals counts the update requests in the execution's inbox, over
// all its runs: a request refused by a validator is not among them. Call
// it when every request sent has been answered: none may be left unapplied.
func updateSignals(t *testing.T, eng *docket.Engine) int {
	t.Helper()
	sigs, err := eng.Store().Signals(context.Background(), "c")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range sigs {
		if strings.HasPrefix(s.Name, "update:") {
			n++
			if s.ConsumedBy == "" {
				t.Fatalf("update request %s answered but not applied", s.Name)
			}
		}
	}
	return n
}

// Many clients at once, more demand than nodes, two clients racing for the
// same job name, and a history limit low enough for several runs.
func TestConcurrentUpdates(t *testing.T) {
	const nodes, clients = 40, 48
	eng, api, h := openCluster(t, nodes, 10, Options{})
	ctx := context.Background()

	type outcome struct {
		req      Request
		assigned Assigned
		deleted  Deleted
		err      error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
		wg       sync.WaitGroup
	)
	send := func(r Request) outcome {
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a lost answer fails, not hangs
		defer cancel()
		o := outcome{req: r}
		if r.Delete {
			o.deleted, o.err = docket.Update[Deleted](uctx, eng, "c", "delete-job", DeleteJob{Job: r.Job})
		} else {
			o.assigned, o.err = docket.Update[Assigned](uctx, eng, "c", "assign-nodes", AssignNodes{Job: r.Job, Count: r.Count})
		}
		if errors.Is(o.err, context.DeadlineExceeded) {
			t.Errorf("%+v: no answer in 30s", r)
		}
		mu.Lock()
		outcomes = append(outcomes, o)
		mu.Unlock()
		return o
	}
	// Two clients race for the same job name while nodes are plentiful:
	// one must win, the other be refused (by the validator or the handler).
	for range 2 {
		wg.Go(func() { send(Request{Job: "job-dup", Count: 1}) })
	}
	wg.Wait()
	// Then everyone at once: 96 nodes asked for in all. A third of the
	// clients delete their job as soon as they have it.
	for i := range clients {
		wg.Go(func() {
			job := fmt.Sprintf("job-%02d", i)
			a := send(Request{Job: job, Count: 1 + i%3})
			if i%3 != 0 {
				return
			}
			d := send(Request{Delete: true, Job: job})
			switch {
			case a.err == nil && (d.err != nil || !slices.Equal(d.deleted.Freed, a.assigned.Nodes)):
				t.Errorf("%s had %v; deleting it: %+v %v", job, a.assigned.Nodes, d.deleted, d.err)
			case a.err != nil && d.err == nil:
				t.Errorf("%s was never assigned, yet deleting it freed %v", job, d.deleted.Freed)
			}
		})
	}
	for _, bad := range []Request{{Job: "", Count: 1}, {Job: "x", Count: nodes + 1}, {Job: "y"}, {Delete: true}} {
		wg.Go(func() {
			var rej *docket.UpdateRejectedError
			if o := send(bad); !errors.As(o.err, &rej) {
				t.Errorf("%+v: want a rejection, got %v", bad, o.err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	// Each request has exactly one outcome: an answer, the handler's error,
	// or the validator's refusal.
	if len(outcomes) != 2+clients+clients/3+4 {
		t.Fatalf("%d outcomes", len(outcomes))
	}
	accepted, rejected, dupWins := 0, 0, 0
	for _, o := range outcomes {
		var rej *docket.UpdateRejectedError
		var ue *docket.UpdateError
		switch {
		case errors.As(o.err, &rej):
			rejected++
		case errors.As(o.err, &ue):
			accepted++ // applied, and answered with the handler's error
		case o.err != nil:
			t.Fatalf("%+v: %v", o.req, o.err)
		default:
			accepted++
			if !o.req.Delete && len(o.assigned.Nodes) != o.req.Count {
				t.Errorf("%+v got %v", o.req, o.assigned.Nodes)
			}
			if o.req.Job == "job-dup" {
				dupWins++
			}
		}
	}
	if dupWins != 1 {
		t.Fatalf("job-dup was assigned %d times", dupWins)
	}
	// Rejected requests left nothing in the inbox; accepted ones at most
	// one each (the engine may drop answered ones), all applied.
	if n := updateSignals(t, eng); n > accepted || n == 0 {
		t.Fatalf("%d update requests recorded, %d accepted (%d rejected)", n, accepted, rejected)
	}

	// The query comes to agree with the answers (a replay may lag a moment).
	var st State
	waitFor(t, "the query to show every update", func() bool {
		var err error
		st, err = docket.Query[State](ctx, eng, "c", "state")
		return err == nil && st.Answered == accepted && st.Pending == 0
	})
	if err := eng.Signal(ctx, "c", "shutdown", "test"); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Answered != accepted || !maps.EqualFunc(s.Jobs, st.Jobs, slices.Equal) {
		t.Fatalf("summary %+v, state %+v", s, st)
	}

	// No node held twice: in the final state, and at any moment in the
	// cluster, which checks every operation and saw each once, in order.
	seen := map[string]string{}
	used := 0
	for j, ns := range s.Jobs {
		for _, n := range ns {
			if other, ok := seen[n]; ok {
				t.Fatalf("node %s held by %s and %s", n, other, j)
			}
			seen[n] = j
		}
		used += len(ns)
	}
	if used+s.Free != nodes {
		t.Fatalf("%d used + %d free != %d", used, s.Free, nodes)
	}
	if v := api.Violations(); len(v) > 0 {
		t.Fatalf("violations: %v", v)
	}
	want := make([]int, s.Ops)
	for i := range want {
		want[i] = i + 1
	}
	if got := api.Applied(); !slices.Equal(got, want) {
		t.Fatalf("cluster applied %v, want operations 1..%d once each, in order", got, s.Ops)
	}
	if !maps.EqualFunc(api.Jobs(), s.Jobs, slices.Equal) {
		t.Fatalf("the cluster holds %v, the manager says %v", api.Jobs(), s.Jobs)
	}
	d, err := eng.Describe(ctx, "c")
	if err != nil || d.Run < 2 {
		t.Fatalf("%+v %v; want more than one run", d, err)
	}
	t.Logf("%d accepted, %d rejected, %d operations, %d runs", accepted, rejected, s.Ops, d.Run)
}

// One request at a time: what validators refuse leaves no trace, what the
// handler refuses is answered with its error, a repeated update ID gets
// the first answer, and updates after the shutdown find the execution
// finished. The step comes round only on the shutdown (FlushEvery is an
// hour), so its journal stands still between requests.
func TestValidationAndAnswers(t *testing.T) {
	eng, api, h := openCluster(t, 4, 1000, Options{FlushEvery: time.Hour})
	ctx := context.Background()
	assign := func(job string, count int, opts ...docket.UpdateOption) (Assigned, error) {
		return docket.Update[Assigned](ctx, eng, "c", "assign-nodes", AssignNodes{Job: job, Count: count}, opts...)
	}
	a, err := assign("a", 3, docket.UpdateID("req-1"))
	if err != nil || !slices.Equal(a.Nodes, []string{"node-01", "node-02", "node-03"}) {
		t.Fatalf("%+v %v", a, err)
	}
	journal := func() int {
		j, err := eng.Store().Journal(ctx, "c", "manage")
		if err != nil {
			t.Fatal(err)
		}
		return len(j)
	}
	waitFor(t, "the step to wait", func() bool {
		d, _ := eng.Describe(ctx, "c")
		return d != nil && len(d.Waiting) == 1
	})
	sigs, entries := updateSignals(t, eng), journal()
	var rej *docket.UpdateRejectedError
	for _, bad := range []func() error{
		func() error { _, err := assign("", 1); return err },
		func() error { _, err := assign("b", 0); return err },
		func() error { _, err := assign("b", 5); return err },
		func() error {
			_, err := docket.Update[Deleted](ctx, eng, "c", "delete-job", DeleteJob{})
			return err
		},
	} {
		if err := bad(); !errors.As(err, &rej) {
			t.Fatalf("want a rejection, got %v", err)
		}
	}
	if updateSignals(t, eng) != sigs || journal() != entries {
		t.Fatal("a rejected update was recorded")
	}
	// Valid requests that the state makes impossible: the handler refuses
	// them, and says why.
	var ue *docket.UpdateError
	for _, c := range []struct {
		send func() error
		want string
	}{
		{func() error { _, err := assign("a", 1); return err }, "job a already has nodes"},
		{func() error {
			_, err := docket.Update[Deleted](ctx, eng, "c", "delete-job", DeleteJob{Job: "zzz"})
			return err
		}, `no job "zzz"`},
		{func() error { _, err := assign("b", 2); return err }, "needs 2 nodes, 1 are free"},
	} {
		if err := c.send(); !errors.As(err, &ue) || !strings.Contains(ue.Message, c.want) {
			t.Fatalf("got %v, want the handler's %q", err, c.want)
		}
	}
	// The same request ID again: the first answer, applied once.
	a2, err := assign("a", 3, docket.UpdateID("req-1"))
	if err != nil || !slices.Equal(a2.Nodes, a.Nodes) {
		t.Fatalf("%+v %v", a2, err)
	}
	// Four answered; a's nodes are decided but wait for the step to come
	// round before they reach the cluster.
	st, err := docket.Query[State](ctx, eng, "c", "state")
	if err != nil || st.Answered != 4 || st.Free != 1 || st.Pending != 1 || len(api.Applied()) != 0 {
		t.Fatalf("%+v %v", st, err)
	}
	d, err := docket.Update[Deleted](ctx, eng, "c", "delete-job", DeleteJob{Job: "a"})
	if err != nil || !slices.Equal(d.Freed, a.Nodes) {
		t.Fatalf("%+v %v", d, err)
	}
	if _, err := assign("b", 4); err != nil {
		t.Fatal(err)
	}
	if err := eng.Signal(ctx, "c", "shutdown", "done"); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil || s.Answered != 6 || s.Ops != 3 || s.Free != 0 || len(s.Jobs["b"]) != 4 {
		t.Fatalf("%+v %v", s, err)
	}
	if got := api.Applied(); !slices.Equal(got, []int{1, 2, 3}) || len(api.Violations()) != 0 {
		t.Fatalf("cluster applied %v, violations %v", got, api.Violations())
	}
	var fe *docket.FinishedError
	if _, err := assign("c", 1); !errors.As(err, &fe) {
		t.Fatalf("after the shutdown: %v", err)
	}
}

// The manager's process stops with decisions not yet applied to the
// cluster; the next process carries on from the SQLite file, with the
// same state and queue, and applies each operation once.
func TestRestartKeepsStateAndQueue(t *testing.T) {
	ctx := context.Background()
	path := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	api := NewClusterAPI()
	g := NewGraph(api, Options{FlushEvery: time.Hour})
	eng1, err := docket.Open(ctx, docket.Config{Store: path, Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docket.Start[Summary](ctx, eng1, g, "c", Cluster{Nodes: 8}); err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"a", "b"} {
		if _, err := docket.Update[Assigned](ctx, eng1, "c", "assign-nodes", AssignNodes{Job: job, Count: 3}); err != nil {
			t.Fatal(err)
		}
	}
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}

	eng2, err := docket.Open(ctx, docket.Config{Store: path, Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	st, err := docket.Query[State](ctx, eng2, "c", "state")
	if err != nil || len(st.Jobs) != 2 || st.Pending != 2 || st.Free != 2 || len(api.Applied()) != 0 {
		t.Fatalf("after the restart: %+v %v (cluster applied %v)", st, err, api.Applied())
	}
	if _, err := docket.Update[Deleted](ctx, eng2, "c", "delete-job", DeleteJob{Job: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := eng2.Signal(ctx, "c", "shutdown", "done"); err != nil {
		t.Fatal(err)
	}
	s, err := docket.HandleFor[Summary](eng2, "c").Result(ctx)
	if err != nil || s.Ops != 3 || s.Answered != 3 || s.Free != 5 || !slices.Equal(s.Jobs["b"], []string{"node-04", "node-05", "node-06"}) {
		t.Fatalf("%+v %v", s, err)
	}
	if got := api.Applied(); !slices.Equal(got, []int{1, 2, 3}) || len(api.Violations()) != 0 || !maps.EqualFunc(api.Jobs(), s.Jobs, slices.Equal) {
		t.Fatalf("cluster applied %v, holds %v, violations %v", got, api.Jobs(), api.Violations())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
