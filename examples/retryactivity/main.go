// Retryactivity processes a long batch in one step that reports its
// progress with heartbeats, so that when an attempt fails partway the retry
// carries on where it got to instead of starting over: Temporal's "retry
// activity" sample, on docket.
//
// After each item the step calls docket.Heartbeat(ctx, Progress{Next: i+1}).
// That does two things:
//
//   - It tells docket the step is alive. The step has a HeartbeatTimeout,
//     so an attempt that goes that long without a heartbeat (hung on a call
//     that never returns) has its context cancelled and fails with a
//     *docket.TimeoutError, long before any overall timeout would notice.
//   - It records the progress. When an attempt fails, docket stores its last
//     heartbeat details with the step, and the next attempt reads them with
//     docket.HeartbeatDetails and skips the items already done.
//
// The processor here fails the way real ones do: the first attempt loses
// its connection at item 4 and returns an error; the second hangs at item 8
// until the heartbeat timeout stops it; the third finishes the batch. The
// faults strike before an item is processed, so every item is processed
// exactly once. In general, an item is processed again only if an attempt
// ends after processing it but before its heartbeat is recorded: items
// whose heartbeat was recorded are never redone, and the item in flight is
// processed at least once.
//
// When the process running the step dies instead of the attempt failing,
// the next attempt gets the details docket had stored before the death; it
// stores them periodically (at most once a tenth of the lease), not on
// every call, so the retry may redo the last few items.
//
// Why not a docket.Run per item? That would record every item, which is
// right for a few expensive side effects; a heartbeat is cheap enough for
// thousands of items.
//
//	go run ./examples/retryactivity
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

// ErrConnReset is the processor's transient failure.
var ErrConnReset = errors.New("connection reset by peer")

// Batch is the input of an execution: Items items, numbered from 0.
type Batch struct{ Items int }

// Progress is the step's heartbeat details: the next item to process.
type Progress struct{ Next int }

// Report is the step's result.
type Report struct{ Items, Attempts int }

// Fault makes attempt Attempt fail at item Item, before processing it:
// with ErrConnReset, or by hanging until its context is cancelled.
type Fault struct {
	Attempt, Item int
	Hang          bool
}

// Processor processes items and records which attempt processed each.
type Processor struct {
	Faults   []Fault
	ItemTime time.Duration // how long an item takes
	w        io.Writer

	mu        sync.Mutex
	processed map[int][]int // attempts that processed each item
	starts    []int         // the item each attempt started at
}

// NewProcessor returns a processor that reports to w.
func NewProcessor(w io.Writer, itemTime time.Duration, faults ...Fault) *Processor {
	return &Processor{Faults: faults, ItemTime: itemTime, w: w, processed: map[int][]int{}}
}

// ProcessBatch is the step.
func (p *Processor) ProcessBatch(ctx context.Context, b *Batch) (*Report, error) {
	attempt := docket.Attempt(ctx)
	next := 0
	if prog, ok := docket.HeartbeatDetails[Progress](ctx); ok {
		next = prog.Next // an earlier attempt got this far
	}
	p.started(attempt, next)
	for i := next; i < b.Items; i++ {
		if err := p.process(ctx, attempt, i); err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		docket.Heartbeat(ctx, Progress{Next: i + 1})
	}
	return &Report{Items: b.Items, Attempts: attempt}, nil
}

func (p *Processor) started(attempt, item int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.starts = append(p.starts, item)
	fmt.Fprintf(p.w, "attempt %d starts at item %d\n", attempt, item)
}

// process processes one item, unless a fault strikes first.
func (p *Processor) process(ctx context.Context, attempt, item int) error {
	for _, f := range p.Faults {
		if f.Attempt != attempt || f.Item != item {
			continue
		}
		if !f.Hang {
			fmt.Fprintf(p.w, "attempt %d fails at item %d: %v\n", attempt, item, ErrConnReset)
			return ErrConnReset
		}
		fmt.Fprintf(p.w, "attempt %d hangs at item %d\n", attempt, item)
		<-ctx.Done() // a call that never returns, until the heartbeat timeout
		return ctx.Err()
	}
	t := time.NewTimer(p.ItemTime) // the work
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.processed[item] = append(p.processed[item], attempt)
	return nil
}

// Starts returns the item each attempt started at, by attempt.
func (p *Processor) Starts() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.starts...)
}

// ProcessedBy returns the attempts that processed item, in order.
func (p *Processor) ProcessedBy(item int) []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]int(nil), p.processed[item]...)
}

// newGraph builds the graph. An attempt that goes heartbeatTimeout without
// a heartbeat fails; up to five attempts are made.
func newGraph(p *Processor, heartbeatTimeout time.Duration, opts ...docket.GraphOption) *docket.Graph {
	g := docket.NewGraph("batch", append(opts, docket.Input[*Batch]())...)
	docket.Register1(g, p.ProcessBatch, docket.Name("process-batch"),
		docket.HeartbeatTimeout(heartbeatTimeout),
		docket.Retry(docket.RetryPolicy{MaxAttempts: 5, InitialInterval: 100 * time.Millisecond}))
	return g
}

// run processes a batch of twelve items with a processor that fails twice.
func run(ctx context.Context, w io.Writer, storeURL string) error {
	p := NewProcessor(w, 20*time.Millisecond, Fault{Attempt: 1, Item: 4}, Fault{Attempt: 2, Item: 8, Hang: true})
	g := newGraph(p, 2*time.Second)
	eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}})
	if err != nil {
		return err
	}
	defer eng.Close()

	h, err := docket.Start[*Report](ctx, eng, g, "batch-1", &Batch{Items: 12})
	if err != nil {
		return err
	}
	r, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "processed %d items in %d attempts\n", r.Items, r.Attempts)
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "retryactivity")
	if err != nil {
		log.Fatal(err)
	}
	err = run(context.Background(), os.Stdout, "sqlite:"+filepath.Join(dir, "docket.db"))
	os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
}
