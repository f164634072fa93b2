package docket_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

// basketGraph keeps a basket that updates fill; the signal "checkout" ends it.
func basketGraph() *docket.Graph {
	g := docket.NewGraph("basket", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Cart, error) {
		var cart Cart
		docket.HandleUpdate(ctx, "add", func(_ context.Context, item string) (int, error) {
			if item == "boom" {
				return 0, errors.New("out of stock")
			}
			cart = append(cart, item)
			return len(cart), nil
		}, func(item string) error {
			if item == "" {
				return errors.New("empty item")
			}
			return nil
		})
		docket.HandleQuery(ctx, "items", func() (Cart, error) { return cart, nil })
		if _, err := docket.Receive[bool](ctx, "checkout"); err != nil {
			return nil, err
		}
		return cart, nil
	}, docket.Name("fill"))
	return g
}

func TestUpdates(t *testing.T) {
	g := basketGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, err := docket.Start[Cart](ctx, env.Engine, g, "b-1", &Order{})
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, "b-1"); return d != nil && len(d.Waiting) == 1 })
	for i, item := range []string{"tea", "milk"} {
		n, err := docket.Update[int](ctx, env.Engine, "b-1", "add", item)
		if err != nil || n != i+1 {
			t.Fatalf("update %d: %v %v", i, n, err)
		}
	}
	// The same update ID again: the first answer, not a second apply.
	n1, err := docket.Update[int](ctx, env.Engine, "b-1", "add", "sugar", docket.UpdateID("u-1"))
	if err != nil || n1 != 3 {
		t.Fatalf("%v %v", n1, err)
	}
	n2, err := docket.Update[int](ctx, env.Engine, "b-1", "add", "sugar", docket.UpdateID("u-1"))
	if err != nil || n2 != 3 {
		t.Fatalf("repeated update ID: %v %v", n2, err)
	}
	// A validator's refusal records nothing.
	sigsBefore, _ := env.Store().Signals(ctx, "b-1")
	var rej *docket.UpdateRejectedError
	if _, err := docket.Update[int](ctx, env.Engine, "b-1", "add", ""); !errors.As(err, &rej) {
		t.Fatalf("validator: %v", err)
	}
	sigsAfter, _ := env.Store().Signals(ctx, "b-1")
	if len(sigsAfter) != len(sigsBefore) {
		t.Fatal("a rejected update was recorded")
	}
	var ue *docket.UpdateError
	if _, err := docket.Update[int](ctx, env.Engine, "b-1", "add", "boom"); !errors.As(err, &ue) || !strings.Contains(ue.Message, "out of stock") {
		t.Fatalf("handler error: %v", err)
	}
	var unk *docket.UnknownUpdateError
	if _, err := docket.Update[int](ctx, env.Engine, "b-1", "remove", "x"); !errors.As(err, &unk) {
		t.Fatalf("unknown update: %v", err)
	}
	items, err := docket.Query[Cart](ctx, env.Engine, "b-1", "items")
	if err != nil || fmt.Sprint(items) != "[tea milk sugar]" {
		t.Fatalf("query after updates: %v %v", items, err)
	}
	if err := env.Signal(ctx, "b-1", "checkout", true); err != nil {
		t.Fatal(err)
	}
	cart, err := h.Result(ctx)
	if err != nil || fmt.Sprint(cart) != "[tea milk sugar]" {
		t.Fatalf("%v %v", cart, err)
	}
	var fe *docket.FinishedError
	if _, err := docket.Update[int](ctx, env.Engine, "b-1", "add", "late"); !errors.As(err, &fe) {
		t.Fatalf("update after the end: %v", err)
	}
}

func TestUpdateWithStart(t *testing.T) {
	g := basketGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	for i, item := range []string{"a", "b"} {
		n, err := docket.UpdateWithStart[int, Cart](ctx, env.Engine, g, "b-2", "add", item, []any{&Order{}})
		if err != nil || n != i+1 {
			t.Fatalf("%d: %v %v", i, n, err)
		}
	}
}
