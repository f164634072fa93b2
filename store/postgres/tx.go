package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// An Update is one transaction on one pooled connection:
//
//  1. One round trip sends BEGIN, takes the execution's advisory lock
//     (pg_advisory_xact_lock, held until the transaction ends), reads the
//     execution record with its signal counter (the highest signal Seq it
//     gave out), and reads and row-locks the execution's tasks (FOR UPDATE).
//  2. fn runs. Under the advisory lock nothing but this transaction writes
//     the execution, its steps, journal or signals, and under the row locks
//     no Claim, ExtendLeases or Release changes its tasks; so the records
//     read in step 1 stay exact, and the Tx answers Execution and Tasks from
//     them, and decides ErrNotFound and ErrExists on its own. Writes are
//     queued rather than sent.
//  3. Queued writes go to the server in the same round trip as the next
//     statement that needs an answer (a read of steps, journal or signals,
//     or AddTask, which needs its new ID), pipelined ahead of it.
//  4. One last round trip sends what is queued, pg_notify for the change,
//     and COMMIT.
//
// An Update that reads the execution and its tasks and writes anything but
// a new task therefore costs two round trips.

// Update implements store.Store. It runs fn in one transaction that holds
// the advisory lock of execution id; if fn returns an error or panics, the
// transaction is rolled back (and a panic goes on).
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.ctxErr(ctx, "update", err)
	}
	t := &tx{s: s, ctx: ctx, conn: c.Conn(), id: id}
	committed := false
	defer func() {
		if !committed {
			t.rollback()
		}
		c.Release()
	}()
	if err := t.begin(); err != nil {
		return err
	}
	if err := fn(t); err != nil {
		return err
	}
	if t.err != nil {
		return t.err // fn went on after a failed write
	}
	if err := t.commit(); err != nil {
		return err
	}
	committed = true
	return nil
}

// stmt is a queued write.
type stmt struct {
	op   string
	sql  string
	args []any
}

// tx is the store.Tx of one Update.
type tx struct {
	s    *Store
	ctx  context.Context
	conn *pgx.Conn
	id   string

	exec    *store.Execution // the execution as it now is; nil while it does not exist
	tasks   []store.Task     // its tasks, by ID, as they now are
	lastSig int64            // the highest signal Seq given out (executions.signal_seq)
	// sigs holds the Seqs of the inbox as it now is, once Signals has read
	// it in this Update (nil before): PutSignal then needs no round trip to
	// tell whether the signal exists.
	sigs map[int64]bool

	queue   []stmt // writes not sent yet
	changed bool   // the execution, a step, journal entry or signal was written
	ready   bool   // a task was added or put without an owner
	err     error  // the first failure on the server; the transaction is lost
}

const (
	sqlLock        = `SELECT pg_advisory_xact_lock($1)`
	sqlTxExecution = `SELECT ` + execCols + `, signal_seq FROM executions WHERE id = $1`
	sqlTxTasks     = `SELECT ` + taskCols + ` FROM tasks WHERE exec = $1 ORDER BY id FOR UPDATE`
)

// begin runs step 1 in one round trip.
func (t *tx) begin() error {
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLock, t.s.lockKey(t.id))
	b.Queue(sqlTxExecution, t.id)
	b.Queue(sqlTxTasks, t.id)
	return t.send("begin", b, func(br pgx.BatchResults) error {
		if _, err := br.Exec(); err != nil {
			return err
		}
		if _, err := br.Exec(); err != nil {
			return err
		}
		rows, _ := br.Query()
		execs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (store.Execution, error) {
			return scanExecAnd(r, &t.lastSig)
		})
		if err != nil {
			return err
		}
		if len(execs) > 0 {
			t.exec = &execs[0]
		}
		rows, _ = br.Query()
		t.tasks, err = pgx.CollectRows(rows, scanTask)
		return err
	})
}

// send sends the queued writes and then b in one round trip; read reads
// the results of b. Any failure loses the transaction: it is kept in t.err
// and returned by every later call.
func (t *tx) send(op string, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	if t.err != nil {
		return t.err
	}
	queued := t.queue
	t.queue = nil
	if len(queued) > 0 {
		all := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(queued)+len(b.QueuedQueries))}
		for _, q := range queued {
			all.Queue(q.sql, q.args...)
		}
		all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
		b = all
	}
	br := t.conn.SendBatch(t.ctx, b)
	failed := ""
	err := func() error {
		for _, q := range queued {
			if _, err := br.Exec(); err != nil {
				failed = q.op
				return err
			}
		}
		failed = op
		return read(br)
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.err = t.s.ctxErr(t.ctx, fmt.Sprintf("%s of execution %q", failed, t.id), err)
	}
	return t.err
}

// write queues a statement.
func (t *tx) write(op, sql string, args ...any) error {
	if t.err != nil {
		return t.err
	}
	t.queue = append(t.queue, stmt{op: op, sql: sql, args: args})
	return nil
}

// commit runs step 4.
func (t *tx) commit() error {
	b := &pgx.Batch{}
	if payload := eventPayload(t.id, t.changed, t.ready); payload != "" {
		b.Queue(`SELECT pg_notify($1, $2)`, t.s.channel, payload)
	}
	b.Queue("COMMIT")
	return t.send("commit", b, func(br pgx.BatchResults) error {
		for range len(b.QueuedQueries) - 1 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		tag, err := br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = errors.New("the server rolled the transaction back")
		}
		return err
	})
}

// rollback ends a transaction that is not committed. A connection that
// cannot roll back is closed, so that the pool drops it.
func (t *tx) rollback() {
	if t.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(t.ctx), 5*time.Second)
	defer cancel()
	if _, err := t.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = t.conn.Close(ctx)
	}
}

func (t *tx) notFound(what string) error {
	return fmt.Errorf("postgres %s: %s %q: %w", t.s.name, what, t.id, store.ErrNotFound)
}

// needExec fails with store.ErrNotFound while the execution does not exist.
func (t *tx) needExec(op string) error {
	if t.err != nil {
		return t.err
	}
	if t.exec == nil {
		return t.notFound(op + ": execution")
	}
	return nil
}

// Execution implements store.Tx from the record read at the start (and
// changed by this Update).
func (t *tx) Execution() (*store.Execution, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.exec == nil {
		return nil, t.notFound("execution")
	}
	return copyExec(t.exec), nil
}

// CreateExecution implements store.Tx; the insert is queued.
func (t *tx) CreateExecution(e *store.Execution) error {
	if t.err != nil {
		return t.err
	}
	if t.exec != nil {
		return fmt.Errorf("postgres %s: execution %q: %w", t.s.name, t.id, store.ErrExists)
	}
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	t.exec, t.changed = normExec(t.id, e), true
	return t.write("create execution", `INSERT INTO executions (`+execCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)`, args...)
}

// PutExecution implements store.Tx; the update is queued.
func (t *tx) PutExecution(e *store.Execution) error {
	if err := t.needExec("put execution"); err != nil {
		return err
	}
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	// Waiters care about the end, a cancel request and a new run, not
	// about every completed step.
	if old := t.exec; old.Status != e.Status || old.CancelRequested != e.CancelRequested || old.Run != e.Run {
		t.changed = true
	}
	t.exec = normExec(t.id, e)
	return t.write("put execution", `UPDATE executions SET run = $2, graph = $3, target = $4, codec = $5,
		inputs = $6, status = $7, result_type = $8, result_data = $9, error = $10, cancel_requested = $11,
		deadline = $12, created_at = $13, updated_at = $14, finished_at = $15, seq = $16, parent = $17,
		parent_step = $18, runs = $19 WHERE id = $1`, args...)
}

// query reads rows in a round trip that also sends the queued writes.
func query[T any](t *tx, op string, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	var out []T
	b := &pgx.Batch{}
	b.Queue(sql, args...)
	err := t.send(op, b, func(br pgx.BatchResults) error {
		rows, _ := br.Query()
		var err error
		out, err = pgx.CollectRows(rows, scan)
		return err
	})
	return out, err
}

// Steps implements store.Tx with a round trip.
func (t *tx) Steps() ([]store.Step, error) {
	return query(t, "steps", scanStep, sqlSteps, t.id)
}

// PutStep implements store.Tx; the upsert is queued.
func (t *tx) PutStep(s *store.Step) error {
	if err := t.needExec("put step"); err != nil {
		return err
	}
	return t.write("put step", sqlPutStep, stepArgs(t.id, s)...)
}

const sqlPutStep = `INSERT INTO steps (` + stepCols + `)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
	ON CONFLICT (exec, name) DO UPDATE SET status = excluded.status, attempt = excluded.attempt,
		output_type = excluded.output_type, output_data = excluded.output_data, error = excluded.error,
		wait = excluded.wait, wake_at = excluded.wake_at, signal = excluded.signal,
		heartbeat = excluded.heartbeat, seq = excluded.seq, ready_at = excluded.ready_at,
		started_at = excluded.started_at, finished_at = excluded.finished_at, comp = excluded.comp,
		comp_attempt = excluded.comp_attempt, comp_error = excluded.comp_error, worker = excluded.worker`

// DeleteStep implements store.Tx; the delete is queued.
func (t *tx) DeleteStep(name string) error {
	if t.exec == nil {
		return t.err // nothing to delete
	}
	return t.write("delete step", `WITH j AS (DELETE FROM journal WHERE exec = $1 AND step = $2)
		DELETE FROM steps WHERE exec = $1 AND name = $2`, t.id, name)
}

// Journal implements store.Tx with a round trip.
func (t *tx) Journal(step string) ([]store.JournalEntry, error) {
	return query(t, "journal", scanEntry, sqlJournal, t.id, step)
}

// PutJournal implements store.Tx; the upsert is queued.
func (t *tx) PutJournal(e *store.JournalEntry) error {
	if err := t.needExec("put journal"); err != nil {
		return err
	}
	return t.write("put journal", `INSERT INTO journal (`+journalCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
		ON CONFLICT (exec, step, seq) DO UPDATE SET kind = excluded.kind, name = excluded.name,
			data = excluded.data, error = excluded.error, done = excluded.done, wake_at = excluded.wake_at`,
		t.id, e.Step, e.Seq, e.Kind, e.Name, e.Data, clean(e.Error), e.Done, e.WakeAt)
}

// TruncateJournal implements store.Tx; the delete is queued.
func (t *tx) TruncateJournal(step string, seq int) error {
	if t.exec == nil {
		return t.err
	}
	return t.write("truncate journal", `DELETE FROM journal WHERE exec = $1 AND step = $2 AND seq >= $3`, t.id, step, seq)
}

// Signals implements store.Tx with a round trip. It remembers which Seqs
// the inbox holds, for PutSignal.
func (t *tx) Signals() ([]store.Signal, error) {
	sigs, err := query(t, "signals", scanSignal, sqlSignals, t.id)
	if err != nil {
		return nil, err
	}
	t.sigs = make(map[int64]bool, len(sigs))
	for _, s := range sigs {
		t.sigs[s.Seq] = true
	}
	return sigs, nil
}

// AddSignal implements store.Tx; the insert is queued, numbered after the
// highest Seq that the execution gave out, and the execution's counter is
// moved on in the same statement.
func (t *tx) AddSignal(s *store.Signal) error {
	if err := t.needExec("add signal"); err != nil {
		return err
	}
	seq := t.lastSig + 1
	if err := t.write("add signal", `WITH s AS (
			INSERT INTO signals (`+signalCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
		)
		UPDATE executions SET signal_seq = $2 WHERE id = $1`,
		signalArgs(t.id, seq, s)...); err != nil {
		return err
	}
	t.lastSig, t.changed = seq, true
	if t.sigs != nil {
		t.sigs[seq] = true
	}
	s.Exec, s.Seq = t.id, seq
	return nil
}

const sqlPutSignal = `UPDATE signals SET name = $3, payload_type = $4, payload_data = $5, sent_at = $6,
	consumed_by = $7 WHERE exec = $1 AND seq = $2`

// PutSignal implements store.Tx. The update is queued when this Update
// knows that the signal exists (it read the inbox with Signals); otherwise
// it is sent in a round trip, which tells.
func (t *tx) PutSignal(s *store.Signal) error {
	if t.err != nil {
		return t.err
	}
	notFound := fmt.Errorf("postgres %s: signal %d of execution %q: %w", t.s.name, s.Seq, t.id, store.ErrNotFound)
	if t.exec == nil || s.Seq < 1 || s.Seq > t.lastSig || (t.sigs != nil && !t.sigs[s.Seq]) {
		return notFound
	}
	if t.sigs != nil {
		t.changed = true
		return t.write("put signal", sqlPutSignal, signalArgs(t.id, s.Seq, s)...)
	}
	var n int64
	b := &pgx.Batch{}
	b.Queue(sqlPutSignal, signalArgs(t.id, s.Seq, s)...)
	err := t.send("put signal", b, func(br pgx.BatchResults) error {
		tag, err := br.Exec()
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return err
	}
	if n == 0 {
		return notFound
	}
	t.changed = true
	return nil
}

// DeleteSignal implements store.Tx; the delete is queued.
func (t *tx) DeleteSignal(seq int64) error {
	if t.exec == nil {
		return t.err // nothing to delete
	}
	if t.sigs != nil {
		if !t.sigs[seq] {
			return t.err
		}
		delete(t.sigs, seq)
	}
	return t.write("delete signal", `DELETE FROM signals WHERE exec = $1 AND seq = $2`, t.id, seq)
}

// Tasks implements store.Tx from the tasks read (and locked) at the start.
func (t *tx) Tasks() ([]store.Task, error) {
	if t.err != nil {
		return nil, t.err
	}
	return slices.Clone(t.tasks), nil
}

// AddTask implements store.Tx with a round trip, for the new ID.
func (t *tx) AddTask(task *store.Task) error {
	if err := t.needExec("add task"); err != nil {
		return err
	}
	var id int64
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO tasks (exec, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
		t.id, task.Step, string(task.Kind), task.ReadyAt, task.Owner, task.LeaseUntil, task.Attempt, task.Claims,
		task.Queue, task.Worker)
	err := t.send("add task", b, func(br pgx.BatchResults) error { return br.QueryRow().Scan(&id) })
	if err != nil {
		return err
	}
	task.ID, task.Exec = id, t.id
	i, _ := slices.BinarySearchFunc(t.tasks, id, byID)
	t.tasks = slices.Insert(t.tasks, i, normTask(*task))
	t.ready = t.ready || claimable(task)
	return nil
}

func byID(task store.Task, id int64) int { return cmp.Compare(task.ID, id) }

// index returns the position of task id in t.tasks, or -1.
func (t *tx) index(id int64) int {
	i, ok := slices.BinarySearchFunc(t.tasks, id, byID)
	if !ok {
		return -1
	}
	return i
}

// PutTask implements store.Tx; the update is queued.
func (t *tx) PutTask(task *store.Task) error {
	if t.err != nil {
		return t.err
	}
	i := t.index(task.ID)
	if i < 0 {
		return fmt.Errorf("postgres %s: task %d of execution %q: %w", t.s.name, task.ID, t.id, store.ErrNotFound)
	}
	put := normTask(*task)
	put.Exec = t.id
	t.tasks[i] = put
	t.ready = t.ready || claimable(task)
	return t.write("put task", `UPDATE tasks SET step = $2, kind = $3, ready_at = $4, owner = $5, lease_until = $6,
		attempt = $7, claims = $8, queue = $9, worker = $10 WHERE id = $1`,
		task.ID, task.Step, string(task.Kind), task.ReadyAt, task.Owner, task.LeaseUntil, task.Attempt, task.Claims,
		task.Queue, task.Worker)
}

// DeleteTask implements store.Tx; the delete is queued.
func (t *tx) DeleteTask(id int64) error {
	if t.err != nil {
		return t.err
	}
	i := t.index(id)
	if i < 0 {
		return nil // missing, or another execution's
	}
	t.tasks = slices.Delete(t.tasks, i, i+1)
	return t.write("delete task", `DELETE FROM tasks WHERE id = $1`, id)
}

// claimable reports whether a task written without an owner is one that
// idle workers should hear about: not one parked until a signal wakes it.
func claimable(task *store.Task) bool {
	return task.Owner == "" && task.ReadyAt.Year() < 9999
}
