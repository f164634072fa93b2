package docket_test

import (
	"context"
	"errors"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

type Cart []string

// cartGraph collects items by signal until "checkout", answering the query
// "count" meanwhile.
func cartGraph() *docket.Graph {
	g := docket.NewGraph("cart", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (Cart, error) {
		var cart Cart
		docket.HandleQuery(ctx, "count", func() (int, error) { return len(cart), nil })
		docket.HandleQuery(ctx, "items", func() (Cart, error) { return cart, nil })
		for {
			item, err := docket.Receive[string](ctx, "add")
			if err != nil {
				return nil, err
			}
			if item == "checkout" {
				return cart, nil
			}
			cart = append(cart, item)
		}
	}, docket.Name("shop"))
	return g
}

func TestQueryASuspendedStep(t *testing.T) {
	g := cartGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[Cart](ctx, env.Engine, g, "cart-1", &Order{})
	for _, item := range []string{"apple", "pear"} {
		if err := env.Signal(ctx, "cart-1", "add", item); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool {
		n, err := docket.Query[int](ctx, env.Engine, "cart-1", "count")
		return err == nil && n == 2
	})
	before, _ := env.Store().Journal(ctx, "cart-1", "shop")
	items, err := docket.Query[Cart](ctx, env.Engine, "cart-1", "items")
	if err != nil || len(items) != 2 || items[1] != "pear" {
		t.Fatalf("%v %v", items, err)
	}
	after, _ := env.Store().Journal(ctx, "cart-1", "shop")
	if len(before) != len(after) {
		t.Fatalf("a query changed the journal: %d -> %d entries", len(before), len(after))
	}
	if s, err := docket.Query[string](ctx, env.Engine, "cart-1", docket.QueryStatus); err != nil || s != "running" {
		t.Fatalf("status: %v %v", s, err)
	}
	if w, err := docket.Query[[]string](ctx, env.Engine, "cart-1", docket.QueryWaiting); err != nil || len(w) != 1 {
		t.Fatalf("waiting: %v %v", w, err)
	}
	var uq *docket.UnknownQueryError
	if _, err := docket.Query[int](ctx, env.Engine, "cart-1", "nope"); !errors.As(err, &uq) {
		t.Fatalf("unknown query: %v", err)
	}
	var qt *docket.QueryTypeError
	if _, err := docket.Query[string](ctx, env.Engine, "cart-1", "count"); !errors.As(err, &qt) {
		t.Fatalf("wrong type: %v", err)
	}
	if err := env.Signal(ctx, "cart-1", "add", "checkout"); err != nil {
		t.Fatal(err)
	}
	cart, err := h.Result(ctx)
	if err != nil || len(cart) != 2 {
		t.Fatalf("%v %v", cart, err)
	}
	outs, err := docket.Query[map[string]any](ctx, env.Engine, "cart-1", docket.QueryOutputs)
	if err != nil || len(outs["shop"].(Cart)) != 2 {
		t.Fatalf("outputs: %v %v", outs, err)
	}
}
