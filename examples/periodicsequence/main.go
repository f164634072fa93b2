// Periodicsequence waits for a service to become ready by polling it at
// intervals, in a child execution that keeps its history short:
// Temporal's periodic-sequence sample, on docket.
//
// The parent graph's step calls the child graph with docket.Call and
// suspends until the child ends. The child polls: each poll is a journaled
// docket.Run, and between polls it sleeps with docket.Sleep (suspended,
// holding no goroutine). A poll loop can run for a long time, and every
// poll and sleep adds to the step's journal, so after a few polls the child
// returns docket.ContinueAsNew with its state — how many polls it has made
// and when it started — as the input of its next run, which starts with an
// empty journal under the same execution ID. The parent does not see the
// runs: it waits for the child execution and gets the result of its last
// run. eng.Describe shows the child's run number.
//
//	go run ./examples/periodicsequence
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

// Job is the parent's input: which service to wait for.
type Job struct{ Service string }

// Report is the parent's result.
type Report struct {
	Service string
	Ready   Ready
}

// Polling is the child's input, and the state it carries from one run to
// the next.
type Polling struct {
	Service string
	Polls   int       // polls made so far, over all runs
	Since   time.Time // when the first poll was made
}

// Ready is the child's result.
type Ready struct {
	Polls  int           // how many polls it took
	Waited time.Duration // from the first poll to the one that found it ready
}

// Service is the simulated service: it reports ready from poll ReadyAt on,
// and keeps the number of each poll it was asked.
type Service struct {
	ReadyAt int

	mu    sync.Mutex
	polls []int
}

// Check answers poll number n.
func (s *Service) Check(_ context.Context, n int) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls = append(s.polls, n)
	return n >= s.ReadyAt, nil
}

// Polls returns the numbers of the polls the service answered, in order.
func (s *Service) Polls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.polls...)
}

// NewGraphs returns the parent graph and the polling child graph: the child
// polls svc every interval and continues as new after pollsPerRun polls.
func NewGraphs(svc *Service, interval time.Duration, pollsPerRun int) (parent, child *docket.Graph) {
	child = docket.NewGraph("poller", docket.Input[Polling]())
	docket.Register1(child, func(ctx context.Context, p Polling) (Ready, error) {
		for range pollsPerRun {
			if p.Polls > 0 { // the first poll of all goes at once
				if err := docket.Sleep(ctx, interval); err != nil {
					return Ready{}, err
				}
			}
			n := p.Polls + 1
			ready, err := docket.Run(ctx, fmt.Sprintf("poll-%d", n), func(ctx context.Context) (bool, error) {
				return svc.Check(ctx, n)
			})
			if err != nil {
				return Ready{}, err
			}
			now := docket.Now(ctx)
			if p.Polls = n; n == 1 {
				p.Since = now
			}
			if ready {
				return Ready{Polls: n, Waited: now.Sub(p.Since)}, nil
			}
		}
		// Enough for one run's history: start afresh with the state so far.
		return Ready{}, docket.ContinueAsNew(p)
	}, docket.Name("poll"))

	parent = docket.NewGraph("sequence", docket.Input[Job]())
	docket.Register1(parent, func(ctx context.Context, j Job) (Report, error) {
		r, err := docket.Call[Ready](ctx, child, "poll", Polling{Service: j.Service})
		if err != nil {
			return Report{}, err
		}
		return Report{Service: j.Service, Ready: r}, nil
	}, docket.Name("wait-until-ready"))
	return parent, child
}

func run(ctx context.Context, w io.Writer, dir string) error {
	svc := &Service{ReadyAt: 7}
	parent, child := NewGraphs(svc, 20*time.Millisecond, 3)
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "periodic.db"),
		Graphs: []*docket.Graph{parent, child}})
	if err != nil {
		return err
	}
	defer eng.Close()
	h, err := docket.Start[Report](ctx, eng, parent, "deploy-1", Job{Service: "inventory"})
	if err != nil {
		return err
	}
	r, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s is ready after %d polls\n", r.Service, r.Ready.Polls)
	d, err := eng.Describe(ctx, "deploy-1/wait-until-ready/poll")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "child %s: %s in run %d\n", d.ID, d.Status, d.Run)
	fmt.Fprintf(w, "polls the service answered: %v\n", svc.Polls())
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "periodicsequence")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
