// Pickfirst sends one query to two replicas and uses whichever answers
// first, a "hedged request".
//
// Both lookups produce an *Answer. A type normally needs exactly one
// producer, but producers registered with docket.Race() form a race group:
// docket starts them all, takes the first success and cancels the contexts
// of the others. A replica that fails does not fail the execution while
// another can still answer; only if every producer fails does the step fail,
// with all their errors joined.
//
// The two steps are method values of one type, so docket.Name gives them
// distinct names.
//
//	go run ./examples/pickfirst
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"time"

	"github.com/docket-run/docket"
)

// ErrDown is the error of a replica that is down.
var ErrDown = errors.New("replica is down")

// Query is the input of every execution.
type Query struct{ Key string }

// Answer is what the replicas produce.
type Answer struct {
	Value string
	From  string // the replica that answered
}

// Replica simulates one copy of a key-value store.
type Replica struct {
	Name    string
	Latency time.Duration // how long a lookup takes
	Down    bool          // fail every lookup at once

	// Stopped is what the context said when the last lookup was
	// interrupted: context.Canceled when another replica answered first.
	// Execute returns only after every step it started has returned, so
	// it is safe to read once Execute has returned.
	Stopped error
}

// Lookup is the step.
func (r *Replica) Lookup(ctx context.Context, q *Query) (*Answer, error) {
	if r.Down {
		return nil, fmt.Errorf("%s: %w", r.Name, ErrDown)
	}
	t := time.NewTimer(r.Latency)
	defer t.Stop()
	select {
	case <-t.C:
		return &Answer{Value: strings.ToUpper(q.Key), From: r.Name}, nil
	case <-ctx.Done():
		r.Stopped = ctx.Err()
		return nil, ctx.Err()
	}
}

func newGraph(replicas ...*Replica) *docket.Graph {
	g := docket.NewGraph("lookup", docket.Input[*Query]())
	for _, r := range replicas {
		docket.Register1(g, r.Lookup, docket.Name(r.Name), docket.Race())
	}
	return g
}

// run asks a slow primary and a fast secondary, and prints who answered.
func run(ctx context.Context, w io.Writer) error {
	primary := &Replica{Name: "primary", Latency: time.Second}
	secondary := &Replica{Name: "secondary", Latency: 10 * time.Millisecond}
	g := newGraph(primary, secondary)

	start := time.Now()
	a, err := docket.Execute[*Answer](ctx, g, &Query{Key: "hello"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s answered %q in %v\n", a.From, a.Value, time.Since(start).Round(10*time.Millisecond))
	fmt.Fprintf(w, "primary was stopped: %v\n", primary.Stopped)
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}
