package docket_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

func TestExecuteDiamond(t *testing.T) {
	s, err := docket.Execute[*Shipment](context.Background(), checkout(), &Order{ID: "o-17"})
	if err != nil {
		t.Fatal(err)
	}
	if *s != (Shipment{Order: "o-17", Amount: 40, Item: "item-o-17"}) {
		t.Fatalf("got %+v", s)
	}
}

// gate lets a test see which steps are running at the same time.
type gate struct {
	running, peak atomic.Int32
}

func (g *gate) enter() func() {
	n := g.running.Add(1)
	for {
		p := g.peak.Load()
		if n <= p || g.peak.CompareAndSwap(p, n) {
			break
		}
	}
	return func() { g.running.Add(-1) }
}

func TestIndependentStepsRunConcurrently(t *testing.T) {
	// Both steps wait for each other: this only finishes if they overlap.
	var wg sync.WaitGroup
	wg.Add(2)
	meet := func() { wg.Done(); wg.Wait() }
	g := docket.NewGraph("meet", docket.Input[*Order]())
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) { meet(); return &Charge{}, nil }, docket.Name("c"))
	docket.Register1(g, func(_ context.Context, o *Order) (*Reservation, error) { meet(); return &Reservation{}, nil }, docket.Name("r"))
	docket.Register2(g, func(_ context.Context, c *Charge, r *Reservation) (*Shipment, error) { return &Shipment{}, nil }, docket.Name("s"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := docket.Execute[*Shipment](ctx, g, &Order{}); err != nil {
		t.Fatal(err)
	}
}

func TestRunsOnlyNeededStepsOnce(t *testing.T) {
	var calls sync.Map
	count := func(name string) {
		v, _ := calls.LoadOrStore(name, new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
	}
	g := docket.NewGraph("once", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) { count("charge"); return charge(ctx, o) }, docket.Name("charge"))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Reservation, error) { count("reserve"); return reserve(ctx, o) }, docket.Name("reserve"))
	// Two consumers of *Charge: it must still run once.
	docket.Register2(g, func(_ context.Context, c *Charge, r *Reservation) (*Shipment, error) {
		count("ship")
		return &Shipment{Amount: c.Amount}, nil
	}, docket.Name("ship"))
	docket.Register2(g, func(_ context.Context, c *Charge, s *Shipment) (*Invoice, error) {
		count("invoice")
		return &Invoice{Total: c.Amount + s.Amount}, nil
	}, docket.Name("invoice"))
	docket.Register1(g, func(_ context.Context, o *Order) (string, error) { count("unused"); return "", nil }, docket.Name("unused"))

	inv, err := docket.Execute[*Invoice](context.Background(), g, &Order{ID: "abc"})
	if err != nil || inv.Total != 60 {
		t.Fatalf("%v %v", inv, err)
	}
	for _, name := range []string{"charge", "reserve", "ship", "invoice"} {
		if v, ok := calls.Load(name); !ok || v.(*atomic.Int32).Load() != 1 {
			t.Errorf("%s ran %v times, want 1", name, v)
		}
	}
	if _, ok := calls.Load("unused"); ok {
		t.Error("a step the target does not need ran")
	}
}

func TestFailureStopsGraphAndCancelsRunningSteps(t *testing.T) {
	boom := errors.New("card declined")
	var sawCancel atomic.Bool
	started := make(chan struct{})
	g := docket.NewGraph("fail", docket.Input[*Order]())
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) { <-started; return nil, boom }, docket.Name("charge"))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Reservation, error) {
		close(started)
		<-ctx.Done()
		sawCancel.Store(true)
		return nil, ctx.Err()
	}, docket.Name("reserve"))
	docket.Register2(g, func(_ context.Context, c *Charge, r *Reservation) (*Shipment, error) {
		t.Error("ship must not run")
		return nil, nil
	}, docket.Name("ship"))
	_, err := docket.Execute[*Shipment](context.Background(), g, &Order{})
	var se *docket.StepError
	if !errors.As(err, &se) || se.Step != "charge" || se.Attempts != 1 || !errors.Is(err, boom) {
		t.Fatalf("got %v", err)
	}
	if !sawCancel.Load() {
		t.Fatal("the running step was not cancelled (or Execute returned before it ended)")
	}
	want := `docket: graph "fail": step "charge" failed after 1 attempt: card declined`
	if err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
}

func TestAbortSkipsRetries(t *testing.T) {
	var attempts atomic.Int32
	g := docket.NewGraph("abort", docket.Input[*Order](), docket.Retry(docket.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Millisecond}))
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) {
		attempts.Add(1)
		return nil, docket.Abort(errors.New("customer is gone"))
	}, docket.Name("charge"))
	_, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if !docket.IsAbort(err) || attempts.Load() != 1 {
		t.Fatalf("attempts=%d err=%v", attempts.Load(), err)
	}
}

func TestPanicBecomesStepError(t *testing.T) {
	g := docket.NewGraph("panic", docket.Input[*Order]())
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) {
		var items []int
		return &Charge{Amount: items[len(o.ID)]}, nil // index out of range
	}, docket.Name("charge"))
	docket.Register1(g, reserve)
	docket.Register3(g, ship)
	_, err := docket.Execute[*Shipment](context.Background(), g, &Order{})
	var pe *docket.PanicError
	if !errors.As(err, &pe) {
		t.Fatalf("want PanicError, got %v", err)
	}
	var re runtime.Error
	if !errors.As(err, &re) {
		t.Error("the runtime error should be reachable with errors.As")
	}
	if !strings.Contains(string(pe.Stack), "execute_test.go") {
		t.Errorf("stack does not show the panicking code:\n%s", pe.Stack)
	}
}

func TestGoexitBecomesStepError(t *testing.T) {
	g := docket.NewGraph("goexit", docket.Input[*Order]())
	// reserve is the first root, so it runs on Execute's goroutine; charge
	// gets a goroutine of its own, whose Goexit must become a step error.
	docket.Register(g, reserve)
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) { runtime.Goexit(); return nil, nil }, docket.Name("charge"))
	docket.Register3(g, ship)
	_, err := docket.Execute[*Shipment](context.Background(), g, &Order{})
	var se *docket.StepError
	if !errors.Is(err, docket.ErrGoexit) || !errors.As(err, &se) || se.Step != "charge" {
		t.Fatalf("got %v", err)
	}
}

func TestRetryPolicy(t *testing.T) {
	var attempts atomic.Int32
	var delays []time.Duration
	var mu sync.Mutex
	obs := &recorder{onRetry: func(e docket.StepEvent) { mu.Lock(); delays = append(delays, e.Delay); mu.Unlock() }}
	g := docket.NewGraph("retry", docket.Input[*Order](), docket.WithObserver(obs))
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) {
		if attempts.Add(1) < 4 {
			return nil, errors.New("flaky")
		}
		return &Charge{Amount: 1}, nil
	}, docket.Name("charge"), docket.Retry(docket.RetryPolicy{
		MaxAttempts: 5, InitialInterval: time.Millisecond, BackoffCoefficient: 3, MaxInterval: 5 * time.Millisecond,
	}))
	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if err != nil || c.Amount != 1 || attempts.Load() != 4 {
		t.Fatalf("attempts=%d %v %v", attempts.Load(), c, err)
	}
	want := []time.Duration{time.Millisecond, 3 * time.Millisecond, 5 * time.Millisecond}
	if fmt.Sprint(delays) != fmt.Sprint(want) {
		t.Fatalf("backoff = %v, want %v", delays, want)
	}
}

func TestRetryExhaustedAndNonRetryable(t *testing.T) {
	errBad := errors.New("bad request")
	errClassified := errors.New("classified")
	cases := []struct {
		name  string
		err   error
		want  int32
		extra func(*docket.RetryPolicy)
	}{
		{"exhausted", errors.New("flaky"), 3, nil},
		{"listed", fmt.Errorf("wrapped: %w", errBad), 1, func(p *docket.RetryPolicy) { p.NonRetryable = []error{errBad} }},
		{"marked", docket.NonRetryable(errors.New("no")), 1, nil},
		{"classifier", errClassified, 1, func(p *docket.RetryPolicy) {
			p.Retryable = func(err error) bool { return !errors.Is(err, errClassified) }
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := docket.RetryPolicy{MaxAttempts: 3, InitialInterval: time.Microsecond}
			if c.extra != nil {
				c.extra(&p)
			}
			var n atomic.Int32
			g := docket.NewGraph("g", docket.Input[*Order](), docket.Retry(p)) // graph default
			docket.Register1(g, func(context.Context, *Order) (*Charge, error) { n.Add(1); return nil, c.err }, docket.Name("charge"))
			_, err := docket.Execute[*Charge](context.Background(), g, &Order{})
			var se *docket.StepError
			if !errors.As(err, &se) || se.Attempts != int(c.want) || n.Load() != c.want {
				t.Fatalf("ran %d times, err %v; want %d attempts", n.Load(), err, c.want)
			}
		})
	}
}

func TestStepTimeout(t *testing.T) {
	var attempts atomic.Int32
	g := docket.NewGraph("timeout", docket.Input[*Order](), docket.Timeout(time.Hour))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		if attempts.Add(1) == 1 {
			<-ctx.Done() // the first attempt hangs until its timeout
			return nil, ctx.Err()
		}
		return &Charge{Amount: 2}, nil
	}, docket.Name("charge"), docket.Timeout(20*time.Millisecond), docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Millisecond}))
	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if err != nil || c.Amount != 2 {
		t.Fatalf("a retry must get a fresh timeout: %v %v", c, err)
	}

	g = docket.NewGraph("timeout", docket.Input[*Order](), docket.Timeout(20*time.Millisecond))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) { <-ctx.Done(); return nil, ctx.Err() }, docket.Name("charge"))
	_, err = docket.Execute[*Charge](context.Background(), g, &Order{})
	var te *docket.TimeoutError
	if !errors.As(err, &te) || te.Step != "charge" || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("graph default timeout: %v", err)
	}
}

func TestExecutionTimeoutAndCallerCancel(t *testing.T) {
	g := docket.NewGraph("slow", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) { <-ctx.Done(); return nil, ctx.Err() }, docket.Name("charge"))
	_, err := docket.Execute[*Charge](context.Background(), g, &Order{}, docket.ExecutionTimeout(20*time.Millisecond))
	if err == nil || !strings.Contains(err.Error(), "execution timed out after 20ms") {
		t.Fatalf("execution timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	_, err = docket.Execute[*Charge](ctx, g, &Order{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("caller cancel: %v", err)
	}
}

func TestRace(t *testing.T) {
	var loserErr atomic.Value
	loserDone, loserStarted := make(chan struct{}), make(chan struct{})
	g := docket.NewGraph("race", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		<-loserStarted
		return &Charge{Amount: 1}, nil
	}, docket.Name("fast"), docket.Race())
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		defer close(loserDone)
		close(loserStarted)
		<-ctx.Done()
		loserErr.Store(ctx.Err())
		return nil, ctx.Err()
	}, docket.Name("slow"), docket.Race())
	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if err != nil || c.Amount != 1 {
		t.Fatalf("%v %v", c, err)
	}
	select {
	case <-loserDone:
	default:
		t.Fatal("Execute returned before the loser ended")
	}
	if loserErr.Load() != context.Canceled {
		t.Fatalf("loser saw %v, want context.Canceled", loserErr.Load())
	}
}

func TestRaceAllFail(t *testing.T) {
	e1, e2 := errors.New("first down"), errors.New("second down")
	g := docket.NewGraph("race", docket.Input[*Order]())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) { return nil, e1 }, docket.Name("a"), docket.Race())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) { return nil, e2 }, docket.Name("b"), docket.Race())
	_, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if !errors.Is(err, e1) || !errors.Is(err, e2) {
		t.Fatalf("want both failures joined, got %v", err)
	}
}

func TestRaceFailureThenSuccess(t *testing.T) {
	release := make(chan struct{})
	g := docket.NewGraph("race", docket.Input[*Order]())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) {
		defer close(release)
		return nil, errors.New("down")
	}, docket.Name("a"), docket.Race())
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) { <-release; return &Charge{Amount: 9}, nil }, docket.Name("b"), docket.Race())
	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if err != nil || c.Amount != 9 {
		t.Fatalf("one failed racer must not fail the race: %v %v", c, err)
	}
}

func TestConcurrentExecutions(t *testing.T) {
	g := checkout()
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprint(i)
			s, err := docket.Execute[*Shipment](context.Background(), g, &Order{ID: id})
			if err != nil || s.Order != id || s.Item != "item-"+id {
				t.Errorf("%d: %v %v", i, s, err)
			}
		}()
	}
	wg.Wait()
}

func TestTargetIsInput(t *testing.T) {
	o, err := docket.Execute[*Order](context.Background(), checkout(), &Order{ID: "same"})
	if err != nil || o.ID != "same" {
		t.Fatalf("%v %v", o, err)
	}
}

func TestOptionsMixWithInputs(t *testing.T) {
	s, err := docket.Execute[*Shipment](context.Background(), checkout(),
		docket.ExecutionID("mixed"), docket.With(&Order{ID: "w"}), docket.ExecutionTimeout(time.Minute))
	if err != nil || s.Order != "w" {
		t.Fatalf("%v %v", s, err)
	}
}

func TestRetryJitter(t *testing.T) {
	var delays []time.Duration
	var mu sync.Mutex
	obs := &recorder{onRetry: func(e docket.StepEvent) { mu.Lock(); delays = append(delays, e.Delay); mu.Unlock() }}
	g := docket.NewGraph("jitter", docket.Input[*Order](), docket.WithObserver(obs))
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) { return nil, errors.New("down") },
		docket.Name("charge"), docket.Retry(docket.RetryPolicy{
			MaxAttempts: 30, InitialInterval: 100 * time.Microsecond, BackoffCoefficient: 1, Jitter: 0.5,
		}))
	if _, err := docket.Execute[*Charge](context.Background(), g, &Order{}); err == nil {
		t.Fatal("want failure")
	}
	distinct := map[time.Duration]bool{}
	for _, d := range delays {
		if d < 50*time.Microsecond || d > 150*time.Microsecond {
			t.Fatalf("delay %v outside 100µs ± 50%%", d)
		}
		distinct[d] = true
	}
	if len(delays) != 29 || len(distinct) < 10 {
		t.Fatalf("%d delays, %d distinct: jitter is not spreading them", len(delays), len(distinct))
	}
}

func TestEphemeralSaga(t *testing.T) {
	var mu sync.Mutex
	var log []string
	note := func(s string) { mu.Lock(); log = append(log, s); mu.Unlock() }
	refundFails := errors.New("refund service down")
	g := docket.NewGraph("trip", docket.Input[*Order]())
	docket.Register1(g, charge, docket.Name("charge"), docket.Compensate(func(_ context.Context, c *Charge) error {
		note(fmt.Sprintf("refund %d", c.Amount))
		return refundFails
	}))
	docket.Register2(g, func(_ context.Context, o *Order, c *Charge) (*Reservation, error) {
		return &Reservation{Item: "hotel"}, nil
	}, docket.Name("hotel"), docket.Compensate(func(_ context.Context, r *Reservation) error { note("cancel " + r.Item); return nil }))
	docket.Register2(g, func(context.Context, *Charge, *Reservation) (*Shipment, error) {
		return nil, errors.New("flight full")
	}, docket.Name("flight"))
	_, err := docket.Execute[*Shipment](context.Background(), g, &Order{ID: "ab"})
	var se *docket.StepError
	var ce *docket.CompensationError
	if !errors.As(err, &se) || se.Step != "flight" || !errors.As(err, &ce) || ce.Step != "charge" || !errors.Is(err, refundFails) {
		t.Fatalf("got %v", err)
	}
	if fmt.Sprint(log) != "[cancel hotel refund 20]" {
		t.Fatalf("compensations ran as %v, want newest first", log)
	}
}

func TestCompensationTypeMismatch(t *testing.T) {
	g := docket.NewGraph("g", docket.Input[*Order]())
	docket.Register1(g, charge, docket.Name("charge"), docket.Compensate(func(context.Context, *Reservation) error { return nil }))
	var se *docket.SignatureError
	if err := g.Validate(); !errors.As(err, &se) || !strings.Contains(se.Reason, "compensation takes") {
		t.Fatalf("got %v", err)
	}
}
