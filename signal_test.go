package docket_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

type Approval struct{ By string }

func approvalGraph() *docket.Graph {
	g := docket.NewGraph("approve", docket.Input[*Order]())
	docket.SignalInput[*Approval](g, "approve")
	docket.Register2(g, func(_ context.Context, o *Order, a *Approval) (*Shipment, error) {
		return &Shipment{Order: o.ID, Item: "approved by " + a.By}, nil
	}, docket.Name("ship"))
	return g
}

func TestSignalFeedsAGraphInput(t *testing.T) {
	g := approvalGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, err := docket.Start[*Shipment](ctx, env.Engine, g, "a-1", &Order{ID: "a-1"})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		d, _ := env.Describe(ctx, "a-1")
		return d != nil && len(d.Waiting) == 1 && strings.Contains(d.Waiting[0], "signal approve")
	})
	var ste *docket.SignalTypeError
	if err := env.Signal(ctx, "a-1", "approve", "ann"); !errors.As(err, &ste) {
		t.Fatalf("wrong payload type: %v", err)
	}
	if err := env.Signal(ctx, "a-1", "approve", &Approval{By: "ann"}); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil || s.Item != "approved by ann" {
		t.Fatalf("%v %v", s, err)
	}
	var fe *docket.FinishedError
	if err := env.Signal(ctx, "a-1", "approve", &Approval{}); !errors.As(err, &fe) {
		t.Fatalf("signal to a finished execution: %v", err)
	}
	var nf *docket.NotFoundError
	if err := env.Signal(ctx, "nope", "approve", &Approval{}); !errors.As(err, &nf) {
		t.Fatalf("signal to an unknown execution: %v", err)
	}
	// Ephemeral runs take the signal's value as an input, or say what is missing.
	s, err = docket.Execute[*Shipment](ctx, g, &Order{ID: "e"}, &Approval{By: "bob"})
	if err != nil || s.Item != "approved by bob" {
		t.Fatalf("ephemeral with the value: %v %v", s, err)
	}
	if _, err := docket.Execute[*Shipment](ctx, g, &Order{ID: "e"}); err == nil || !strings.Contains(err.Error(), `waits for signal "approve"`) {
		t.Fatalf("ephemeral without it: %v", err)
	}
}

type Collected []string

// awaitSignals waits for signals a, b and c in any order, each within an hour.
func awaitSignals() *docket.Graph {
	g := docket.NewGraph("await", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Collected, error) {
		var got Collected
		for _, name := range []string{"a", "b", "c"} {
			v, err := docket.ReceiveTimeout[string](ctx, name, time.Hour)
			if err != nil {
				return nil, err
			}
			got = append(got, v)
		}
		return got, nil
	}, docket.Name("collect"))
	return g
}

func TestSignalsInAnyOrder(t *testing.T) {
	g := awaitSignals()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[Collected](ctx, env.Engine, g, "s-1", &Order{})
	for _, name := range []string{"c", "a", "b"} {
		if err := env.Signal(ctx, "s-1", name, "value-"+name); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.Result(ctx)
	if err != nil || strings.Join(got, ",") != "value-a,value-b,value-c" {
		t.Fatalf("%v %v", got, err)
	}
	sigs, _ := env.Store().Signals(ctx, "s-1")
	for _, s := range sigs {
		if s.ConsumedBy != "collect" {
			t.Errorf("signal %s consumed by %q", s.Name, s.ConsumedBy)
		}
	}
}

func TestSignalTimeout(t *testing.T) {
	g := awaitSignals()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[Collected](ctx, env.Engine, g, "s-2", &Order{})
	if err := env.Signal(ctx, "s-2", "a", "only a"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool {
		d, _ := env.Describe(ctx, "s-2")
		return d != nil && len(d.Waiting) == 1 && strings.Contains(d.Waiting[0], "signal b until")
	})
	env.Clock.Advance(time.Hour)
	_, err := h.Result(ctx)
	if err == nil || !strings.Contains(err.Error(), "no signal arrived before the timeout") {
		t.Fatalf("got %v", err)
	}
}

func TestSignalsOfOneNameKeepTheirOrder(t *testing.T) {
	g := docket.NewGraph("order", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Collected, error) {
		var got Collected
		for range 3 {
			v, err := docket.Receive[string](ctx, "item")
			if err != nil {
				return nil, err
			}
			got = append(got, v)
		}
		return got, nil
	}, docket.Name("collect"))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	// The signals arrive with the start and before the step first looks.
	h, err := docket.SignalWithStart[Collected](ctx, eng, g, "o-1", "item", "first", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"second", "third"} {
		if _, err := docket.SignalWithStart[Collected](ctx, eng, g, "o-1", "item", v, &Order{}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := h.Result(ctx)
	if err != nil || strings.Join(got, ",") != "first,second,third" {
		t.Fatalf("%v %v", got, err)
	}
}

func TestReceiveOutsideDurableExecution(t *testing.T) {
	g := docket.NewGraph("eph", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (string, error) {
		return docket.Receive[string](ctx, "x")
	}, docket.Name("recv"))
	if _, err := docket.Execute[string](context.Background(), g, &Order{}); !errors.Is(err, docket.ErrNoInbox) {
		t.Fatalf("got %v", err)
	}
}
