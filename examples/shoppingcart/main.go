// Shoppingcart keeps a cart that lives as long as the customer shops:
// Temporal's shopping-cart sample, on docket.
//
//   - items are added and removed by signal ("add", "remove");
//
//   - the cart is read by query ("cart"), answered without touching it;
//
//   - checkout is an update ("checkout"): the caller waits for the order
//     total, and a validator refuses to check out an empty cart; the step
//     waits with docket.ReceiveUnless, so the checkout also ends its wait;
//
//   - signals and updates are applied in the order they were sent, so a
//     checkout sent after some changes includes them;
//
//   - the cart is started by the first update or signal if it does not
//     exist yet (UpdateWithStart, SignalWithStart);
//
//   - after many events the step continues as new with the cart as its
//     input, so its history stays short however long the customer shops.
//
//     go run ./examples/shoppingcart
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sort"

	"github.com/docket-run/docket"
)

// Cart is the cart's state, and the input of each run.
type Cart struct {
	Items  map[string]int // item -> quantity
	Events int            // signals handled in this run
}

// Change is an add or remove signal's payload.
type Change struct {
	Item string
	Qty  int
}

// Order is the checkout's answer and the execution's result.
type Order struct {
	Lines []string
	Total int
}

// Prices of the shop's items, in cents.
var Prices = map[string]int{"apple": 50, "pear": 70, "tea": 300}

// EventsPerRun is how many signals a run takes before it continues as new.
const EventsPerRun = 5

// NewGraph returns the cart graph.
func NewGraph() *docket.Graph {
	g := docket.NewGraph("cart", docket.Input[Cart]())
	docket.Register1(g, func(ctx context.Context, c Cart) (Order, error) {
		if c.Items == nil {
			c.Items = map[string]int{}
		}
		c.Events = 0
		var done *Order
		docket.HandleQuery(ctx, "cart", func() (map[string]int, error) { return c.Items, nil })
		docket.HandleUpdate(ctx, "checkout", func(_ context.Context, _ struct{}) (Order, error) {
			o := price(c.Items)
			done = &o
			return o, nil
		}, func(struct{}) error {
			if len(c.Items) == 0 {
				return errors.New("the cart is empty")
			}
			return nil
		})
		for done == nil {
			if c.Events >= EventsPerRun {
				return Order{}, docket.ContinueAsNew(c)
			}
			// Wait for a change, or for the checkout update to end the wait.
			ch, err := docket.ReceiveUnless[Change](ctx, "change", func() bool { return done != nil })
			if errors.Is(err, docket.ErrStopped) {
				break
			}
			if err != nil {
				return Order{}, err
			}
			c.Events++
			c.Items[ch.Item] += ch.Qty
			if c.Items[ch.Item] <= 0 {
				delete(c.Items, ch.Item)
			}
		}
		return *done, nil
	}, docket.Name("shop"))
	return g
}

func price(items map[string]int) Order {
	var o Order
	names := make([]string, 0, len(items))
	for n := range items {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o.Lines = append(o.Lines, fmt.Sprintf("%d x %s", items[n], n))
		o.Total += items[n] * Prices[n]
	}
	return o
}

func run(ctx context.Context, w io.Writer, dir string) error {
	g := NewGraph()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "cart.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()
	const id = "cart-ann"
	changes := []Change{{"apple", 3}, {"tea", 1}, {"pear", 2}, {"apple", -1}, {"pear", 1}, {"tea", 1}, {"pear", -3}}
	for _, c := range changes {
		if _, err := docket.SignalWithStart[Order](ctx, eng, g, id, "change", c, Cart{}); err != nil {
			return err
		}
	}
	o, err := docket.Update[Order](ctx, eng, id, "checkout", struct{}{})
	if err != nil {
		return err
	}
	d, err := eng.Describe(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "order: %v, total %d cents (run %d)\n", o.Lines, o.Total, d.Run)
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "shoppingcart")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
