package docktest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type (
	Account string
	Report  struct {
		Sent []time.Time
	}
)

func monthly() *docket.Graph {
	g := docket.NewGraph("monthly", docket.Input[Account]())
	docket.Register1(g, func(ctx context.Context, a Account) (*Report, error) {
		r := &Report{}
		for range 3 {
			if err := docket.Sleep(ctx, 30*24*time.Hour); err != nil {
				return nil, err
			}
			sent, err := docket.Run(ctx, "send", func(ctx context.Context) (time.Time, error) {
				return docket.Now(ctx), nil
			})
			if err != nil {
				return nil, err
			}
			r.Sent = append(r.Sent, sent)
		}
		return r, nil
	}, docket.Name("emails"))
	return g
}

func TestThirtyDaySleepsOnVirtualTime(t *testing.T) {
	g := monthly()
	env := docktest.New(t, docktest.Options{}, g)
	start := env.Clock.Now()
	began := time.Now()
	h, err := docket.Start[*Report](context.Background(), env.Engine, g, "acct-1", Account("ann"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Result(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Sent) != 3 {
		t.Fatalf("sent %v", r.Sent)
	}
	for i, s := range r.Sent {
		want := start.Add(time.Duration(i+1) * 30 * 24 * time.Hour)
		if !s.Equal(want) {
			t.Errorf("email %d sent at %v, want %v", i, s, want)
		}
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Errorf("90 virtual days took %v of real time", took)
	}
}

func TestManualTime(t *testing.T) {
	g := monthly()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	if _, err := docket.Start[*Report](ctx, env.Engine, g, "acct-2", Account("bob")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		d, err := env.Describe(ctx, "acct-2")
		return err == nil && len(d.Waiting) == 1
	})
	d, _ := env.Describe(ctx, "acct-2")
	if d.Steps[0].Status != "suspended" || d.Status != "running" {
		t.Fatalf("want a suspended step, got %+v", d)
	}
	for i := range 3 {
		// Wait until the step sleeps again, then move time to its wake-up.
		var wake time.Time
		waitFor(t, func() bool {
			d, err := env.Describe(ctx, "acct-2")
			if err != nil || len(d.Waiting) != 1 {
				return false
			}
			wake = d.Steps[0].WakeAt
			return wake.After(env.Clock.Now())
		})
		if want := env.Clock.Now().Add(30 * 24 * time.Hour); !wake.Equal(want) {
			t.Fatalf("sleep %d wakes at %v, want %v", i, wake, want)
		}
		env.Clock.Set(wake)
	}
	r, err := docket.HandleFor[*Report](env.Engine, "acct-2").Result(ctx)
	if err != nil || len(r.Sent) != 3 {
		t.Fatalf("%v %v", r, err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestManualAdvanceNeverMissesAWakeUp advances the clock the moment a step
// is seen suspended, many times, to catch a worker that arms its timer
// from a stale reading of the clock.
func TestManualAdvanceNeverMissesAWakeUp(t *testing.T) {
	g := docket.NewGraph("naps", docket.Input[Account]())
	docket.Register1(g, func(ctx context.Context, a Account) (*Report, error) {
		return &Report{}, docket.Sleep(ctx, time.Hour)
	}, docket.Name("nap"))
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	for i := range 150 {
		id := fmt.Sprintf("nap-%d", i)
		h, err := docket.Start[*Report](ctx, env.Engine, g, id, Account("x"))
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, func() bool { d, err := env.Describe(ctx, id); return err == nil && len(d.Waiting) == 1 })
		env.Clock.Advance(time.Hour)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = h.Result(rctx)
		cancel()
		if err != nil {
			t.Fatalf("iteration %d: %v", i, err)
		}
	}
}
