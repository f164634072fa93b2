package docket_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// Updates accepted while a run continues as new are not lost: those the
// old run did not apply wait in the inbox and the next run applies them.
func TestContinueAsNewCarriesUpdates(t *testing.T) {
	g := docket.NewGraph("counter-can", docket.Input[Tally]())
	var calls atomic.Int64
	docket.Register1(g, func(ctx context.Context, t Tally) (*Shipment, error) {
		calls.Add(1)
		t.Runs++
		applied := 0
		docket.HandleUpdate(ctx, "add", func(_ context.Context, n int) (int, error) {
			t.Total += n
			applied++
			return t.Total, nil
		}, nil)
		_, err := docket.ReceiveUnless[bool](ctx, "close", func() bool { return applied >= 3 })
		if errors.Is(err, docket.ErrStopped) {
			return nil, docket.ContinueAsNew(t)
		}
		if err != nil {
			return nil, err
		}
		return &Shipment{Amount: t.Total, Item: fmt.Sprint(t.Runs)}, nil
	}, docket.Name("count"))
	env := docktest.New(t, docktest.Options{}, g)
	ctx := context.Background()
	h, err := docket.Start[*Shipment](ctx, env.Engine, g, "can-1", Tally{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	answers := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := docket.Update[int](ctx, env.Engine, "can-1", "add", 1, docket.UpdateID(fmt.Sprint("u", i)))
			if err != nil {
				t.Error(err)
			}
			answers <- v
		}()
	}
	wg.Wait()
	close(answers)
	var got []int
	for v := range answers {
		got = append(got, v)
	}
	slices.Sort(got)
	for i, v := range got {
		if v != i+1 {
			t.Fatalf("answers %v, want 1..%d once each", got, n)
		}
	}
	// Once every update is applied the step waits quietly (no busy loop).
	time.Sleep(100 * time.Millisecond)
	before := calls.Load()
	time.Sleep(200 * time.Millisecond)
	if spun := calls.Load() - before; spun > 0 {
		t.Fatalf("the waiting step ran %d times in 200ms", spun)
	}
	if err := env.Signal(ctx, "can-1", "close", true); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil || s.Amount != n || s.Item == "1" {
		t.Fatalf("%+v %v; want %d over several runs", s, err, n)
	}
	// A repeated update ID gets its first answer, from an earlier run.
	v, err := docket.Update[int](ctx, env.Engine, "can-1", "add", 1, docket.UpdateID("u0"))
	var fe *docket.FinishedError
	if err != nil && !errors.As(err, &fe) || err == nil && (v < 1 || v > n) {
		t.Fatalf("repeated update: %v %v", v, err)
	}
}
