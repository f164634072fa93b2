package postgres

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// A coalescer runs calls that arrive together as one batch. At most
// maxLeaders batches run at a time, each led by the goroutine of one of
// its calls; a call that finds every leader busy waits in a queue, and
// when a batch ends its leader hands the leading on to the first call
// still queued, which takes what has queued up meanwhile. So a lone call
// runs at once, alone, and under load each batch gathers the calls that
// arrived while the one before it ran. Updates (group commit) and reads
// both go through one.
type coalescer[T any] struct {
	mu         sync.Mutex
	queue      []*call[T]
	leaders    int // batches running now
	maxLeaders int

	// pick chooses a batch led by first from the queue and returns the
	// rest, which stays queued.
	pick func(first *call[T], queue []*call[T]) (batch, rest []*call[T])
	// run runs a batch, recording each call's outcome in its request, and
	// returns the calls (never the first) to queue again.
	run func(batch []*call[T]) (again []*call[T])

	counts batchCounts
}

// batchCounts are a coalescer's running totals (see Stats).
type batchCounts struct {
	calls   atomic.Int64 // calls done (not those queued again)
	batches atomic.Int64
	waited  atomic.Int64 // nanoseconds from each done call's arrival to the start of its batch
	ran     atomic.Int64 // nanoseconds the batches ran
}

// add counts a batch that ran for ran, and its done calls, which waited
// for it waited in all.
func (b *batchCounts) add(done int, waited, ran time.Duration) {
	b.batches.Add(1)
	b.calls.Add(int64(done))
	b.waited.Add(int64(waited))
	b.ran.Add(int64(ran))
}

// call is one caller's request in a coalescer.
type call[T any] struct {
	ctx  context.Context
	req  T
	wake chan bool // true: lead a batch; false: done
	at   time.Time // arrival
}

// do runs req in some batch and returns true, or returns false if ctx
// ended while it was still queued (then req did not run).
func (c *coalescer[T]) do(ctx context.Context, req T) bool {
	cl := &call[T]{ctx: ctx, req: req, wake: make(chan bool, 1), at: time.Now()}
	c.mu.Lock()
	if c.leaders < c.maxLeaders {
		c.leaders++
		c.mu.Unlock()
		c.lead(cl)
		return true
	}
	c.queue = append(c.queue, cl)
	c.mu.Unlock()
	select {
	case lead := <-cl.wake:
		if lead {
			c.lead(cl)
		}
		return true
	case <-ctx.Done():
		c.mu.Lock()
		if i := slices.Index(c.queue, cl); i >= 0 {
			c.queue = slices.Delete(c.queue, i, i+1)
			c.mu.Unlock()
			return false
		}
		c.mu.Unlock()
		if <-cl.wake { // a batch has taken it, or it is to lead one
			c.lead(cl)
		}
		return true
	}
}

// queued returns how many calls wait in the queue now.
func (c *coalescer[T]) queued() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// lead runs a batch led by first, tells the others it is done, and hands
// the leading on.
func (c *coalescer[T]) lead(first *call[T]) {
	c.mu.Lock()
	batch, rest := c.pick(first, c.queue)
	c.queue = rest
	c.mu.Unlock()
	start := time.Now()
	again := c.run(batch)
	ran := time.Since(start)
	waited := start.Sub(first.at)
	for _, m := range batch[1:] {
		if !slices.Contains(again, m) {
			m.wake <- false
			waited += start.Sub(m.at)
		}
	}
	c.counts.add(len(batch)-len(again), waited, ran)
	c.mu.Lock()
	c.queue = append(again, c.queue...)
	if len(c.queue) > 0 {
		next := c.queue[0]
		c.queue = c.queue[1:]
		c.mu.Unlock()
		next.wake <- true
		return
	}
	c.leaders--
	c.mu.Unlock()
}
