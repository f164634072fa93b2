package docket_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/memory"
)

// openEngine opens an engine on st (a fresh memory store when nil) and
// closes it when the test ends.
func openEngine(t *testing.T, st store.Store, graphs ...*docket.Graph) *docket.Engine {
	t.Helper()
	if st == nil {
		st = memory.New()
	}
	return openConfig(t, docket.Config{Backend: st, Graphs: graphs,
		PollInterval: 20 * time.Millisecond, Lease: 2 * time.Second, ShutdownTimeout: time.Second})
}

// openConfig opens an engine with cfg and closes it when the test ends.
func openConfig(t *testing.T, cfg docket.Config) *docket.Engine {
	t.Helper()
	eng, err := docket.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = eng.Close() })
	return eng
}

func durableCheckout() *docket.Graph {
	g := docket.NewGraph("checkout", docket.Input[*Order]())
	docket.Register1(g, charge, docket.Name("charge"))
	docket.Register1(g, reserve, docket.Name("reserve"))
	docket.Register3(g, ship, docket.Name("ship"))
	return g
}

func TestDurableDiamond(t *testing.T) {
	g := durableCheckout()
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, err := docket.Start[*Shipment](ctx, eng, g, "o-1", &Order{ID: "o-1"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if *s != (Shipment{Order: "o-1", Amount: 30, Item: "item-o-1"}) {
		t.Fatalf("got %+v", s)
	}
	// Same ID: the same execution, not a second one.
	h2, err := docket.Start[*Shipment](ctx, eng, g, "o-1", &Order{ID: "other"})
	if err != nil {
		t.Fatal(err)
	}
	if s2, _ := h2.Result(ctx); s2.Order != "o-1" {
		t.Fatalf("a second Start with the same ID must return the first execution, got %+v", s2)
	}
	_, err = docket.Start[*Shipment](ctx, eng, g, "o-1", &Order{}, docket.OnConflict(docket.FailIfExists))
	var ae *docket.AlreadyStartedError
	if !errors.As(err, &ae) {
		t.Fatalf("FailIfExists: %v", err)
	}
}

type Wake struct{ At time.Time }

func TestDurableSleepAndRun(t *testing.T) {
	var sideEffects atomic.Int32
	g := docket.NewGraph("nap", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		n, err := docket.Run(ctx, "charge-card", func(ctx context.Context) (int, error) {
			return int(sideEffects.Add(1)) * 100, nil
		})
		if err != nil {
			return nil, err
		}
		if err := docket.Sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
		return &Charge{Amount: n}, nil
	}, docket.Name("charge"))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, err := docket.Start[*Charge](ctx, eng, g, "nap-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c.Amount != 100 || sideEffects.Load() != 1 {
		t.Fatalf("amount %d, side effects %d: the resumed step must reuse Run's recorded result", c.Amount, sideEffects.Load())
	}
	j, _ := eng.Store().Journal(ctx, "nap-1", "charge")
	if len(j) != 2 || j[0].Kind != "run" || j[1].Kind != "sleep" {
		t.Fatalf("journal %+v", j)
	}
}

func TestDurableRetryAndSaga(t *testing.T) {
	var mu sync.Mutex
	var undone []string
	record := func(s string) { mu.Lock(); undone = append(undone, s); mu.Unlock() }
	var attempts atomic.Int32
	g := docket.NewGraph("trip", docket.Input[*Order]())
	docket.Register1(g, charge, docket.Name("charge"),
		docket.Compensate(func(_ context.Context, c *Charge) error { record("refund"); return nil }))
	docket.Register2(g, func(_ context.Context, o *Order, c *Charge) (*Reservation, error) {
		return &Reservation{Item: "car"}, nil
	}, docket.Name("reserve"), docket.Compensate(func(_ context.Context, r *Reservation) error { record("release " + r.Item); return nil }))
	docket.Register2(g, func(_ context.Context, c *Charge, r *Reservation) (*Shipment, error) {
		attempts.Add(1)
		return nil, errors.New("no flights")
	}, docket.Name("ship"), docket.Retry(docket.RetryPolicy{MaxAttempts: 3, InitialInterval: 5 * time.Millisecond}))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, err := docket.Start[*Shipment](ctx, eng, g, "trip-1", &Order{ID: "t"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || xe.Status != "failed" {
		t.Fatalf("want failed execution, got %v", err)
	}
	if attempts.Load() != 3 {
		t.Fatalf("ship ran %d times, want 3", attempts.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(undone) != 2 || undone[0] != "release car" || undone[1] != "refund" {
		t.Fatalf("compensations %v, want reverse order", undone)
	}
	steps, _ := eng.Store().Steps(ctx, "trip-1")
	for _, s := range steps {
		if s.Name != "ship" && s.Comp != store.CompDone {
			t.Errorf("step %s compensation %q", s.Name, s.Comp)
		}
	}
}

func TestDurableCancel(t *testing.T) {
	started := make(chan struct{})
	var sawCancel atomic.Bool
	g := docket.NewGraph("cancel", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		return nil, ctx.Err()
	}, docket.Name("charge"))
	eng := openEngine(t, nil, g)
	ctx := context.Background()
	h, err := docket.Start[*Charge](ctx, eng, g, "c-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if err := eng.Cancel(ctx, "c-1"); err != nil {
		t.Fatal(err)
	}
	_, err = h.Result(ctx)
	if !errors.Is(err, docket.ErrCancelled) || !sawCancel.Load() {
		t.Fatalf("got %v, step saw cancel: %v", err, sawCancel.Load())
	}
	var fe *docket.FinishedError
	if err := eng.Cancel(ctx, "c-1"); !errors.As(err, &fe) {
		t.Fatalf("cancelling a finished execution: %v", err)
	}
}

func newMemory() store.Store { return memory.New() }
