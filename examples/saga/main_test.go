package main

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sqliteStore(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "docket.db")
}

// The flight fails for good, and the bookings made before it are cancelled,
// newest first, each once; Describe records every compensation.
func TestFailedTripIsUndone(t *testing.T) {
	a := &Agency{FlightsFull: true}
	g := newGraph(a)
	env := docktest.New(t, docktest.Options{Store: sqliteStore(t)}, g)
	ctx := context.Background()

	h, err := docket.Start[FlightBooking](ctx, env.Engine, g, "trip-1", &Trip{ID: "1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || xe.Status != "failed" || !strings.Contains(xe.Message, ErrNoSeats.Error()) {
		t.Fatalf("Result error = %v, want a failed execution because of ErrNoSeats", err)
	}

	want := []string{"book car-1", "book hotel-1", "cancel hotel-1", "cancel car-1"}
	if got := a.Ledger(); !slices.Equal(got, want) {
		t.Errorf("ledger = %q, want %q", got, want)
	}

	d, err := env.Describe(ctx, "trip-1")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != "failed" {
		t.Errorf("execution status %q, want failed", d.Status)
	}
	steps := map[string]docket.StepInfo{}
	for _, s := range d.Steps {
		steps[s.Name] = s
	}
	for _, name := range []string{"book-car", "book-hotel"} {
		s := steps[name]
		if s.Status != "done" || s.Compensation != "compensated" || s.CompensationAttempts != 1 {
			t.Errorf("%s: status %q, compensation %q after %d attempts; want done, compensated after 1",
				name, s.Status, s.Compensation, s.CompensationAttempts)
		}
	}
	// The retry policy allows three attempts, but ErrNoSeats is not retried;
	// and a step that did not complete is not compensated.
	if s := steps["book-flight"]; s.Status != "failed" || s.Attempts != 1 || s.Compensation != "" {
		t.Errorf("book-flight: status %q after %d attempts, compensation %q; want failed after 1, none",
			s.Status, s.Attempts, s.Compensation)
	}
}

// With seats on the flight the trip is booked and nothing is undone.
func TestTripIsBooked(t *testing.T) {
	a := &Agency{}
	g := newGraph(a)
	env := docktest.New(t, docktest.Options{Store: sqliteStore(t)}, g)
	ctx := context.Background()

	h, err := docket.Start[FlightBooking](ctx, env.Engine, g, "trip-2", &Trip{ID: "2"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := h.Result(ctx)
	if err != nil || f.Ref != "flight-2" {
		t.Fatalf("Result = %+v, %v; want flight-2", f, err)
	}
	want := []string{"book car-2", "book hotel-2", "book flight-2"}
	if got := a.Ledger(); !slices.Equal(got, want) {
		t.Errorf("ledger = %q, want %q", got, want)
	}
	d, err := env.Describe(ctx, "trip-2")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range d.Steps {
		if s.Status != "done" || s.Compensation != "" {
			t.Errorf("%s: status %q, compensation %q; want done, none", s.Name, s.Status, s.Compensation)
		}
	}
}

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, sqliteStore(t)); err != nil {
		t.Fatal(err)
	}
	want := `trip trip-42 failed: docket: graph "trip": step "book-flight" failed after 1 attempt: no seats left on the flight
agency ledger:
  book car-42
  book hotel-42
  cancel hotel-42
  cancel car-42
steps:
  book-car     done    compensation: compensated
  book-hotel   done    compensation: compensated
  book-flight  failed  compensation: none
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
