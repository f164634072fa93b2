// Batch processes many orders at once, and fans each order out over its
// lines.
//
// Inside the graph, price turns an *Order into a []Line; docket.Map packs
// every Line on its own, at most two at a time, into a []Parcel in line
// order; invoice takes that []Parcel: a fan-out and a fan-in.
//
// ExecuteBatch runs the graph once per order, at most three orders at a
// time, with the price list shared by every order through docket.With.
// Results come back in order. An order that fails does not stop the
// others: its result is nil and its error is in the *docket.BatchError, at
// the order's index.
//
//	go run ./examples/batch
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

const (
	ordersAtOnce = 3 // executions ExecuteBatch runs at once
	packersEach  = 2 // Pack calls the Map step runs at once, per order
)

// ErrUnknownSKU is the error of an order for something not in the price list.
var ErrUnknownSKU = errors.New("unknown SKU")

// Order is the input of every execution.
type Order struct {
	ID   string
	SKUs []string
}

// PriceList is an input shared by every order: cents, by SKU.
type PriceList map[string]int

// Line is one priced line of an order.
type Line struct {
	SKU   string
	Cents int
}

// Parcel is a packed line.
type Parcel struct {
	Label string
	Cents int
}

// Invoice is the result for one order.
type Invoice struct {
	OrderID    string
	Parcels    []string // labels, in line order
	TotalCents int
}

func price(_ context.Context, o *Order, prices PriceList) ([]Line, error) {
	lines := make([]Line, 0, len(o.SKUs))
	for _, sku := range o.SKUs {
		cents, ok := prices[sku]
		if !ok {
			return nil, fmt.Errorf("order %s: %w %q", o.ID, ErrUnknownSKU, sku)
		}
		lines = append(lines, Line{SKU: sku, Cents: cents})
	}
	return lines, nil
}

// Warehouse packs lines. Packing takes PackTime.
type Warehouse struct {
	PackTime time.Duration
	packing  gauge // Pack calls in progress
}

// Pack is the Map step: docket calls it once per Line.
func (w *Warehouse) Pack(ctx context.Context, l Line) (Parcel, error) {
	w.packing.enter()
	defer w.packing.leave()
	select {
	case <-time.After(w.PackTime):
		return Parcel{Label: "box:" + l.SKU, Cents: l.Cents}, nil
	case <-ctx.Done():
		return Parcel{}, ctx.Err()
	}
}

func invoice(_ context.Context, o *Order, parcels []Parcel) (*Invoice, error) {
	inv := &Invoice{OrderID: o.ID}
	for _, p := range parcels {
		inv.Parcels = append(inv.Parcels, p.Label)
		inv.TotalCents += p.Cents
	}
	return inv, nil
}

// activeOrders is an Observer that counts the executions in progress.
type activeOrders struct {
	docket.BaseObserver
	gauge
}

func (a *activeOrders) ExecutionStarted(context.Context, docket.ExecutionEvent)  { a.enter() }
func (a *activeOrders) ExecutionFinished(context.Context, docket.ExecutionEvent) { a.leave() }

func newGraph(w *Warehouse, obs docket.Observer) *docket.Graph {
	g := docket.NewGraph("orders",
		docket.Input[*Order](), docket.Input[PriceList](), docket.WithObserver(obs))
	docket.Register2(g, price)
	docket.Map(g, w.Pack, docket.Concurrency(packersEach))
	docket.Register2(g, invoice)
	return g
}

// processOrders makes an invoice per order.
func processOrders(ctx context.Context, g *docket.Graph, prices PriceList, orders []*Order) ([]*Invoice, error) {
	return docket.ExecuteBatch[*Invoice](ctx, g, orders,
		docket.Concurrency(ordersAtOnce), docket.With(prices))
}

// run processes a few orders, one of them bad, and prints the outcome.
func run(ctx context.Context, w io.Writer) error {
	prices := PriceList{"tea": 450, "mug": 900, "pot": 2500}
	orders := []*Order{
		{ID: "A1", SKUs: []string{"tea", "mug"}},
		{ID: "A2", SKUs: []string{"pot", "tea", "tea"}},
		{ID: "A3", SKUs: []string{"tea", "spoon"}},
		{ID: "A4", SKUs: []string{"mug"}},
	}
	active := &activeOrders{}
	g := newGraph(&Warehouse{PackTime: 5 * time.Millisecond}, active)

	invoices, err := processOrders(ctx, g, prices, orders)
	var be *docket.BatchError
	if err != nil && !errors.As(err, &be) {
		return err
	}
	for i, inv := range invoices {
		if inv == nil {
			fmt.Fprintf(w, "%s: failed: %v\n", orders[i].ID, be.Errs[i])
			continue
		}
		fmt.Fprintf(w, "%s: %d cents for %s\n", inv.OrderID, inv.TotalCents, strings.Join(inv.Parcels, ", "))
	}
	fmt.Fprintf(w, "at most %d orders at once\n", active.Peak())
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// gauge counts things in progress and remembers the most there ever were.
type gauge struct {
	mu        sync.Mutex
	now, peak int
}

func (g *gauge) enter() {
	g.mu.Lock()
	g.now++
	g.peak = max(g.peak, g.now)
	g.mu.Unlock()
}

func (g *gauge) leave() {
	g.mu.Lock()
	g.now--
	g.mu.Unlock()
}

// Peak reports the most things that were ever in progress at once.
func (g *gauge) Peak() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peak
}
