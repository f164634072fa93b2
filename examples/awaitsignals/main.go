// Awaitsignals waits for three signals that may arrive in any order, then
// proceeds; if they stall, it gives up: Temporal's await-signals sample, on
// docket.
//
// The step asks for signals "field1", "field2" and "field3" one after the
// other with docket.ReceiveTimeout. Signals wait in the execution's durable
// inbox, so it does not matter in which order they are sent: a signal that
// arrives before the step asks for it is kept until it does. While nothing
// has arrived the step is suspended — no goroutine, nothing in memory — and
// a signal wakes it. Each wait has a deadline measured from when the step
// first asked, kept in the journal, so a restart does not extend it.
//
//	go run ./examples/awaitsignals
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/docket-run/docket"
)

// Form is the input: which form to fill.
type Form struct{ ID string }

// Filled is the result: the three fields, in field order.
type Filled struct{ Fields [3]string }

// Fields are the signal names the step waits for.
var Fields = [3]string{"field1", "field2", "field3"}

// NewGraph returns the graph: one step that collects the three fields, each
// within patience of when it started waiting for it.
func NewGraph(patience time.Duration) *docket.Graph {
	g := docket.NewGraph("awaitsignals", docket.Input[Form]())
	docket.Register1(g, func(ctx context.Context, f Form) (Filled, error) {
		var out Filled
		for i, name := range Fields {
			v, err := docket.ReceiveTimeout[string](ctx, name, patience)
			if errors.Is(err, docket.ErrReceiveTimeout) {
				return out, docket.NonRetryable(fmt.Errorf("form %s: %s did not arrive within %s", f.ID, name, patience))
			}
			if err != nil {
				return out, err
			}
			docket.Logger(ctx).Info("field arrived", "field", name)
			out.Fields[i] = v
		}
		return out, nil
	}, docket.Name("collect-fields"))
	return g
}

// run starts the execution on a SQLite file in dir, sends the signals in
// the order given, and prints the result.
func run(ctx context.Context, w io.Writer, dir string, order []int, patience time.Duration) error {
	g := NewGraph(patience)
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "awaitsignals.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()
	h, err := docket.Start[Filled](ctx, eng, g, "form-1", Form{ID: "form-1"})
	if err != nil {
		return err
	}
	for _, i := range order {
		fmt.Fprintf(w, "sending %s\n", Fields[i])
		if err := eng.Signal(ctx, h.ID(), Fields[i], fmt.Sprintf("value %d", i+1)); err != nil {
			return err
		}
	}
	out, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "filled: %q\n", out.Fields)
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "awaitsignals")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir, []int{2, 0, 1}, 10*time.Second); err != nil {
		log.Fatal(err)
	}
}
