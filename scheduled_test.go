package docket_test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// A step that a worker leases to itself as it makes it ready has no
// record until it records something; its task says that it is scheduled.

type SchedA struct{ N int }
type SchedB struct{ N int }

// schedChain is first → second → third; second waits for release (or
// runs at once when release is nil).
func schedChain(entered chan<- struct{}, release <-chan struct{}) *docket.Graph {
	g := docket.NewGraph("sched", docket.Input[int]())
	docket.Register1(g, func(_ context.Context, n int) (SchedA, error) { return SchedA{n + 1}, nil }, docket.Name("first"))
	docket.Register1(g, func(ctx context.Context, a SchedA) (SchedB, error) {
		if release != nil {
			entered <- struct{}{}
			select {
			case <-release:
			case <-ctx.Done():
				return SchedB{}, ctx.Err()
			}
		}
		return SchedB{a.N * 10}, nil
	}, docket.Name("second"))
	docket.Register1(g, func(_ context.Context, b SchedB) (string, error) { return fmt.Sprint(b.N), nil }, docket.Name("third"))
	return g
}

// backendURLs runs body on a fresh SQLite file and a fresh PostgreSQL schema.
func backendURLs(t *testing.T, body func(t *testing.T, url string)) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			url := "sqlite:" + filepath.Join(t.TempDir(), "sched.db")
			if backend == "postgres" {
				url = pgtest.URL(t)
			}
			body(t, url)
		})
	}
}

func stepInfo(t *testing.T, d *docket.Description, name string) docket.StepInfo {
	t.Helper()
	for _, s := range d.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q in %+v", name, d.Steps)
	return docket.StepInfo{}
}

func storedStep(t *testing.T, st store.Store, id, name string) *store.Step {
	t.Helper()
	steps, err := st.Steps(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i]
		}
	}
	return nil
}

func TestStepLeasedHereRecordedWhenItRuns(t *testing.T) {
	backendURLs(t, func(t *testing.T, url string) {
		ctx := context.Background()
		entered, release := make(chan struct{}), make(chan struct{})
		g := schedChain(entered, release)
		eng := openConfig(t, docket.Config{Store: url, Graphs: []*docket.Graph{g}, Workers: 2})
		h, err := docket.Start[string](ctx, eng, g, "s-1", 4)
		if err != nil {
			t.Fatal(err)
		}
		<-entered
		if rec := storedStep(t, eng.Store(), "s-1", "second"); rec != nil {
			t.Fatalf("second has a record while it runs for the first time: %+v", rec)
		}
		first := storedStep(t, eng.Store(), "s-1", "first")
		if first == nil || first.Status != store.StepDone {
			t.Fatalf("first: %+v", first)
		}
		d, err := eng.Describe(ctx, "s-1")
		if err != nil {
			t.Fatal(err)
		}
		if s := stepInfo(t, d, "second"); s.Status != "running" || !s.ReadyAt.Equal(first.FinishedAt) {
			t.Fatalf("second as described: %+v; first finished at %v", s, first.FinishedAt)
		}
		if s := stepInfo(t, d, "third"); s.Status != "pending" {
			t.Fatalf("third as described: %+v", s)
		}
		hist, err := eng.History(ctx, "s-1")
		if err != nil {
			t.Fatal(err)
		}
		readyEvents := 0
		for _, ev := range hist {
			if ev.Kind == "step-ready" && ev.Step == "second" {
				readyEvents++
				if !ev.Time.Equal(first.FinishedAt) {
					t.Fatalf("second ready at %v in the history, first finished at %v", ev.Time, first.FinishedAt)
				}
			}
		}
		if readyEvents != 1 {
			t.Fatalf("%d step-ready events for second: %+v", readyEvents, hist)
		}
		close(release)
		if got, err := h.Result(ctx); err != nil || got != "50" {
			t.Fatalf("result %q, %v", got, err)
		}
		second := storedStep(t, eng.Store(), "s-1", "second")
		if second == nil || second.Status != store.StepDone || !second.ReadyAt.Equal(first.FinishedAt) ||
			second.StartedAt.Before(second.ReadyAt) || second.Attempt != 1 {
			t.Fatalf("second's record: %+v; first finished at %v", second, first.FinishedAt)
		}
		third := storedStep(t, eng.Store(), "s-1", "third")
		if third == nil || !third.ReadyAt.Equal(second.FinishedAt) {
			t.Fatalf("third's record: %+v; second finished at %v", third, second.FinishedAt)
		}
		x, err := eng.Store().Execution(ctx, "s-1")
		if err != nil {
			t.Fatal(err)
		}
		if !first.ReadyAt.Equal(x.CreatedAt) {
			t.Fatalf("first ready at %v, the execution created at %v", first.ReadyAt, x.CreatedAt)
		}
	})
}

// A worker that died after leasing a step to itself left a task and no
// record (as a SIGKILL would): the step is described as ready, a
// cancellation cancels it, and another worker runs it.
func TestStepScheduledWithoutRecord(t *testing.T) {
	backendURLs(t, func(t *testing.T, url string) {
		ctx := context.Background()
		g := schedChain(nil, nil)
		st, err := docket.OpenStore(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		created := time.Now().Add(-time.Minute).UTC().Truncate(time.Millisecond)
		finished := created.Add(time.Second)
		out, _ := json.Marshal(SchedA{5})
		for _, id := range []string{"dead-1", "dead-2"} {
			err := st.Update(ctx, id, func(tx store.Tx) error {
				if err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "sched", Target: "string", Codec: "json",
					Status: store.Running, Inputs: []store.Value{{Type: "int", Data: []byte("4")}},
					CreatedAt: created, UpdatedAt: finished, Seq: 1}); err != nil {
					return err
				}
				if err := tx.PutStep(&store.Step{Name: "first", Status: store.StepDone, Attempt: 1, Seq: 1,
					Output:  &store.Value{Type: "docket_test.SchedA", Data: out},
					ReadyAt: created, StartedAt: created, FinishedAt: finished}); err != nil {
					return err
				}
				return tx.AddTask(&store.Task{Step: "second", Kind: store.TaskStep, ReadyAt: created, Attempt: 1,
					Owner: "dead-worker", LeaseUntil: finished.Add(time.Second), Claims: 1})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		client, err := docket.Open(ctx, docket.Config{Backend: st, Graphs: []*docket.Graph{g}, Workers: -1})
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		d, err := client.Describe(ctx, "dead-1")
		if err != nil {
			t.Fatal(err)
		}
		if s := stepInfo(t, d, "second"); s.Status != "ready" || !s.ReadyAt.Equal(finished) {
			t.Fatalf("second as described: %+v; first finished at %v", s, finished)
		}
		if err := client.Cancel(ctx, "dead-1"); err != nil {
			t.Fatal(err)
		}
		if d, err = client.Describe(ctx, "dead-1"); err != nil {
			t.Fatal(err)
		}
		if s := stepInfo(t, d, "second"); d.Status != "cancelled" || s.Status != "cancelled" {
			t.Fatalf("after Cancel: %s, second %+v", d.Status, s)
		}
		if rec := storedStep(t, st, "dead-1", "second"); rec == nil || rec.Status != store.StepCancelled || !rec.ReadyAt.Equal(finished) {
			t.Fatalf("second's record after Cancel: %+v", rec)
		}

		worker, err := docket.Open(ctx, docket.Config{Backend: st, Graphs: []*docket.Graph{g}, Workers: 2,
			PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer worker.Close()
		if got, err := docket.HandleFor[string](worker, "dead-2").Result(ctx); err != nil || got != "50" {
			t.Fatalf("result %q, %v", got, err)
		}
		rec := storedStep(t, st, "dead-2", "second")
		if rec == nil || rec.Status != store.StepDone || !rec.ReadyAt.Equal(finished) || rec.Attempt != 2 {
			t.Fatalf("second's record: %+v (ready at %v expected, attempt 2: the dead worker's counts)", rec, finished)
		}
	})
}

// An execution that ends while a step scheduled without a record still
// runs (the loser of a race) leaves that step's ready record, as it leaves
// the record of every step that was scheduled and did not finish.
func TestEndKeepsReadyRecordOfScheduledStep(t *testing.T) {
	backendURLs(t, func(t *testing.T, url string) {
		ctx := context.Background()
		entered := make(chan string, 2)
		release := map[string]chan struct{}{"fast": make(chan struct{}), "slow": make(chan struct{})}
		g := docket.NewGraph("race-end", docket.Input[int]())
		docket.Register1(g, func(_ context.Context, n int) (SchedA, error) { return SchedA{n}, nil }, docket.Name("first"))
		for _, name := range []string{"fast", "slow"} {
			docket.Register1(g, func(ctx context.Context, a SchedA) (SchedB, error) {
				entered <- name
				select {
				case <-release[name]:
					return SchedB(a), nil
				case <-ctx.Done():
					return SchedB{}, ctx.Err()
				}
			}, docket.Name(name), docket.Race())
		}
		docket.Register1(g, func(_ context.Context, b SchedB) (string, error) { return fmt.Sprint(b.N), nil }, docket.Name("last"))
		eng := openConfig(t, docket.Config{Store: url, Graphs: []*docket.Graph{g}, Workers: 2, PollInterval: 20 * time.Millisecond})
		h, err := docket.Start[string](ctx, eng, g, "r-1", 7)
		if err != nil {
			t.Fatal(err)
		}
		<-entered
		<-entered
		// The racer leased to the worker that recorded first has no record;
		// let the other one win.
		var loser, winner string
		for _, name := range []string{"fast", "slow"} {
			if storedStep(t, eng.Store(), "r-1", name) == nil {
				loser = name
			} else {
				winner = name
			}
		}
		if loser == "" || winner == "" {
			t.Fatal("expected one racer without a record and one with")
		}
		close(release[winner])
		if got, err := h.Result(ctx); err != nil || got != "7" {
			t.Fatalf("result %q, %v", got, err)
		}
		first := storedStep(t, eng.Store(), "r-1", "first")
		rec := storedStep(t, eng.Store(), "r-1", loser)
		if rec == nil || rec.Status != store.StepReady || !rec.ReadyAt.Equal(first.FinishedAt) {
			t.Fatalf("the loser's record after the end: %+v; first finished at %v", rec, first.FinishedAt)
		}
		close(release[loser])
	})
}
