package postgres

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/docket-run/docket/store"
)

// Group commit. On a busy store many goroutines call Update at once, each
// for its own execution, and each Update on its own would cost its own
// round trips and its own commit. Instead, Updates that arrive while others
// are running wait in a queue, and the next free leader takes up to
// maxGroup of them (of distinct executions) into one transaction: one round
// trip locks and reads all their executions, the fns run one after the
// other against what was read, and one more round trip sends all their
// writes and commits. On this kind of machine round trips, not statements,
// are what PostgreSQL and the workers spend their time on, so a group of n
// costs little more than a single Update.
//
// Each Update still succeeds or fails on its own: a fn that returns an
// error (or panics) has its writes dropped, or rolled back to a savepoint
// set before them when some were already sent, and the others commit. Only
// a failure of the transaction itself (the connection lost, the server
// refusing a statement) fails every Update of the group that had run; those
// whose fn had not run yet are queued again. Durability is unchanged: an
// Update returns only after the COMMIT that holds its writes.

// request is one Update waiting to run.
type request struct {
	ctx  context.Context
	id   string
	key  int64 // the execution's advisory lock key
	fn   func(store.Tx) error
	wake chan verdict // one verdict: lead a group, or the outcome

	// Set by the group that runs the request.
	err      error
	panicked bool
	pval     any
	retry    bool // fn did not run because the group failed first
}

// verdict is what a waiting request is told.
type verdict struct {
	lead bool // lead the next group
}

// batcher queues Updates and hands out the leading of groups.
type batcher struct {
	mu         sync.Mutex
	queue      []*request
	leaders    int // groups being led now
	maxLeaders int
	maxGroup   int
	grouped    atomic.Int64 // Updates that ran in a group of more than one, for tests
}

// Update implements store.Store. It runs fn in one transaction that holds
// the advisory lock of execution id, possibly together with the Updates of
// other executions (see the package documentation); if fn returns an error
// or panics, nothing it wrote is kept (and a panic goes on in the caller).
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if bad, ok := badText([]any{id}); ok {
		return fmt.Errorf("postgres %s: update of execution %q: %w", s.name, bad, ErrBadText)
	}
	r := &request{ctx: ctx, id: id, key: s.lockKey(id), fn: fn, wake: make(chan verdict, 1)}
	b := &s.batch
	b.mu.Lock()
	if b.leaders < b.maxLeaders {
		b.leaders++
		b.mu.Unlock()
		return s.lead(r)
	}
	b.queue = append(b.queue, r)
	b.mu.Unlock()
	select {
	case v := <-r.wake:
		return s.outcome(r, v)
	case <-ctx.Done():
		b.mu.Lock()
		if i := slices.Index(b.queue, r); i >= 0 {
			b.queue = slices.Delete(b.queue, i, i+1)
			b.mu.Unlock()
			return s.ctxErr(ctx, "update", ctx.Err())
		}
		b.mu.Unlock()
		return s.outcome(r, <-r.wake) // a group has taken it
	}
}

// outcome leads a group when told to, or returns what the group did.
func (s *Store) outcome(r *request, v verdict) error {
	if v.lead {
		return s.lead(r)
	}
	if r.panicked {
		panic(r.pval)
	}
	return r.err
}

// lead runs a group that starts with r and takes what waits in the queue,
// tells the other members their outcome, and hands the leading on to the
// first request still queued (or gives it up).
func (s *Store) lead(r *request) error {
	b := &s.batch
	b.mu.Lock()
	members := []*request{r}
	seen := map[string]bool{r.id: true}
	kept := b.queue[:0]
	for _, q := range b.queue {
		if len(members) < b.maxGroup && !seen[q.id] {
			seen[q.id] = true
			members = append(members, q)
		} else {
			kept = append(kept, q)
		}
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	b.mu.Unlock()

	if len(members) > 1 {
		b.grouped.Add(int64(len(members)))
	}
	s.runGroup(members)

	var again []*request
	for _, m := range members[1:] {
		if m.retry {
			m.retry, m.err = false, nil
			again = append(again, m)
			continue
		}
		m.wake <- verdict{}
	}
	b.mu.Lock()
	b.queue = append(again, b.queue...)
	if len(b.queue) > 0 {
		next := b.queue[0]
		b.queue = b.queue[1:]
		b.mu.Unlock()
		next.wake <- verdict{lead: true}
	} else {
		b.leaders--
		b.mu.Unlock()
	}
	if r.panicked {
		panic(r.pval)
	}
	return r.err
}

// groupContext is the context of a group's transaction: it ends when the
// store closes or when every member's context has ended.
func (s *Store) groupContext(members []*request) (context.Context, func()) {
	if len(members) == 1 {
		return members[0].ctx, func() {}
	}
	ctx, cancel := context.WithCancel(s.stop)
	var left atomic.Int32
	left.Store(int32(len(members)))
	stops := make([]func() bool, len(members))
	for i, m := range members {
		stops[i] = context.AfterFunc(m.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}

// runGroup runs members in one transaction and records each one's outcome.
func (s *Store) runGroup(members []*request) {
	ctx, done := s.groupContext(members)
	defer done()
	fail := func(err error) {
		for _, m := range members {
			m.err = err
		}
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		fail(s.ctxErr(ctx, "update", err))
		return
	}
	g := &group{s: s, ctx: ctx, conn: c.Conn(), multi: len(members) > 1}
	committed := false
	defer func() {
		if !committed {
			g.rollback()
		}
		c.Release()
	}()
	txs, err := g.begin(members)
	if err != nil {
		fail(err)
		return
	}
	var payloads []string
	ran := 0
	for i, m := range members {
		if g.err != nil {
			m.retry = i > 0 // not run: it may go in another group
			m.err = g.err
			continue
		}
		if err := m.ctx.Err(); err != nil {
			m.err = s.ctxErr(m.ctx, "update", err)
			continue
		}
		t := txs[i]
		t.mark = len(g.queue)
		err, panicked, pval := call(m.fn, t)
		if err == nil && !panicked {
			// fn went on after a refused write, or after the transaction failed.
			err = cmp.Or(t.bad, g.err)
		}
		if err != nil || panicked {
			m.err, m.panicked, m.pval = err, panicked, pval
			t.undo()
			continue
		}
		ran++
		if p := eventPayload(t.id, t.changed, t.ready); p != "" {
			payloads = append(payloads, p)
		}
	}
	if g.err == nil && ran > 0 {
		if err := g.commit(payloads); err == nil {
			committed = true
		}
	}
	for _, m := range members {
		if m.err == nil && !m.panicked && !m.retry {
			m.err = g.err // nil once committed
		}
	}
}

// call runs fn, turning a panic into a value to re-raise in the caller.
func call(fn func(store.Tx) error, t *tx) (err error, panicked bool, pval any) {
	panicked = true
	defer func() {
		if panicked {
			pval = recover()
		}
	}()
	err = fn(t)
	panicked = false
	return err, false, nil
}
