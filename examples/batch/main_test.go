package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var prices = PriceList{"tea": 450, "mug": 900, "pot": 2500}

func TestBatch(t *testing.T) {
	const bad = 5
	var orders []*Order
	for i := range 8 {
		o := &Order{ID: fmt.Sprint("order-", i), SKUs: []string{"tea", "mug", "pot", "tea"}[:1+i%4]}
		if i == bad {
			o.SKUs = append(o.SKUs, "spoon")
		}
		orders = append(orders, o)
	}
	wh := &Warehouse{PackTime: 5 * time.Millisecond}
	active := &activeOrders{}
	invoices, err := processOrders(context.Background(), newGraph(wh, active), prices, orders)

	// One error per order, at the order's index.
	var be *docket.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v, want a *docket.BatchError", err)
	}
	if len(be.Errs) != len(orders) {
		t.Fatalf("BatchError has %d errors, want one per order (%d)", len(be.Errs), len(orders))
	}
	for i, err := range be.Errs {
		if i != bad && err != nil {
			t.Errorf("order %d: unexpected error %v", i, err)
		}
	}
	var se *docket.StepError
	if !errors.As(be.Errs[bad], &se) || se.Step != "price" || !errors.Is(se, ErrUnknownSKU) {
		t.Errorf("order %d: err = %v, want step price to fail with ErrUnknownSKU", bad, be.Errs[bad])
	}

	// Results in order, with a nil for the failed order.
	if len(invoices) != len(orders) {
		t.Fatalf("%d invoices, want %d", len(invoices), len(orders))
	}
	for i, inv := range invoices {
		if i == bad {
			if inv != nil {
				t.Errorf("invoice %d = %+v for a failed order, want nil", i, inv)
			}
			continue
		}
		want := 0
		for _, sku := range orders[i].SKUs {
			want += prices[sku]
		}
		if inv == nil || inv.OrderID != orders[i].ID || inv.TotalCents != want || len(inv.Parcels) != len(orders[i].SKUs) {
			t.Errorf("invoice %d = %+v, want order %s, %d parcels, %d cents", i, inv, orders[i].ID, len(orders[i].SKUs), want)
		}
	}

	// Concurrency(ordersAtOnce) bounds the executions; the orders did overlap.
	if got := active.Peak(); got > ordersAtOnce || got < 2 {
		t.Errorf("at most %d orders ran at once, want 2..%d", got, ordersAtOnce)
	}
	if got := wh.packing.Peak(); got > ordersAtOnce*packersEach {
		t.Errorf("%d Pack calls ran at once, want at most %d", got, ordersAtOnce*packersEach)
	}
}

// Map keeps its results in input order and runs at most packersEach items at once.
func TestMapFanOutFanIn(t *testing.T) {
	skus := []string{"pot", "tea", "mug", "tea", "pot", "mug", "mug", "tea", "pot"}
	wh := &Warehouse{PackTime: 5 * time.Millisecond}
	inv, err := docket.Execute[*Invoice](context.Background(), newGraph(wh, docket.BaseObserver{}),
		&Order{ID: "big", SKUs: skus}, prices)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, sku := range skus {
		want = append(want, "box:"+sku)
	}
	if !slices.Equal(inv.Parcels, want) {
		t.Errorf("parcels = %v, want %v", inv.Parcels, want)
	}
	if inv.TotalCents != 3*450+3*900+3*2500 {
		t.Errorf("total = %d cents, want %d", inv.TotalCents, 3*450+3*900+3*2500)
	}
	if got := wh.packing.Peak(); got > packersEach || got < 2 {
		t.Errorf("%d Pack calls ran at once, want 2..%d", got, packersEach)
	}
}

func TestEmptyOrder(t *testing.T) {
	inv, err := docket.Execute[*Invoice](context.Background(), newGraph(&Warehouse{}, docket.BaseObserver{}),
		&Order{ID: "empty"}, prices)
	if err != nil {
		t.Fatal(err)
	}
	if inv.OrderID != "empty" || inv.TotalCents != 0 || len(inv.Parcels) != 0 {
		t.Errorf("invoice = %+v, want an empty invoice", inv)
	}
}

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"A1: 1350 cents for box:tea, box:mug\n",
		"A2: 3400 cents for box:pot, box:tea, box:tea\n",
		`A3: failed: docket: graph "orders": step "price" failed after 1 attempt: order A3: unknown SKU "spoon"` + "\n",
		"A4: 900 cents for box:mug\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nwant it to contain %q", out.String(), want)
		}
	}
}
