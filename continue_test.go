package docket_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

type Tally struct{ Total, Runs int }

// tallyGraph adds up numbers sent as signals, continuing as new after every
// three so that its history stays short, until it gets 0.
func tallyGraph() *docket.Graph {
	g := docket.NewGraph("tally", docket.Input[Tally]())
	docket.Register1(g, func(ctx context.Context, t Tally) (*Shipment, error) {
		t.Runs++
		for range 3 {
			n, err := docket.Receive[int](ctx, "add")
			if err != nil {
				return nil, err
			}
			if n == 0 {
				return &Shipment{Amount: t.Total, Item: fmt.Sprint(t.Runs)}, nil
			}
			t.Total += n
		}
		return nil, docket.ContinueAsNew(t)
	}, docket.Name("add-up"))
	return g
}

func TestContinueAsNew(t *testing.T) {
	g := tallyGraph()
	env := docktest.New(t, docktest.Options{}, g)
	ctx := context.Background()
	h, err := docket.Start[*Shipment](ctx, env.Engine, g, "tally-1", Tally{})
	if err != nil {
		t.Fatal(err)
	}
	// Ten numbers, sent at once: those the current run does not take wait
	// in the inbox for the next run.
	want := 0
	for i := 1; i <= 10; i++ {
		want += i
		if err := env.Signal(ctx, "tally-1", "add", i); err != nil {
			t.Fatal(err)
		}
	}
	if err := env.Signal(ctx, "tally-1", "add", 0); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil || s.Amount != want || s.Item != "4" {
		t.Fatalf("%+v %v; want total %d over 4 runs", s, err, want)
	}
	d, _ := env.Describe(ctx, "tally-1")
	if d.Run != 4 {
		t.Fatalf("run %d, want 4", d.Run)
	}
	// The last run's history only: one receive for "0".
	j, _ := env.Store().Journal(ctx, "tally-1", "add-up")
	if len(j) != 2 || !strings.Contains(j[1].Name, "add") {
		t.Fatalf("the last run's journal has %d entries: %+v", len(j), j)
	}
}

func TestContinueAsNewEphemeral(t *testing.T) {
	g := docket.NewGraph("countdown", docket.Input[int]())
	docket.Register1(g, func(ctx context.Context, n int) (string, error) {
		if n > 0 {
			return "", docket.ContinueAsNew(n - 1)
		}
		return "liftoff", nil
	}, docket.Name("count"))
	got, err := docket.Execute[string](context.Background(), g, 5)
	if err != nil || got != "liftoff" {
		t.Fatalf("%q %v", got, err)
	}
}
