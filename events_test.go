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
	u := pgtest.URL(t)
	g := basketGraph()
	ctx := context.Background()
	open := func(id string, workers int) *docket.Engine {
		eng, err := docket.Open(ctx, docket.Config{Store: u, Graphs: []*docket.Graph{g}, WorkerID: id, Workers: workers, PollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		return eng
	}
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

// countingStore is a PostgreSQL store that counts the reads of executions
// its engine makes.
type countingStore struct {
	*postgres.Store
	reads atomic.Int64
}

func (c *countingStore) Execution(ctx context.Context, id string) (*store.Execution, error) {
	c.reads.Add(1)
	return c.Store.Execution(ctx, id)
}

// On PostgreSQL, the event of an execution's end carries its outcome: a
// client that started executions gets their results and errors without
// reading them back, even when they end before Result is called; an
// execution the client did not create is read once, then waited for.
func TestPostgresResultFromEvents(t *testing.T) {
	type evSeed int
	type evOut string
	u := pgtest.URL(t)
	g := docket.NewGraph("ev-result", docket.Input[evSeed]())
	docket.Register1(g, func(ctx context.Context, n evSeed) (evOut, error) {
		if n%3 == 0 {
			return "", docket.NonRetryable(fmt.Errorf("%d is a multiple of 3", n))
		}
		return evOut(strings.Repeat("é", int(n))), nil
	}, docket.Name("double"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second) // an hour without events
	defer cancel()
	open := func(cfg docket.Config) *docket.Engine {
		cfg.Graphs, cfg.PollInterval = []*docket.Graph{g}, time.Hour
		eng, err := docket.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		return eng
	}
	pg, err := postgres.Open(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	st := &countingStore{Store: pg}
	client := open(docket.Config{Backend: st, Workers: -1})
	open(docket.Config{Store: u, WorkerID: "worker", Workers: 4})

	check := func(n int, h *docket.Handle[evOut]) {
		t.Helper()
		got, err := h.Result(ctx)
		var xe *docket.ExecutionError
		switch {
		case n%3 == 0 && (!errors.As(err, &xe) || xe.Status != "failed" || !strings.Contains(xe.Message, fmt.Sprintf("%d is a multiple of 3", n))):
			t.Errorf("ev-%d: %q, %v; want it failed", n, got, err)
		case n%3 != 0 && (err != nil || string(got) != strings.Repeat("é", n)):
			t.Errorf("ev-%d: %q, %v", n, got, err)
		}
	}
	handles := make([]*docket.Handle[evOut], 12)
	for n := range handles {
		if handles[n], err = docket.Start[evOut](ctx, client, g, fmt.Sprintf("ev-%d", n), evSeed(n)); err != nil {
			t.Fatal(err)
		}
		if n%2 == 0 {
			check(n, handles[n]) // waited for at once
		}
	}
	time.Sleep(200 * time.Millisecond) // the others end before anyone waits
	for n := 1; n < len(handles); n += 2 {
		check(n, handles[n])
	}
	if r := st.reads.Load(); r != 0 {
		t.Errorf("the client read executions %d times for the results of executions it created", r)
	}
	// Another handle of an execution that ended is read, once.
	check(4, docket.HandleFor[evOut](client, "ev-4"))
	if r := st.reads.Load(); r != 1 {
		t.Errorf("%d reads for the result of an execution that ended, want 1", r)
	}
}
