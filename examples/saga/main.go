// Saga books a trip — a car, a hotel and a flight — and when one booking
// fails, undoes the ones that were made: Temporal's trip-booking saga, on
// docket.
//
// Each booking is a durable step, and the call to the travel agency is made
// with docket.Run, so a step that re-executes after a crash does not book
// twice. Each step says how to undo itself with docket.Compensate. When the
// execution fails, the engine calls the compensations of the steps that
// completed, one at a time, newest first — cancel the hotel, then the car —
// each with its step's recorded output and under its step's retry policy.
// Compensations are recorded like steps: if the process dies while undoing,
// the next one carries on, and Describe shows each step's compensation as
// pending, compensated or failed.
//
// Here the agency has no seats on the flight. ErrNoSeats is in the steps'
// NonRetryable list, since asking again will not help, so book-flight fails
// after one attempt. It completed nothing, so it has nothing to undo.
//
//	go run ./examples/saga
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

// ErrNoSeats is the agency's answer when a flight is full.
var ErrNoSeats = errors.New("no seats left on the flight")

// Trip is the input of an execution.
type Trip struct{ ID string }

// What the bookings produce: the agency's reference for each.
type (
	CarBooking    struct{ Ref string }
	HotelBooking  struct{ Ref string }
	FlightBooking struct{ Ref string }
)

// Agency is the travel agency. Its ledger lists every booking and
// cancellation it made, in order.
type Agency struct {
	FlightsFull bool

	mu     sync.Mutex
	ledger []string
}

// Book books a kind of thing ("car", "hotel" or "flight") for a trip and
// returns its reference.
func (a *Agency) Book(kind, trip string) (string, error) {
	if kind == "flight" && a.FlightsFull {
		return "", ErrNoSeats
	}
	ref := kind + "-" + trip
	a.record("book " + ref)
	return ref, nil
}

// Cancel cancels a booking.
func (a *Agency) Cancel(ref string) error {
	a.record("cancel " + ref)
	return nil
}

func (a *Agency) record(s string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ledger = append(a.ledger, s)
}

// Ledger returns the bookings and cancellations made so far.
func (a *Agency) Ledger() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.ledger...)
}

// book makes a booking as a journaled side effect.
func book(ctx context.Context, a *Agency, kind string, t *Trip) (string, error) {
	return docket.Run(ctx, "book-"+kind, func(context.Context) (string, error) { return a.Book(kind, t.ID) })
}

// newGraph builds the trip graph. Each booking takes the one before it, so
// they happen in turn: car, hotel, flight.
func newGraph(a *Agency) *docket.Graph {
	g := docket.NewGraph("trip", docket.Input[*Trip](),
		// The default retry policy of every step, and of its compensation.
		docket.Retry(docket.RetryPolicy{MaxAttempts: 3, InitialInterval: 100 * time.Millisecond, NonRetryable: []error{ErrNoSeats}}))

	docket.Register1(g, func(ctx context.Context, t *Trip) (CarBooking, error) {
		ref, err := book(ctx, a, "car", t)
		return CarBooking{ref}, err
	}, docket.Name("book-car"),
		docket.Compensate(func(_ context.Context, c CarBooking) error { return a.Cancel(c.Ref) }))

	docket.Register2(g, func(ctx context.Context, t *Trip, _ CarBooking) (HotelBooking, error) {
		ref, err := book(ctx, a, "hotel", t)
		return HotelBooking{ref}, err
	}, docket.Name("book-hotel"),
		docket.Compensate(func(_ context.Context, h HotelBooking) error { return a.Cancel(h.Ref) }))

	docket.Register2(g, func(ctx context.Context, t *Trip, _ HotelBooking) (FlightBooking, error) {
		ref, err := book(ctx, a, "flight", t)
		return FlightBooking{ref}, err
	}, docket.Name("book-flight"),
		docket.Compensate(func(_ context.Context, f FlightBooking) error { return a.Cancel(f.Ref) }))
	return g
}

// run books trip 42 while the flights are full, then shows what the agency
// did and what the engine recorded.
func run(ctx context.Context, w io.Writer, storeURL string) error {
	a := &Agency{FlightsFull: true}
	g := newGraph(a)
	eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()

	h, err := docket.Start[FlightBooking](ctx, eng, g, "trip-42", &Trip{ID: "42"})
	if err != nil {
		return err
	}
	// Result returns once the compensations have run.
	_, err = h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) {
		return fmt.Errorf("want the trip to fail, got %v", err)
	}
	fmt.Fprintf(w, "trip %s %s: %s\n", xe.ID, xe.Status, xe.Message)

	fmt.Fprintln(w, "agency ledger:")
	for _, line := range a.Ledger() {
		fmt.Fprintln(w, "  "+line)
	}
	d, err := eng.Describe(ctx, h.ID())
	if err != nil {
		return err
	}
	fmt.Fprintln(w, "steps:")
	for _, s := range d.Steps {
		fmt.Fprintf(w, "  %-12s %-7s compensation: %s\n", s.Name, s.Status, or(s.Compensation, "none"))
	}
	return nil
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

func main() {
	dir, err := os.MkdirTemp("", "saga")
	if err != nil {
		log.Fatal(err)
	}
	err = run(context.Background(), os.Stdout, "sqlite:"+filepath.Join(dir, "docket.db"))
	os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
}
