package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "fired after the deadline moved 1 time(s)") {
		t.Fatalf("got %q", out.String())
	}
}

// On virtual time: the deadline moves later, then earlier, and the timer
// fires exactly at the last one.
func TestMovingTheDeadline(t *testing.T) {
	g := NewGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	start := env.Clock.Now()
	h, err := docket.Start[Fired](ctx, env.Engine, g, "t", Timer{Deadline: start.Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	waitWaiting(t, env, 1)
	if err := env.Signal(ctx, "t", "deadline", start.Add(48*time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitWaiting(t, env, 2)
	env.Clock.Advance(30 * time.Hour) // past the first deadline: nothing fires
	if err := env.Signal(ctx, "t", "deadline", start.Add(36*time.Hour)); err != nil {
		t.Fatal(err)
	}
	waitWaiting(t, env, 3)
	env.Clock.Set(start.Add(36 * time.Hour))
	f, err := h.Result(ctx)
	if err != nil || f.Moves != 2 || !f.At.Equal(start.Add(36*time.Hour)) {
		t.Fatalf("%+v %v", f, err)
	}
}

// waitWaiting waits until the step waits in its n-th ReceiveTimeout.
func waitWaiting(t *testing.T, env *docktest.Env, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := env.Describe(context.Background(), "t")
		j, _ := env.Store().Journal(context.Background(), "t", "wait-for-deadline")
		receives := 0
		for _, e := range j {
			if e.Kind == "receive" {
				receives++
			}
		}
		if err == nil && len(d.Waiting) == 1 && receives == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not waiting in receive %d: %+v", n, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
