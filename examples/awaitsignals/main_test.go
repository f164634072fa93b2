package main

import (
	"bytes"
	"context"
	"errors"
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
	if err := run(context.Background(), &out, t.TempDir(), []int{2, 0, 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	want := "sending field3\nsending field1\nsending field2\nfilled: [\"value 1\" \"value 2\" \"value 3\"]\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestAnyOrderWhileSuspended(t *testing.T) {
	g := NewGraph(time.Hour)
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, err := docket.Start[Filled](ctx, env.Engine, g, "f", Form{ID: "f"})
	if err != nil {
		t.Fatal(err)
	}
	// field2 arrives first and waits in the inbox while the step waits for field1.
	send := func(name, v string) {
		if err := env.Signal(ctx, "f", name, v); err != nil {
			t.Fatal(err)
		}
	}
	send("field2", "b")
	waitSuspended(t, env, "signal field1")
	send("field1", "a")
	waitSuspended(t, env, "signal field3")
	send("field3", "c")
	out, err := h.Result(ctx)
	if err != nil || out.Fields != [3]string{"a", "b", "c"} {
		t.Fatalf("%v %v", out, err)
	}
}

func TestStalledSignalsTimeOut(t *testing.T) {
	g := NewGraph(time.Hour)
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[Filled](ctx, env.Engine, g, "f", Form{ID: "f"})
	if err := env.Signal(ctx, "f", "field1", "a"); err != nil {
		t.Fatal(err)
	}
	waitSuspended(t, env, "signal field2")
	env.Clock.Advance(59 * time.Minute)
	if err := env.Signal(ctx, "f", "field2", "b"); err != nil { // just in time
		t.Fatal(err)
	}
	waitSuspended(t, env, "signal field3")
	env.Clock.Advance(time.Hour) // field3 never comes
	_, err := h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || !strings.Contains(xe.Message, "field3 did not arrive within 1h0m0s") {
		t.Fatalf("got %v", err)
	}
}

// waitSuspended waits until the collecting step waits for what.
func waitSuspended(t *testing.T, env *docktest.Env, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d, err := env.Describe(context.Background(), "f")
		if err == nil && len(d.Waiting) == 1 && strings.Contains(d.Waiting[0], what) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the step is not waiting for %s: %+v %v", what, d, err)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
