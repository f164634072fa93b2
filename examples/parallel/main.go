// Parallel fans one request out to five services and combines their answers
// into a page.
//
// The five calls (profile, orders, recommendations, inventory and pricing)
// each need only the *Request, so docket runs them at the same time, and
// buildPage, which takes all five results, runs when the last one arrives.
// The page takes about as long as the slowest call, not as long as all five
// together. Every call honours its context: when the caller gives up, the
// calls stop and Execute returns.
//
//	go run ./examples/parallel
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

// Request is the input of every execution.
type Request struct{ UserID string }

// What the five services return.
type (
	Profile         struct{ Name string }
	Orders          []string
	Recommendations []string
	Inventory       map[string]int // items in stock, by item
	Prices          map[string]int // cents, by item
)

// Page is the combined result.
type Page struct {
	Title  string
	Orders Orders
	Picks  []Pick
}

// Pick is a recommended item that is in stock.
type Pick struct {
	Item  string
	Cents int
}

// Backend simulates the five services: every call takes Latency, unless its
// context ends first.
type Backend struct {
	Latency time.Duration

	mu             sync.Mutex
	inFlight, peak int
}

// Peak reports the most calls that were ever in flight at once.
func (b *Backend) Peak() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.peak
}

// call simulates the network round trip of one service call.
func (b *Backend) call(ctx context.Context) error {
	b.mu.Lock()
	b.inFlight++
	b.peak = max(b.peak, b.inFlight)
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.inFlight--
		b.mu.Unlock()
	}()

	t := time.NewTimer(b.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// reply answers a call with v after the simulated round trip.
func reply[T any](ctx context.Context, b *Backend, v T) (T, error) {
	if err := b.call(ctx); err != nil {
		var zero T
		return zero, err
	}
	return v, nil
}

// The five services. Each is a step: a method value works as well as a function.

func (b *Backend) Profile(ctx context.Context, r *Request) (*Profile, error) {
	return reply(ctx, b, &Profile{Name: "user " + r.UserID})
}

func (b *Backend) Orders(ctx context.Context, _ *Request) (Orders, error) {
	return reply(ctx, b, Orders{"kettle", "teapot"})
}

func (b *Backend) Recommendations(ctx context.Context, _ *Request) (Recommendations, error) {
	return reply(ctx, b, Recommendations{"mug", "cosy", "strainer"})
}

func (b *Backend) Inventory(ctx context.Context, _ *Request) (Inventory, error) {
	return reply(ctx, b, Inventory{"mug": 12, "cosy": 0, "strainer": 3})
}

func (b *Backend) Prices(ctx context.Context, _ *Request) (Prices, error) {
	return reply(ctx, b, Prices{"mug": 900, "cosy": 1500, "strainer": 450})
}

// buildPage combines the five answers. It takes five inputs, so docket runs
// it once all five are available.
func buildPage(_ context.Context, p *Profile, o Orders, r Recommendations, in Inventory, pr Prices) (*Page, error) {
	page := &Page{Title: "Welcome back, " + p.Name, Orders: o}
	for _, item := range r {
		if in[item] > 0 {
			page.Picks = append(page.Picks, Pick{Item: item, Cents: pr[item]})
		}
	}
	return page, nil
}

// newGraph registers the five calls and the step that combines them.
func newGraph(b *Backend) *docket.Graph {
	g := docket.NewGraph("product-page", docket.Input[*Request]())
	docket.Register1(g, b.Profile)
	docket.Register1(g, b.Orders)
	docket.Register1(g, b.Recommendations)
	docket.Register1(g, b.Inventory)
	docket.Register1(g, b.Prices)
	docket.Register5(g, buildPage)
	return g
}

// run builds the page for one user and prints it, with the plan and timing.
func run(ctx context.Context, w io.Writer, b *Backend, userID string) (*Page, error) {
	g := newGraph(b)
	req := &Request{UserID: userID}
	plan, err := docket.PlanFor[*Page](g, req)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	page, err := docket.Execute[*Page](ctx, g, req)
	if err != nil {
		return nil, err
	}
	fmt.Fprint(w, plan)
	fmt.Fprintf(w, "%s\nrecent orders: %v\n", page.Title, page.Orders)
	for _, p := range page.Picks {
		fmt.Fprintf(w, "  %-8s $%d.%02d\n", p.Item, p.Cents/100, p.Cents%100)
	}
	fmt.Fprintf(w, "5 calls of %v each took %v in all (at most %d at once)\n",
		b.Latency, time.Since(start).Round(time.Millisecond), b.Peak())
	return page, nil
}

func main() {
	b := &Backend{Latency: 50 * time.Millisecond}
	if _, err := run(context.Background(), os.Stdout, b, "42"); err != nil {
		log.Fatal(err)
	}
}
