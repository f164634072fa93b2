package docket_test

import (
	"context"
	"testing"
	"time"

	"github.com/docket-run/docket"
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
