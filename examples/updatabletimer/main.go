// Updatabletimer sleeps until a deadline that signals can move while it
// waits: Temporal's updatable-timer sample, on docket.
//
// The timer is built from two durable calls: docket.Now and
// docket.ReceiveTimeout. The step waits for a "deadline" signal for as long
// as is left until the current deadline; a signal with a new deadline moves
// it (earlier or later) and the wait starts over; when the wait times out,
// the deadline has come. While it waits the step is suspended and holds no
// goroutine; the deadline survives restarts because every call is
// journaled.
//
//	go run ./examples/updatabletimer
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

// Timer is the input: the first deadline.
type Timer struct{ Deadline time.Time }

// Fired is the result: when the timer fired and how often it was moved.
type Fired struct {
	At    time.Time
	Moves int
}

// NewGraph returns the graph with its one step, "wait-for-deadline".
func NewGraph() *docket.Graph {
	g := docket.NewGraph("updatabletimer", docket.Input[Timer]())
	docket.Register1(g, func(ctx context.Context, t Timer) (Fired, error) {
		deadline, moves := t.Deadline, 0
		for {
			left := deadline.Sub(docket.Now(ctx))
			if left <= 0 {
				return Fired{At: docket.Now(ctx), Moves: moves}, nil
			}
			next, err := docket.ReceiveTimeout[time.Time](ctx, "deadline", left)
			if errors.Is(err, docket.ErrReceiveTimeout) {
				return Fired{At: docket.Now(ctx), Moves: moves}, nil
			}
			if err != nil {
				return Fired{}, err
			}
			deadline, moves = next, moves+1
			docket.Logger(ctx).Info("deadline moved", "to", deadline)
		}
	}, docket.Name("wait-for-deadline"))
	return g
}

func run(ctx context.Context, w io.Writer, dir string) error {
	g := NewGraph()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "timer.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()
	start := time.Now()
	h, err := docket.Start[Fired](ctx, eng, g, "timer-1", Timer{Deadline: start.Add(time.Hour)})
	if err != nil {
		return err
	}
	// An hour is too long to wait: bring the deadline forward.
	if err := eng.Signal(ctx, h.ID(), "deadline", start.Add(300*time.Millisecond)); err != nil {
		return err
	}
	f, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "fired after the deadline moved %d time(s), %s after the start\n", f.Moves, f.At.Sub(start).Round(100*time.Millisecond))
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "updatabletimer")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
