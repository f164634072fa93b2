package docket_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

type Outcome struct{ Log []string }

// A step selects over a signal and a durable timer: it suspends (no
// goroutine), and whichever comes first wins; replays keep the choice.
func TestSelectSignalOrTimer(t *testing.T) {
	var fetches atomic.Int32
	g := docket.NewGraph("sel", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Outcome, error) {
		var out Outcome
		// Work that completes before the wait: recorded, not redone on resume.
		v, err := docket.Go(ctx, "fetch", func(context.Context) (int, error) { return int(fetches.Add(1)), nil }).Get(ctx)
		if err != nil {
			return out, err
		}
		out.Log = append(out.Log, fmt.Sprint("fetched ", v))
		timer := docket.NewTimer(ctx, time.Hour)
		sel := docket.NewSelector()
		docket.AddFuture(sel, timer, func(time.Time, error) { out.Log = append(out.Log, "timeout") })
		docket.AddSignal(sel, "a", func(s string) { out.Log = append(out.Log, "a:"+s) })
		docket.AddSignal(sel, "b", func(s string) { out.Log = append(out.Log, "b:"+s) })
		for len(out.Log) < 4 {
			if err := sel.Select(ctx); err != nil {
				return out, err
			}
			if out.Log[len(out.Log)-1] == "timeout" {
				break
			}
		}
		return out, nil
	}, docket.Name("wait"))
	env := docktest.New(t, docktest.Options{ManualTime: true, Store: "sqlite:" + filepath.Join(t.TempDir(), "s.db")}, g)
	ctx := context.Background()
	h, err := docket.Start[Outcome](ctx, env.Engine, g, "s-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	suspendedOn := func(want string) {
		t.Helper()
		waitUntil(t, func() bool {
			d, _ := env.Describe(ctx, "s-1")
			return d != nil && len(d.Waiting) == 1 && strings.Contains(d.Waiting[0], want)
		})
	}
	suspendedOn("select: signal a or signal b or timer until 2030-01-01T01:00:00Z")
	if err := env.Signal(ctx, "s-1", "b", "first"); err != nil {
		t.Fatal(err)
	}
	received := func(n int) {
		t.Helper()
		waitUntil(t, func() bool {
			d, _ := env.Describe(ctx, "s-1")
			if d == nil || len(d.Waiting) != 1 {
				return false
			}
			hist, _ := env.History(ctx, "s-1")
			got := 0
			for _, h := range hist {
				if h.Kind == "signal" && h.Step == "wait" {
					got++
				}
			}
			return got == n
		})
	}
	received(1)
	if err := env.Signal(ctx, "s-1", "a", "second"); err != nil {
		t.Fatal(err)
	}
	// Let the step suspend again, then let the timer fire.
	received(2)
	env.Clock.Advance(2 * time.Hour)
	out, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(out.Log, ","); got != "fetched 1,b:first,a:second,timeout" {
		t.Fatalf("log %q", got)
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("Go work ran %d times", n)
	}
}

// Work started with Go runs beside the step; a timer tells when it takes
// too long, and is cancelled when the work is done (the timer sample).
func TestSelectWorkAndTimer(t *testing.T) {
	release := make(chan struct{})
	g := docket.NewGraph("slow", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Outcome, error) {
		var out Outcome
		work := docket.Go(ctx, "process", func(ctx context.Context) (string, error) {
			select {
			case <-release:
				return "processed", nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		})
		timer := docket.NewTimer(ctx, time.Minute)
		sel := docket.NewSelector()
		docket.AddFuture(sel, timer, func(time.Time, error) { out.Log = append(out.Log, "slow: notified") })
		docket.AddFuture(sel, work, func(s string, err error) { out.Log = append(out.Log, s) })
		if err := sel.Select(ctx); err != nil {
			return out, err
		}
		if len(out.Log) == 1 && out.Log[0] == "slow: notified" {
			if err := sel.Select(ctx); err != nil { // now the work
				return out, err
			}
		} else {
			timer.Cancel()
			if _, err := timer.Get(ctx); !errors.Is(err, docket.ErrCancelled) {
				return out, fmt.Errorf("cancelled timer: %v", err)
			}
			out.Log = append(out.Log, "timer cancelled")
		}
		return out, nil
	}, docket.Name("run"))
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()

	// Slow: the timer fires while the work runs.
	h, err := docket.Start[Outcome](ctx, env.Engine, g, "slow-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, "slow-1"); return d != nil && d.Steps[0].Status == "running" })
	time.Sleep(20 * time.Millisecond)
	env.Clock.Advance(2 * time.Minute)
	time.Sleep(20 * time.Millisecond)
	release <- struct{}{}
	out, err := h.Result(ctx)
	if err != nil || strings.Join(out.Log, ",") != "slow: notified,processed" {
		t.Fatalf("slow: %v %v", out, err)
	}

	// Fast: the work ends first and the timer is cancelled.
	h, err = docket.Start[Outcome](ctx, env.Engine, g, "fast-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	release <- struct{}{}
	out, err = h.Result(ctx)
	if err != nil || strings.Join(out.Log, ",") != "processed,timer cancelled" {
		t.Fatalf("fast: %v %v", out, err)
	}
}

// AwaitFirst races two children and cancels the loser.
func TestAwaitFirstCancelsLosers(t *testing.T) {
	child := docket.NewGraph("racer", docket.Input[Part]())
	docket.Register1(child, func(ctx context.Context, p Part) (Built, error) {
		if p.N == 0 {
			_, err := docket.Receive[bool](ctx, "never")
			return Built{}, err
		}
		return Built(p), docket.Sleep(ctx, time.Duration(p.N)*time.Second)
	}, docket.Name("race"))
	g := docket.NewGraph("racing", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Assembly, error) {
		slow := docket.CallAsync[Built](ctx, child, "slow", Part{N: 0})
		fast := docket.CallAsync[Built](ctx, child, "fast", Part{N: 3})
		i, b, err := docket.AwaitFirst(ctx, slow, fast)
		if err != nil {
			return Assembly{}, err
		}
		if _, err := slow.Get(ctx); err == nil {
			return Assembly{}, errors.New("the loser was not cancelled")
		}
		return Assembly{Total: i*100 + b.N}, nil
	}, docket.Name("race-children"))
	env := docktest.New(t, docktest.Options{}, g, child)
	ctx := context.Background()
	h, err := docket.Start[Assembly](ctx, env.Engine, g, "r-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Result(ctx)
	if err != nil || a.Total != 103 {
		t.Fatalf("%v %v", a, err)
	}
	waitUntil(t, func() bool {
		d, _ := env.Describe(ctx, "r-1/race-children/slow")
		return d != nil && d.Status == "cancelled"
	})
}

// The same code runs ephemerally: futures are goroutines and timers.
func TestFuturesEphemeral(t *testing.T) {
	child := docket.NewGraph("double", docket.Input[Part]())
	docket.Register1(child, func(_ context.Context, p Part) (Built, error) { return Built{N: 2 * p.N}, nil }, docket.Name("double"))
	g := docket.NewGraph("eph", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Outcome, error) {
		var out Outcome
		block := docket.Go(ctx, "block", func(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() })
		timer := docket.NewTimer(ctx, 10*time.Millisecond)
		i, _, err := docket.AwaitFirst(ctx, docket.Go(ctx, "x", func(ctx context.Context) (time.Time, error) {
			_, err := block.Get(ctx)
			return time.Time{}, err
		}), timer)
		out.Log = append(out.Log, fmt.Sprint("first ", i, err))
		b, err := docket.CallAsync[Built](ctx, child, "", Part{N: 21}).Get(ctx)
		out.Log = append(out.Log, fmt.Sprint(b.N, err))
		sel := docket.NewSelector()
		docket.AddSignal(sel, "s", func(string) {})
		out.Log = append(out.Log, fmt.Sprint(errors.Is(sel.Select(ctx), docket.ErrNoInbox)))
		return out, nil // block is still running: the step's end cancels it
	}, docket.Name("eph"))
	before := runtime.NumGoroutine()
	out, err := docket.Execute[Outcome](context.Background(), g, &Order{})
	if err != nil || strings.Join(out.Log, ",") != "first 1 <nil>,42 <nil>,true" {
		t.Fatalf("%v %v", out, err)
	}
	if n := runtime.NumGoroutine(); n > before+2 {
		t.Fatalf("goroutines left: %d > %d", n, before)
	}
}
