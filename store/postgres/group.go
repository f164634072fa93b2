package postgres

import (
	"cmp"
	"context"
	"fmt"
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
	id  string
	key int64 // the execution's advisory lock key
	fn  func(store.Tx) error
	// absent: the caller expects the execution not to exist (Create), so
	// a lone request speculates on that (see known).
	absent bool

	// Set by the group that runs the request.
	err      error
	panicked bool
	pval     any
	retry    bool // fn did not run because the group failed first
}

// Update implements store.Store. It runs fn in one transaction that holds
// the advisory lock of execution id, possibly together with the Updates of
// other executions (see the package documentation); if fn returns an error
// or panics, nothing it wrote is kept (and a panic goes on in the caller).
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	return s.update(ctx, &request{id: id, fn: fn})
}

// Create implements store.Creator: it is Update, except that when it runs
// alone it sends everything in one round trip, guarded on the execution
// not existing (see known); if it does, the Update runs the ordinary way.
func (s *Store) Create(ctx context.Context, id string, fn func(store.Tx) error) error {
	return s.update(ctx, &request{id: id, fn: fn, absent: true})
}

func (s *Store) update(ctx context.Context, r *request) error {
	id := r.id
	if err := s.check(ctx); err != nil {
		return err
	}
	if bad, ok := badValue([]any{id}); ok {
		return fmt.Errorf("postgres %s: update of execution: %s: %w", s.name, bad, ErrBadValue)
	}
	r.key = s.lockKey(id)
	if !s.updates.do(ctx, r) {
		return s.ctxErr(ctx, "update", ctx.Err())
	}
	if r.panicked {
		panic(r.pval)
	}
	return r.err
}

// pickGroup takes the leader's Update and up to maxGroup-1 queued Updates
// of other executions; Updates of an execution already taken wait for the
// next group.
func pickGroup(maxGroup int) func(first *call[*request], queue []*call[*request]) (batch, rest []*call[*request]) {
	return func(first *call[*request], queue []*call[*request]) (batch, rest []*call[*request]) {
		batch = []*call[*request]{first}
		seen := map[string]bool{first.req.id: true}
		for _, q := range queue {
			if len(batch) < maxGroup && !seen[q.req.id] {
				seen[q.req.id] = true
				batch = append(batch, q)
			} else {
				rest = append(rest, q)
			}
		}
		return batch, rest
	}
}

// runUpdates runs a group and returns the Updates to queue again.
func (s *Store) runUpdates(batch []*call[*request]) (again []*call[*request]) {
	members := make([]*request, len(batch))
	ctxs := make([]context.Context, len(batch))
	for i, c := range batch {
		members[i], ctxs[i] = c.req, c.ctx
	}
	if len(members) > 1 {
		s.grouped.Add(int64(len(members)))
	}
	s.runGroup(members, ctxs)
	for _, c := range batch[1:] {
		if c.req.retry {
			c.req.retry, c.req.err = false, nil
			again = append(again, c)
		}
	}
	return again
}

// sharedContext returns the context of work done for several callers: it
// ends when the store closes or when every caller's context has ended.
func (s *Store) sharedContext(ctxs []context.Context) (context.Context, func()) {
	if len(ctxs) == 1 {
		return ctxs[0], func() {}
	}
	ctx, cancel := context.WithCancel(s.stop)
	for _, c := range ctxs {
		if c.Done() == nil { // never ends (the engine's commits): neither do all of them
			return ctx, cancel
		}
	}
	var left atomic.Int32
	left.Store(int32(len(ctxs)))
	stops := make([]func() bool, len(ctxs))
	for i, c := range ctxs {
		stops[i] = context.AfterFunc(c, func() {
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
func (s *Store) runGroup(members []*request, ctxs []context.Context) {
	ctx, done := s.sharedContext(ctxs)
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
	defer c.Release()
	if ks := s.known.takeAll(members); ks != nil && s.speculate(ctx, c.Conn(), members, ctxs, ks) {
		return
	}
	g := &group{s: s, ctx: ctx, conn: c.Conn(), multi: len(members) > 1,
		queue: make([]stmt, 0, 8*len(members))}
	committed := false
	defer func() {
		if !committed {
			g.rollback()
		}
	}()
	txs, err := g.begin(members)
	if err != nil {
		fail(err)
		return
	}
	var notices []notice
	ran := 0
	for i, m := range members {
		if g.err != nil {
			m.retry = i > 0 // not run: it may go in another group
			m.err = g.err
			continue
		}
		if err := ctxs[i].Err(); err != nil {
			m.err = s.ctxErr(ctxs[i], "update", err)
			continue
		}
		t := txs[i]
		t.mark = len(g.queue)
		err := runFn(m, t)
		if err == nil && !m.panicked {
			// fn went on after a refused write, or after the transaction failed.
			err = cmp.Or(t.bad, g.err)
		}
		if err == nil && !m.panicked {
			err = t.touch()
		}
		if err != nil || m.panicked {
			m.err = err
			t.undo()
			continue
		}
		ran++
		notices = append(notices, t.notice())
	}
	if g.err == nil && ran > 0 {
		// What this process will most likely update next is kept, for its
		// next Update to speculate on.
		var keep []*tx
		for i, m := range members {
			if m.err == nil && !m.panicked && !m.retry && s.leasedHere(txs[i].tasks) {
				keep = append(keep, txs[i])
			}
		}
		if xid, nf, err := g.commit(notices, keep); err == nil {
			committed = true
			for _, t := range keep {
				s.keep(t, xid)
			}
			for i, m := range members {
				if m.err == nil && !m.panicked && !m.retry {
					s.committed(txs[i])
				}
			}
			s.tellLocal(nf)
		}
	}
	for _, m := range members {
		if m.err == nil && !m.panicked && !m.retry {
			m.err = g.err // nil once committed
		}
	}
}

// runFn runs fn for m, recording in m a panic to re-raise in its caller.
func runFn(m *request, t *tx) (err error) {
	m.panicked = true
	defer func() {
		if m.panicked {
			m.pval = recover()
		}
	}()
	err = m.fn(t)
	m.panicked = false
	return err
}
