// Timer processes an order and, if the processing runs past a deadline,
// tells someone — without giving up on the order: Temporal's timer sample,
// on docket.
//
// The step starts the processing with docket.Go, which runs it beside the
// step and journals its outcome, and starts a durable timer with
// docket.NewTimer. A docket.Selector then waits for whichever comes first:
//
//   - the processing: the order is done, and the timer is cancelled;
//
//   - the timer: the processing is taking long, so the step sends a
//     notification — a journaled docket.Run, so it is sent once even if the
//     step re-executes — and goes back to waiting for the processing.
//
// Every choice the selector makes is journaled, and the timer's deadline is
// measured from the first time the step made it, so a step resumed after a
// restart neither notifies twice nor gets a fresh deadline.
//
//	go run ./examples/timer
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

// Order is the input: an order, and how long its processing will take in
// this simulation.
type Order struct {
	ID   string
	Work time.Duration
}

// Receipt is the result.
type Receipt struct {
	OrderID        string
	Status         string    // the processor's answer
	Started        time.Time // when the step started the processing
	NotifiedAt     time.Time // when the "taking long" notification went out; zero if it did not
	Finished       time.Time // when the processing ended
	TimerCancelled bool      // the processing won the race and the timer was cancelled
}

// Processing is the service that processes orders.
type Processing interface {
	Process(ctx context.Context, o Order) (string, error)
}

// Processor is a simulated Processing service.
type Processor struct{}

// Process takes the order's Work to process it, or stops when ctx ends.
func (Processor) Process(ctx context.Context, o Order) (string, error) {
	t := time.NewTimer(o.Work)
	defer t.Stop()
	select {
	case <-t.C:
		return "processed", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Notifier stands for an email or chat service; it keeps what it sent.
type Notifier struct {
	mu   sync.Mutex
	sent []string
}

// Send sends one message.
func (n *Notifier) Send(msg string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.sent = append(n.sent, msg)
}

// Sent returns the messages sent so far.
func (n *Notifier) Sent() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.sent...)
}

// NewGraph returns the graph with its one step, "process-order": the
// notifier hears about orders whose processing takes longer than patience.
func NewGraph(p Processing, n *Notifier, patience time.Duration) *docket.Graph {
	g := docket.NewGraph("timer", docket.Input[Order]())
	docket.Register1(g, func(ctx context.Context, o Order) (Receipt, error) {
		r := Receipt{OrderID: o.ID, Started: docket.Now(ctx)}
		work := docket.Go(ctx, "process", func(ctx context.Context) (string, error) { return p.Process(ctx, o) })
		timer := docket.NewTimer(ctx, patience)

		late := false
		var workErr error
		sel := docket.NewSelector()
		docket.AddFuture(sel, work, func(status string, err error) { r.Status, workErr = status, err })
		docket.AddFuture(sel, timer, func(time.Time, error) { late = true })
		if err := sel.Select(ctx); err != nil {
			return r, err
		}
		if late {
			// The timer came first: say so, then keep waiting for the work
			// (the timer's case is used up, so Select now waits for it alone).
			at, err := docket.Run(ctx, "notify-slow", func(ctx context.Context) (time.Time, error) {
				n.Send(fmt.Sprintf("order %s: processing is taking long", o.ID))
				return docket.Now(ctx), nil // the engine's clock; the Run's record keeps it
			})
			if err != nil {
				return r, err
			}
			r.NotifiedAt = at
			if err := sel.Select(ctx); err != nil {
				return r, err
			}
		} else {
			timer.Cancel()
			r.TimerCancelled = true
		}
		if workErr != nil {
			return r, workErr
		}
		r.Finished = docket.Now(ctx)
		return r, nil
	}, docket.Name("process-order"))
	return g
}

func run(ctx context.Context, w io.Writer, dir string) error {
	n := &Notifier{}
	g := NewGraph(Processor{}, n, 300*time.Millisecond)
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "timer.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()
	orders := []Order{{ID: "fast-1", Work: 50 * time.Millisecond}, {ID: "slow-1", Work: 700 * time.Millisecond}}
	var hs []*docket.Handle[Receipt]
	for _, o := range orders { // both at once
		h, err := docket.Start[Receipt](ctx, eng, g, o.ID, o)
		if err != nil {
			return err
		}
		hs = append(hs, h)
	}
	for _, h := range hs {
		r, err := h.Result(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "order %s: %s", r.OrderID, r.Status)
		if r.TimerCancelled {
			fmt.Fprint(w, " before the timer, which was cancelled")
		}
		if !r.NotifiedAt.IsZero() {
			fmt.Fprint(w, " after a notification that it was taking long")
		}
		fmt.Fprintln(w)
	}
	for _, msg := range n.Sent() {
		fmt.Fprintln(w, "notification:", msg)
	}
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "timer")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
