// Reqrespupdate answers requests sent to a running execution: Temporal's
// request/response-with-update sample, on docket.
//
// The step registers an update handler, "uppercase", and then waits. Each
// docket.Update call runs the handler on the step's goroutine at its wait
// point and returns the answer to the caller, who blocks until then. The
// handler keeps a count of the requests it served; a "stop" signal ends the
// step, which returns that count. Answers are journaled, so asking again
// with the same update ID returns the first answer without running the
// handler twice.
//
//	go run ./examples/reqrespupdate
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/docket-run/docket"
)

// Service is the execution's input; Served its result.
type (
	Service struct{ Name string }
	Served  struct{ Requests int }
)

// NewGraph returns the graph with its one step, "serve".
func NewGraph() *docket.Graph {
	g := docket.NewGraph("reqresp", docket.Input[Service]())
	docket.Register1(g, func(ctx context.Context, s Service) (Served, error) {
		served := 0
		docket.HandleUpdate(ctx, "uppercase", func(_ context.Context, text string) (string, error) {
			served++
			return strings.ToUpper(text), nil
		}, func(text string) error {
			if text == "" {
				return errors.New("nothing to uppercase")
			}
			return nil
		})
		if _, err := docket.Receive[bool](ctx, "stop"); err != nil {
			return Served{}, err
		}
		return Served{Requests: served}, nil
	}, docket.Name("serve"))
	return g
}

func run(ctx context.Context, w io.Writer, dir string) error {
	g := NewGraph()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "reqresp.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()
	h, err := docket.Start[Served](ctx, eng, g, "upper-1", Service{Name: "upper"})
	if err != nil {
		return err
	}
	for _, text := range []string{"hello", "durable", "world"} {
		up, err := docket.Update[string](ctx, eng, h.ID(), "uppercase", text)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s -> %s\n", text, up)
	}
	if _, err := docket.Update[string](ctx, eng, h.ID(), "uppercase", ""); err != nil {
		fmt.Fprintln(w, "refused:", err)
	}
	if err := eng.Signal(ctx, h.ID(), "stop", true); err != nil {
		return err
	}
	s, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "served %d requests\n", s.Requests)
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "reqrespupdate")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
