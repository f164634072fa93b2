package docket_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"github.com/docket-run/docket/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type Progress struct{ Done int }

func TestDurableHeartbeatDetailsReachNextAttempt(t *testing.T) {
	var attempts atomic.Int32
	var resumedFrom atomic.Int32
	g := docket.NewGraph("files", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		n := attempts.Add(1)
		start := 0
		if p, ok := docket.HeartbeatDetails[Progress](ctx); ok {
			start = p.Done
			resumedFrom.Store(int32(p.Done))
		}
		for i := start; i < 10; i++ {
			docket.Heartbeat(ctx, Progress{Done: i + 1})
			if n == 1 && i == 6 {
				return nil, errors.New("disk hiccup")
			}
		}
		return &Charge{Amount: start}, nil
	}, docket.Name("process"), docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, err := docket.Start[*Charge](ctx, eng, g, "hb-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if attempts.Load() != 2 || c.Amount != 7 || resumedFrom.Load() != 7 {
		t.Fatalf("attempts %d, resumed from %d", attempts.Load(), resumedFrom.Load())
	}
}

func TestDurableHeartbeatTimeout(t *testing.T) {
	var attempts atomic.Int32
	g := docket.NewGraph("hang", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		if attempts.Add(1) == 1 {
			<-ctx.Done() // hangs without heartbeats
			return nil, ctx.Err()
		}
		return &Charge{Amount: 1}, nil
	}, docket.Name("hang"), docket.HeartbeatTimeout(30*time.Millisecond),
		docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, _ := docket.Start[*Charge](ctx, eng, g, "hang-1", &Order{})
	if c, err := h.Result(ctx); err != nil || c.Amount != 1 {
		t.Fatalf("%v %v", c, err)
	}
	d, _ := eng.Describe(ctx, "hang-1")
	if d.Steps[0].Attempts != 2 {
		t.Fatalf("attempts %d", d.Steps[0].Attempts)
	}
}

func TestDurableExecutionTimeoutOnVirtualTime(t *testing.T) {
	g := docket.NewGraph("slow", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		if err := docket.Sleep(ctx, 48*time.Hour); err != nil {
			return nil, err
		}
		return &Charge{}, nil
	}, docket.Name("wait"))
	env := docktest.New(t, docktest.Options{}, g)
	ctx := context.Background()
	h, err := docket.Start[*Charge](ctx, env.Engine, g, "to-1", &Order{}, docket.ExecutionTimeout(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || !strings.Contains(xe.Message, "timed out after 24h") {
		t.Fatalf("got %v", err)
	}
	d, _ := env.Describe(ctx, "to-1")
	if d.Steps[0].Status != "cancelled" {
		t.Fatalf("the sleeping step should be cancelled, is %s", d.Steps[0].Status)
	}
}

func TestDurableNonDeterminism(t *testing.T) {
	var version atomic.Int32
	g := docket.NewGraph("nd", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		name := "charge-v1"
		if version.Load() == 2 {
			name = "charge-v2" // the code changed while the step slept
		}
		if _, err := docket.Run(ctx, name, func(context.Context) (int, error) { return 1, nil }); err != nil {
			return nil, err
		}
		if err := docket.Sleep(ctx, time.Hour); err != nil {
			return nil, err
		}
		return &Charge{}, nil
	}, docket.Name("step"), docket.Retry(docket.RetryPolicy{MaxAttempts: 5}))
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[*Charge](ctx, env.Engine, g, "nd-1", &Order{})
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, "nd-1"); return d != nil && len(d.Waiting) == 1 })
	version.Store(2)
	env.Clock.Advance(time.Hour)
	_, err := h.Result(ctx)
	if err == nil || !strings.Contains(err.Error(), `durable call #0 is run("charge-v2") now but the journal recorded run("charge-v1")`) {
		t.Fatalf("got %v", err)
	}
	d, _ := env.Describe(ctx, "nd-1")
	if d.Steps[0].Attempts != 1 {
		t.Fatalf("a non-determinism error must not be retried; %d attempts", d.Steps[0].Attempts)
	}
}

func TestStartRejectsBadInputBeforeRecording(t *testing.T) {
	g := durableCheckout()
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	other := docket.NewGraph("other")
	var ug *docket.UnknownGraphError
	if _, err := docket.Start[*Shipment](ctx, eng, other, "x", &Order{}); !errors.As(err, &ug) {
		t.Fatalf("unknown graph: %v", err)
	}
	var ui *docket.UnknownInputError
	if _, err := docket.Start[*Shipment](ctx, eng, g, "x", 42); !errors.As(err, &ui) {
		t.Fatalf("wrong input type: %v", err)
	}
	var mi *docket.MissingInputError
	if _, err := docket.Start[*Shipment](ctx, eng, g, "x"); !errors.As(err, &mi) {
		t.Fatalf("missing input: %v", err)
	}
	if _, err := docket.Start[func()](ctx, eng, g, "x", &Order{}); err == nil {
		t.Fatal("unknown target must fail")
	}
	if _, err := eng.Describe(ctx, "x"); err == nil {
		t.Fatal("nothing may be recorded for a rejected Start")
	}
	var nf *docket.NotFoundError
	if _, err := eng.Describe(ctx, "nope"); !errors.As(err, &nf) {
		t.Fatalf("describe unknown: %v", err)
	}
	if err := eng.Cancel(ctx, "nope"); !errors.As(err, &nf) {
		t.Fatalf("cancel unknown: %v", err)
	}
}

func TestUnnamedStepsCannotRunDurably(t *testing.T) {
	g := docket.NewGraph("anon", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) { return nil, nil })
	_, err := docket.Open(context.Background(), docket.Config{Store: "memory:", Graphs: []*docket.Graph{g}})
	var ue *docket.UnnamedStepError
	if !errors.As(err, &ue) {
		t.Fatalf("got %v", err)
	}
}

func TestCorruptPayloadFailsClearly(t *testing.T) {
	g := durableCheckout()
	st := newMemory()
	eng := openEngine(t, st, g)
	ctx := context.Background()
	// Record an execution whose input bytes are not JSON.
	err := st.Update(ctx, "bad", func(tx store.Tx) error {
		now := time.Now()
		if err := tx.CreateExecution(&store.Execution{ID: "bad", Run: 1, Graph: "checkout", Target: "*docket_test.Shipment",
			Status: store.Running, Inputs: []store.Value{{Type: "*docket_test.Order", Data: []byte("{not json")}},
			CreatedAt: now, UpdatedAt: now}); err != nil {
			return err
		}
		for _, s := range []string{"charge", "reserve"} {
			if err := tx.PutStep(&store.Step{Name: s, Status: store.StepReady, ReadyAt: now}); err != nil {
				return err
			}
			if err := tx.AddTask(&store.Task{Step: s, Kind: store.TaskStep, ReadyAt: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = docket.HandleFor[*Shipment](eng, "bad").Result(ctx)
	if err == nil || !strings.Contains(err.Error(), "cannot be decoded") {
		t.Fatalf("got %v", err)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDurableProtoOutputs(t *testing.T) {
	g := docket.NewGraph("proto", docket.Input[*Order]())
	docket.Register1(g, func(_ context.Context, o *Order) (*wrapperspb.StringValue, error) {
		return wrapperspb.String("order " + o.ID), nil
	}, docket.Name("label"))
	docket.Register1(g, func(_ context.Context, s *wrapperspb.StringValue) (*wrapperspb.Int64Value, error) {
		return wrapperspb.Int64(int64(len(s.Value))), nil
	}, docket.Name("measure"))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, _ := docket.Start[*wrapperspb.Int64Value](ctx, eng, g, "p-1", &Order{ID: "abc"})
	n, err := h.Result(ctx)
	if err != nil || n.Value != 9 {
		t.Fatalf("%v %v", n, err)
	}
	steps, _ := eng.Store().Steps(ctx, "p-1")
	for _, s := range steps {
		if s.Name == "label" && string(s.Output.Data) != string(mustProto(t, wrapperspb.String("order abc"))) {
			t.Fatalf("label output is not protobuf: %q", s.Output.Data)
		}
	}
}

func mustProto(t *testing.T, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDurableMapRejectsDurableCallsInItems(t *testing.T) {
	g := docket.NewGraph("mapsleep", docket.Input[[]int]())
	docket.Map(g, func(ctx context.Context, n int) (int64, error) {
		if err := docket.Sleep(ctx, time.Hour); err != nil {
			return 0, err
		}
		return int64(n), nil
	}, docket.Name("each"))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, _ := docket.Start[[]int64](ctx, eng, g, "m-1", []int{1, 2})
	_, err := h.Result(ctx)
	if err == nil || !strings.Contains(err.Error(), "durable calls cannot be made inside Map items") {
		t.Fatalf("got %v", err)
	}
	// The same Map runs fine without durable calls.
	g2 := docket.NewGraph("mapok", docket.Input[[]int]())
	docket.Map(g2, func(ctx context.Context, n int) (int64, error) { return int64(n * n), nil }, docket.Name("sq"))
	eng2 := openEngine(t, nil, g2)
	h2, _ := docket.Start[[]int64](ctx, eng2, g2, "m-2", []int{1, 2, 3})
	if v, err := h2.Result(ctx); err != nil || len(v) != 3 || v[2] != 9 {
		t.Fatalf("%v %v", v, err)
	}
}
