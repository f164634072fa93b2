package docket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// On PostgreSQL, store events — not polling — move work between
// processes: with an hour-long poll interval on both engines, a worker
// still picks up an execution a client started, a signal the client sent
// and an update it asked for, and the client's Result and Update return.
func TestPostgresEventsWake(t *testing.T) {
	g := basketGraph()
	open := hourPollers(t, g)
	ctx := context.Background()
	open("worker", 2)
	client := open("client", -1)
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second) // an hour without events
	defer cancel()
	h, err := docket.Start[Cart](ctx, client, g, "ev-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	for i, item := range []string{"tea", "milk"} {
		n, err := docket.Update[int](ctx, client, "ev-1", "add", item)
		if err != nil || n != i+1 {
			t.Fatalf("update %d: %v %v", i, n, err)
		}
	}
	if err := client.Signal(ctx, "ev-1", "checkout", true); err != nil {
		t.Fatal(err)
	}
	cart, err := h.Result(ctx)
	if err != nil || len(cart) != 2 {
		t.Fatalf("%v %v", cart, err)
	}
}

// An execution's end reaches a process that waits for its result though
// it neither started nor signalled it, when the process that ends it is
// the one that started it (so that no one else was told to watch it):
// Result watches the execution first. With an hour-long poll interval,
// only the notification can end the wait in time.
func TestPostgresResultElsewhere(t *testing.T) {
	g := basketGraph()
	open := hourPollers(t, g)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	worker := open("worker", 2)
	waiter := open("waiter", -1)
	if _, err := docket.Start[Cart](ctx, worker, g, "el-1", &Order{}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := docket.HandleFor[Cart](waiter, "el-1").Result(ctx)
		got <- err
	}()
	time.Sleep(300 * time.Millisecond) // the waiter waits by now, most likely
	if err := worker.Signal(ctx, "el-1", "checkout", true); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("Result elsewhere: %v", err)
	}
}

// hourPollers returns a function that opens engines of g on one fresh
// PostgreSQL schema, each polling only once an hour: what moves them is
// the store's events.
func hourPollers(t *testing.T, g *docket.Graph) func(id string, workers int) *docket.Engine {
	u := pgtest.URL(t)
	return func(id string, workers int) *docket.Engine {
		t.Helper()
		eng, err := docket.Open(context.Background(), docket.Config{Store: u, Graphs: []*docket.Graph{g}, WorkerID: id,
			Workers: workers, PollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		return eng
	}
}

// countingStore is a PostgreSQL store that counts the reads of executions
// its engine makes (with marked set, only those made under a context that
// carries the value marked{}).
type countingStore struct {
	*postgres.Store
	reads  atomic.Int64
	marked bool
}

type marked struct{}

func (c *countingStore) Execution(ctx context.Context, id string) (*store.Execution, error) {
	if !c.marked || ctx.Value(marked{}) != nil {
		c.reads.Add(1)
	}
	return c.Store.Execution(ctx, id)
}

type (
	evSeed int
	evOut  string
)

// evGraph's step fails for multiples of 3 and otherwise returns n é's.
func evGraph(name string) *docket.Graph {
	g := docket.NewGraph(name, docket.Input[evSeed]())
	docket.Register1(g, func(ctx context.Context, n evSeed) (evOut, error) {
		if n%3 == 0 {
			return "", docket.NonRetryable(fmt.Errorf("%d is a multiple of 3", n))
		}
		return evOut(strings.Repeat("é", int(n))), nil
	}, docket.Name("double"))
	return g
}

// checkEvResult checks the outcome of evGraph's execution of n.
func checkEvResult(t *testing.T, ctx context.Context, n int, h *docket.Handle[evOut]) {
	t.Helper()
	got, err := h.Result(ctx)
	var xe *docket.ExecutionError
	switch {
	case n%3 == 0 && (!errors.As(err, &xe) || xe.Status != "failed" || !strings.Contains(xe.Message, fmt.Sprintf("%d is a multiple of 3", n))):
		t.Errorf("%s: %q, %v; want it failed", h.ID(), got, err)
	case n%3 != 0 && (err != nil || string(got) != strings.Repeat("é", n)):
		t.Errorf("%s: %q, %v", h.ID(), got, err)
	}
}

// runEvResults starts 12 executions of evGraph g on eng and checks their
// outcomes: the even ones waited for at once, the odd ones after they
// ended.
func runEvResults(t *testing.T, ctx context.Context, eng *docket.Engine, g *docket.Graph, prefix string) {
	t.Helper()
	handles := make([]*docket.Handle[evOut], 12)
	for n := range handles {
		var err error
		if handles[n], err = docket.Start[evOut](ctx, eng, g, fmt.Sprintf("%s-%d", prefix, n), evSeed(n)); err != nil {
			t.Fatal(err)
		}
		if n%2 == 0 {
			checkEvResult(t, ctx, n, handles[n]) // waited for at once
		}
	}
	time.Sleep(200 * time.Millisecond) // the others end before anyone waits
	for n := 1; n < len(handles); n += 2 {
		checkEvResult(t, ctx, n, handles[n])
	}
}

// On PostgreSQL, the event of an execution's end carries its outcome: a
// client that started executions gets their results and errors without
// reading them back, even when they end before Result is called; an
// execution the client did not create is read once, then waited for.
func TestPostgresResultFromEvents(t *testing.T) {
	u := pgtest.URL(t)
	g := evGraph("ev-result")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an hour without events
	defer cancel()
	open := func(cfg docket.Config) *docket.Engine { return openUnpolled(t, g, cfg) }
	pg, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	st := &countingStore{Store: pg}
	client := open(docket.Config{Backend: st, Workers: -1})
	open(docket.Config{Store: u, WorkerID: "worker", Workers: 4})
	runEvResults(t, ctx, client, g, "ev")
	if r := st.reads.Load(); r != 0 {
		t.Errorf("the client read executions %d times for the results of executions it created", r)
	}
	// Another handle of an execution that ended is read, once.
	checkEvResult(t, ctx, 4, docket.HandleFor[evOut](client, "ev-4"))
	if r := st.reads.Load(); r != 1 {
		t.Errorf("%d reads for the result of an execution that ended, want 1", r)
	}
}

// An engine that runs the executions it starts hands their ends to its
// callers of Result as its worker commits them: no read back, whether
// Result waits already or is called after the end.
func TestPostgresResultOfLocalEnd(t *testing.T) {
	u := pgtest.URL(t)
	g := evGraph("local-end")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pg, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	st := &countingStore{Store: pg, marked: true} // the reads of Result, not of the worker's settle tasks
	eng := openUnpolled(t, g, docket.Config{Backend: st, Workers: 4})
	runEvResults(t, context.WithValue(ctx, marked{}, true), eng, g, "le")
	if r := st.reads.Load(); r != 0 {
		t.Errorf("Result read executions %d times for ends this engine committed", r)
	}
}

// openUnpolled opens an engine of graph g that polls only once an hour,
// so that it sees tasks and results by notifications alone.
func openUnpolled(t *testing.T, g *docket.Graph, cfg docket.Config) *docket.Engine {
	t.Helper()
	cfg.Graphs, cfg.PollInterval = []*docket.Graph{g}, time.Hour
	return openConfig(t, cfg)
}

// claimCounter counts a worker's claims, and those that found nothing.
type claimCounter struct {
	*postgres.Store
	claims, empty atomic.Int64
}

func (c *claimCounter) ClaimNext(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) (store.Claimed, error) {
	got, err := c.Store.ClaimNext(ctx, owner, queue, now, lease, limit)
	c.claims.Add(1)
	if len(got.Tasks) == 0 {
		c.empty.Add(1)
	}
	return got, err
}

// On PostgreSQL a new task is handed to one idle worker: with two idle
// workers and polling off, each execution started one at a time is
// claimed once, by the worker its notification names, and the other
// makes no claim for it; both get some.
func TestPostgresHandOff(t *testing.T) {
	type hoSeed int
	u := pgtest.URL(t)
	g := docket.NewGraph("hand-off", docket.Input[hoSeed]())
	docket.Register1(g, func(ctx context.Context, n hoSeed) (int, error) { return int(n) * 2, nil }, docket.Name("double"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an hour without notifications
	defer cancel()
	open := func(cfg docket.Config) *docket.Engine { return openUnpolled(t, g, cfg) }
	workers := make([]*claimCounter, 2)
	engines := make([]*docket.Engine, 2)
	for i := range workers {
		pg, err := postgres.Open(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pg.Close() })
		workers[i] = &claimCounter{Store: pg}
		engines[i] = open(docket.Config{Backend: workers[i], WorkerID: fmt.Sprintf("w%d", i), Workers: 4})
	}
	client := open(docket.Config{Store: u, Workers: -1})
	run := func(prefix string, n int) {
		for i := range n {
			h, err := docket.Start[int](ctx, client, g, fmt.Sprintf("%s-%d", prefix, i), hoSeed(i))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := h.Result(ctx); err != nil || got != 2*i {
				t.Fatalf("%s-%d: %d, %v", prefix, i, got, err)
			}
		}
	}
	run("warm", 4) // both workers have claimed, and so wait
	var before [2]int64
	for i, w := range workers {
		before[i] = w.claims.Load()
	}
	const n = 40
	run("ho", n)
	var claims [2]int64
	for i, w := range workers {
		claims[i] = w.claims.Load() - before[i]
	}
	// A worker's notes lapse after two seconds without a claim; then a
	// task goes to everyone again, so allow a few more.
	if total := claims[0] + claims[1]; total > n+6 || claims[0] == 0 || claims[1] == 0 {
		t.Errorf("claims by each worker for %d executions: %v; want about one per execution, spread over both", n, claims)
	}

	// A worker that stops (its store stays open) is named no more at once,
	// not once its note lapses: with polling off, an execution named to
	// it would wait for ever.
	if err := engines[0].Close(); err != nil {
		t.Fatal(err)
	}
	before1 := workers[1].claims.Load()
	run("after", 10)
	if c := workers[1].claims.Load() - before1; c < 10 {
		t.Errorf("%d claims by the worker left for 10 executions", c)
	}
}
