package docket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

func TestListFiltersAndPages(t *testing.T) {
	g := durableCheckout()
	failing := docket.NewGraph("failing", docket.Input[*Order]())
	docket.Register1(failing, func(context.Context, *Order) (*Charge, error) { return nil, errors.New("no") }, docket.Name("charge"))
	eng := openEngine(t, nil, g, failing)
	ctx := context.Background()
	for i := range 7 {
		h, err := docket.Start[*Shipment](ctx, eng, g, fmt.Sprintf("ok-%d", i), &Order{ID: "x"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Result(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		h, _ := docket.Start[*Charge](ctx, eng, failing, fmt.Sprintf("bad-%d", i), &Order{})
		_, _ = h.Result(ctx)
	}
	var seen []string
	cursor := ""
	for {
		page, next, err := eng.List(ctx, docket.ListOptions{Graph: "checkout", Limit: 3, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page {
			seen = append(seen, x.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if strings.Join(seen, ",") != "ok-6,ok-5,ok-4,ok-3,ok-2,ok-1,ok-0" {
		t.Fatalf("paged list, newest first: %v", seen)
	}
	failed, _, err := eng.List(ctx, docket.ListOptions{Status: "failed"})
	if err != nil || len(failed) != 3 || failed[0].Graph != "failing" || failed[0].Error == "" {
		t.Fatalf("failed: %+v %v", failed, err)
	}
	none, _, _ := eng.List(ctx, docket.ListOptions{CreatedAfter: time.Now().Add(time.Hour)})
	if len(none) != 0 {
		t.Fatalf("time filter: %+v", none)
	}
}

func TestStepTimeoutAcrossAttempts(t *testing.T) {
	var attempts atomic.Int32
	g := docket.NewGraph("st", docket.Input[*Order]())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) {
		attempts.Add(1)
		return nil, errors.New("still down")
	}, docket.Name("charge"), docket.StepTimeout(10*24*time.Hour),
		docket.Retry(docket.RetryPolicy{MaxAttempts: -1, InitialInterval: 24 * time.Hour, BackoffCoefficient: 1}))
	env := docktest.New(t, docktest.Options{}, g)
	ctx := context.Background()
	h, _ := docket.Start[*Charge](ctx, env.Engine, g, "st-1", &Order{})
	if _, err := h.Result(ctx); err == nil {
		t.Fatal("want failure once the step timeout has passed")
	}
	// Daily retries for ten days: the attempts at days 0..9 run, and the
	// one due at day 10 would be past the step timeout.
	if n := attempts.Load(); n != 10 {
		t.Fatalf("%d attempts, want 10", n)
	}
}

func TestCancelWhileSleepingCompensates(t *testing.T) {
	var mu sync.Mutex
	var undone []string
	g := docket.NewGraph("trip", docket.Input[*Order]())
	docket.Register1(g, charge, docket.Name("charge"), docket.Compensate(func(_ context.Context, c *Charge) error {
		mu.Lock()
		undone = append(undone, "refund")
		mu.Unlock()
		return nil
	}))
	docket.Register1(g, func(ctx context.Context, c *Charge) (*Shipment, error) {
		return &Shipment{}, docket.Sleep(ctx, 7*24*time.Hour)
	}, docket.Name("wait-a-week"))
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[*Shipment](ctx, env.Engine, g, "c-1", &Order{ID: "o"})
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, "c-1"); return d != nil && len(d.Waiting) == 1 })
	if err := env.Cancel(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Result(ctx); !errors.Is(err, docket.ErrCancelled) {
		t.Fatalf("got %v", err)
	}
	d, _ := env.Describe(ctx, "c-1")
	if d.Status != "cancelled" || d.Steps[0].Compensation != "compensated" || d.Steps[1].Status != "cancelled" {
		t.Fatalf("%+v", d)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(undone) != 1 {
		t.Fatalf("compensations: %v", undone)
	}
}

func TestRandomAndUUIDReplay(t *testing.T) {
	type IDs struct{ Before, After string }
	var firstUUID, firstRand atomic.Value
	g := docket.NewGraph("ids", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*IDs, error) {
		id, n := docket.UUID(ctx), docket.Random(ctx)
		firstUUID.CompareAndSwap(nil, id)
		firstRand.CompareAndSwap(nil, n)
		if err := docket.Sleep(ctx, time.Hour); err != nil {
			return nil, err
		}
		// After the sleep the step ran again from the top; UUID and Random
		// returned the values recorded the first time.
		return &IDs{Before: id, After: fmt.Sprint(n)}, nil
	}, docket.Name("ids"))
	env := docktest.New(t, docktest.Options{}, g)
	ctx := context.Background()
	h, _ := docket.Start[*IDs](ctx, env.Engine, g, "ids-1", &Order{})
	ids, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ids.Before != firstUUID.Load() || ids.After != fmt.Sprint(firstRand.Load()) || len(ids.Before) != 36 {
		t.Fatalf("replayed %+v, first %v %v", ids, firstUUID.Load(), firstRand.Load())
	}
}
