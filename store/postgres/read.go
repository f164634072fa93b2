package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reads that arrive together — the loads of tasks just claimed, callers
// reading the executions that just finished — are sent together: one
// round trip for all of them, on one connection, through a coalescer as
// Updates are. A batch is not a transaction: each statement sees what is
// committed when it runs, as it would alone. Only a read that goes alone
// (the store is not busy) may ask for more: Snapshot, a consistent read,
// then reads what its Update needs too, in one read-only REPEATABLE READ
// transaction, and keeps it with the row versions of that same moment
// (see known).

// sqlReadOnly begins a batch of reads.
const sqlReadOnly = `BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY`

// maxReads is how many reads one round trip carries at most.
const maxReads = 64

// readRequest is one read: its statements and how to read their results.
type readRequest struct {
	op string
	// consistent: when it goes alone, the read runs in a read-only
	// REPEATABLE READ transaction of its own.
	consistent bool
	// queue queues the statements and read reads their results; alone
	// says that the read goes in a round trip of its own.
	queue func(b *pgx.Batch, alone bool)
	read  func(br pgx.BatchResults, alone bool) error
	err   error
}

// readBatched runs r, most likely together with others.
func (s *Store) readBatched(ctx context.Context, r *readRequest) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if !s.reads.do(ctx, r) {
		return s.ctxErr(ctx, r.op, ctx.Err())
	}
	return r.err
}

func pickReads(first *call[*readRequest], queue []*call[*readRequest]) (batch, rest []*call[*readRequest]) {
	n := min(len(queue), maxReads-1)
	batch = append([]*call[*readRequest]{first}, queue[:n]...)
	return batch, queue[n:]
}

// runReads sends a batch of reads in one round trip. A statement that
// fails spoils the rest of the round trip (the server skips what follows
// it), so then each read is sent again alone, and fails or not on its own.
func (s *Store) runReads(batch []*call[*readRequest]) []*call[*readRequest] {
	ctxs := make([]context.Context, len(batch))
	for i, c := range batch {
		ctxs[i] = c.ctx
	}
	if len(batch) > 1 {
		s.sharedReads.Add(int64(len(batch)))
	}
	ctx, done := s.sharedContext(ctxs)
	defer done()
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		for _, m := range batch {
			m.req.err = s.ctxErr(ctx, m.req.op, err)
		}
		return nil
	}
	defer c.Release()
	send := func(reqs []*call[*readRequest]) error {
		alone := len(reqs) == 1
		inTx := alone && reqs[0].req.consistent
		b := &pgx.Batch{}
		if inTx {
			b.Queue(sqlReadOnly)
		}
		for _, m := range reqs {
			m.req.queue(b, alone)
		}
		if inTx {
			b.Queue("COMMIT")
		}
		br := c.Conn().SendBatch(ctx, b)
		var err error
		if inTx {
			_, err = br.Exec()
		}
		for _, m := range reqs {
			if err != nil {
				break
			}
			if err = m.req.read(br, alone); err != nil {
				m.req.err = s.ctxErr(ctx, m.req.op, err)
			}
		}
		if err == nil && inTx {
			_, err = br.Exec()
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil && inTx {
			// The transaction is left aborted (the server skipped the
			// COMMIT): end it, or drop the connection.
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, rerr := c.Conn().Exec(rctx, "ROLLBACK"); rerr != nil {
				_ = c.Conn().Close(rctx)
			}
			cancel()
		}
		return err
	}
	if err := send(batch); err == nil || len(batch) == 1 {
		if err != nil && batch[0].req.err == nil {
			batch[0].req.err = s.ctxErr(ctx, batch[0].req.op, err)
		}
		return nil
	}
	for _, m := range batch {
		m.req.err = nil
		if err := send([]*call[*readRequest]{m}); err != nil && m.req.err == nil {
			m.req.err = s.ctxErr(ctx, m.req.op, err)
		}
	}
	return nil
}
