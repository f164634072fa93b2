package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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
	// 2 apples (100) + 2 tea (600); pears went to 0. Seven changes: the
	// first run took five, the second the rest.
	if want := "order: [2 x apple 2 x tea], total 700 cents (run 2)\n"; out.String() != want {
		t.Fatalf("got %q, want %q", out.String(), want)
	}
}

func TestCartQueryCheckoutAndValidation(t *testing.T) {
	g := NewGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	// Checkout of an empty cart is refused before anything is recorded,
	// and the update starts the cart.
	_, err := docket.UpdateWithStart[Order, Order](ctx, env.Engine, g, "c", "checkout", struct{}{}, []any{Cart{}})
	var rej *docket.UpdateRejectedError
	if !errors.As(err, &rej) {
		t.Fatalf("empty checkout: %v", err)
	}
	for i := range 12 {
		if err := env.Signal(ctx, "c", "change", Change{Item: "apple", Qty: 1}); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	// The query sees all twelve, across two continue-as-new boundaries.
	deadline := time.Now().Add(10 * time.Second)
	for {
		items, err := docket.Query[map[string]int](ctx, env.Engine, "c", "cart")
		if err == nil && items["apple"] == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cart never reached 12 apples: %v %v", items, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	o, err := docket.Update[Order](ctx, env.Engine, "c", "checkout", struct{}{})
	if err != nil || o.Total != 600 || fmt.Sprint(o.Lines) != "[12 x apple]" {
		t.Fatalf("%+v %v", o, err)
	}
	res, err := docket.HandleFor[Order](env.Engine, "c").Result(ctx)
	if err != nil || res.Total != 600 {
		t.Fatalf("result %+v %v", res, err)
	}
	d, _ := env.Describe(ctx, "c")
	if d.Run != 3 || !strings.Contains(d.Status, "completed") {
		t.Fatalf("run %d, status %s; want run 3 completed", d.Run, d.Status)
	}
}
