package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/docket-run/docket/store"
)

// zeroMicros is the zero time.Time in microseconds since the epoch.
var zeroMicros = time.Time{}.UnixMicro()

// micros encodes a time for the database.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros decodes a time from the database, in UTC.
func fromMicros(v int64) time.Time {
	if v == zeroMicros {
		return time.Time{}
	}
	return time.UnixMicro(v).UTC()
}

func boolInt(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// valueArgs encodes an optional value as a (type, data) pair of columns.
func valueArgs(v *store.Value) (any, any) {
	if v == nil {
		return nil, nil
	}
	data := v.Data
	if data == nil {
		data = []byte{}
	}
	return v.Type, data
}

func valueOf(typ sql.NullString, data []byte) *store.Value {
	if !typ.Valid {
		return nil
	}
	return &store.Value{Type: typ.String, Data: data}
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

const execCols = `id, run, graph, target, codec, inputs, status, result_type, result_data, error,
	cancel_requested, deadline, created_at, updated_at, finished_at, seq, parent, parent_step, runs`

func execArgs(id string, e *store.Execution) ([]any, error) {
	inputs, err := json.Marshal(e.Inputs)
	if err != nil {
		return nil, fmt.Errorf("encoding inputs: %w", err)
	}
	runs, err := encodeRuns(e.Runs)
	if err != nil {
		return nil, err
	}
	rt, rd := valueArgs(e.Result)
	return []any{id, e.Run, e.Graph, e.Target, e.Codec, string(inputs), string(e.Status), rt, rd, e.Error,
		boolInt(e.CancelRequested), micros(e.Deadline), micros(e.CreatedAt), micros(e.UpdatedAt),
		micros(e.FinishedAt), e.Seq, e.Parent, e.ParentStep, runs}, nil
}

// encodeRuns encodes an execution's earlier runs as JSON (null for none),
// with their times in UTC to the microsecond, as the other times are kept.
func encodeRuns(runs []store.RunRecord) (string, error) {
	if runs != nil {
		runs = append([]store.RunRecord(nil), runs...)
		for i := range runs {
			runs[i].StartedAt = runs[i].StartedAt.Truncate(time.Microsecond).UTC()
			runs[i].EndedAt = runs[i].EndedAt.Truncate(time.Microsecond).UTC()
		}
	}
	b, err := json.Marshal(runs)
	if err != nil {
		return "", fmt.Errorf("encoding runs: %w", err)
	}
	return string(b), nil
}

// decodeRuns decodes what encodeRuns made.
func decodeRuns(id, data string) ([]store.RunRecord, error) {
	var runs []store.RunRecord
	if err := json.Unmarshal([]byte(data), &runs); err != nil {
		return nil, fmt.Errorf("decoding runs of %s: %w", id, err)
	}
	for i := range runs {
		runs[i].StartedAt, runs[i].EndedAt = utc(runs[i].StartedAt), utc(runs[i].EndedAt)
	}
	return runs, nil
}

// utc returns a decoded time in UTC; the zero time stays the zero time.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func scanExec(row scanner, extra ...any) (*store.Execution, error) {
	var (
		e                          store.Execution
		inputs, status, runs       string
		rt                         sql.NullString
		rd                         []byte
		cancel                     int64
		deadline, created, updated int64
		finished                   int64
	)
	dest := append([]any{&e.ID, &e.Run, &e.Graph, &e.Target, &e.Codec, &inputs, &status, &rt, &rd, &e.Error,
		&cancel, &deadline, &created, &updated, &finished, &e.Seq, &e.Parent, &e.ParentStep, &runs}, extra...)
	if err := row.Scan(dest...); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(inputs), &e.Inputs); err != nil {
		return nil, fmt.Errorf("decoding inputs of %s: %w", e.ID, err)
	}
	var err error
	if e.Runs, err = decodeRuns(e.ID, runs); err != nil {
		return nil, err
	}
	e.Status, e.Result, e.CancelRequested = store.Status(status), valueOf(rt, rd), cancel != 0
	e.Deadline, e.CreatedAt, e.UpdatedAt, e.FinishedAt = fromMicros(deadline), fromMicros(created), fromMicros(updated), fromMicros(finished)
	return &e, nil
}

const stepCols = `exec, name, status, attempt, output_type, output_data, error, wait, wake_at, heartbeat,
	seq, ready_at, started_at, finished_at, comp, comp_attempt, comp_error, signal, worker`

func scanStep(row scanner) (store.Step, error) {
	var (
		s                              store.Step
		status, comp                   string
		ot                             sql.NullString
		od                             []byte
		wake, ready, started, finished int64
	)
	err := row.Scan(&s.Exec, &s.Name, &status, &s.Attempt, &ot, &od, &s.Error, &s.Wait, &wake, &s.Heartbeat,
		&s.Seq, &ready, &started, &finished, &comp, &s.CompAttempt, &s.CompError, &s.Signal, &s.Worker)
	s.Status, s.Comp, s.Output = store.StepStatus(status), store.CompStatus(comp), valueOf(ot, od)
	s.WakeAt, s.ReadyAt, s.StartedAt, s.FinishedAt = fromMicros(wake), fromMicros(ready), fromMicros(started), fromMicros(finished)
	return s, err
}

const journalCols = `exec, step, seq, kind, name, data, error, done, wake_at`

func scanEntry(row scanner) (store.JournalEntry, error) {
	var (
		e    store.JournalEntry
		done int64
		wake int64
	)
	err := row.Scan(&e.Exec, &e.Step, &e.Seq, &e.Kind, &e.Name, &e.Data, &e.Error, &done, &wake)
	e.Done, e.WakeAt = done != 0, fromMicros(wake)
	return e, err
}

const taskCols = `id, exec, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker`

func scanTask(row scanner) (store.Task, error) {
	var (
		t            store.Task
		kind         string
		ready, until int64
	)
	err := row.Scan(&t.ID, &t.Exec, &t.Step, &kind, &ready, &t.Owner, &until, &t.Attempt, &t.Claims, &t.Queue, &t.Worker)
	t.Kind, t.ReadyAt, t.LeaseUntil = store.TaskKind(kind), fromMicros(ready), fromMicros(until)
	return t, err
}

// queryer is a *sql.DB or *sql.Tx.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// collect runs a query and scans every row with scan.
func collect[T any](ctx context.Context, q queryer, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// Update implements store.Store. It runs fn in an immediate transaction on
// the writer connection, so Updates (of any execution) run one at a time. If
// fn returns an error or panics, the transaction is rolled back.
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap("begin", err)
	}
	done := false
	defer func() {
		if !done {
			_ = sqlTx.Rollback()
		}
	}()
	t := &tx{ctx: ctx, s: s, tx: sqlTx, id: id}
	err = fn(t)
	done = true
	if err != nil {
		_ = sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		if ctx.Err() != nil {
			return s.wrap("commit", ctx.Err())
		}
		return s.wrap("commit", err)
	}
	return nil
}

// tx is the store.Tx of one Update.
type tx struct {
	ctx context.Context
	s   *Store
	tx  *sql.Tx
	id  string
}

// exec runs a statement and returns the number of rows it changed.
func (t *tx) exec(op, query string, args ...any) (int64, error) {
	res, err := t.tx.ExecContext(t.ctx, query, args...)
	if err != nil {
		return 0, t.s.wrap(op, err)
	}
	n, err := res.RowsAffected()
	return n, t.s.wrap(op, err)
}

// write runs an insert into a table that references executions: a missing
// execution is store.ErrNotFound.
func (t *tx) write(op, query string, args ...any) error {
	_, err := t.tx.ExecContext(t.ctx, query, args...)
	if isForeignKey(err) {
		return fmt.Errorf("sqlite %s: %s: execution %q: %w", t.s.path, op, t.id, store.ErrNotFound)
	}
	return t.s.wrap(op, err)
}

func (t *tx) notFound(what string) error {
	return fmt.Errorf("sqlite %s: %s %q: %w", t.s.path, what, t.id, store.ErrNotFound)
}

func (t *tx) Execution() (*store.Execution, error) {
	e, err := scanExec(t.tx.QueryRowContext(t.ctx, `SELECT `+execCols+` FROM executions WHERE id = ?`, t.id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, t.notFound("execution")
	}
	return e, t.s.wrap("execution", err)
}

func (t *tx) CreateExecution(e *store.Execution) error {
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	n, err := t.exec("create execution", `INSERT INTO executions (`+execCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`, args...)
	if err == nil && n == 0 {
		return fmt.Errorf("sqlite %s: execution %q: %w", t.s.path, t.id, store.ErrExists)
	}
	return err
}

func (t *tx) PutExecution(e *store.Execution) error {
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	n, err := t.exec("put execution", `UPDATE executions SET run = ?, graph = ?, target = ?, codec = ?,
		inputs = ?, status = ?, result_type = ?, result_data = ?, error = ?, cancel_requested = ?,
		deadline = ?, created_at = ?, updated_at = ?, finished_at = ?, seq = ?, parent = ?, parent_step = ?, runs = ?
		WHERE id = ?`,
		append(args[1:], t.id)...)
	if err == nil && n == 0 {
		return t.notFound("execution")
	}
	return err
}

func (t *tx) Steps() ([]store.Step, error) {
	steps, err := collect(t.ctx, t.tx, scanStep, `SELECT `+stepCols+` FROM steps WHERE exec = ? ORDER BY name`, t.id)
	return steps, t.s.wrap("steps", err)
}

func (t *tx) PutStep(s *store.Step) error {
	ot, od := valueArgs(s.Output)
	return t.write("put step", `INSERT OR REPLACE INTO steps (`+stepCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.id, s.Name, string(s.Status), s.Attempt, ot, od, s.Error, s.Wait, micros(s.WakeAt), s.Heartbeat,
		s.Seq, micros(s.ReadyAt), micros(s.StartedAt), micros(s.FinishedAt), string(s.Comp), s.CompAttempt, s.CompError, s.Signal,
		s.Worker)
}

func (t *tx) Journal(step string) ([]store.JournalEntry, error) {
	j, err := collect(t.ctx, t.tx, scanEntry,
		`SELECT `+journalCols+` FROM journal WHERE exec = ? AND step = ? ORDER BY seq`, t.id, step)
	return j, t.s.wrap("journal", err)
}

func (t *tx) PutJournal(e *store.JournalEntry) error {
	return t.write("put journal", `INSERT OR REPLACE INTO journal (`+journalCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.id, e.Step, e.Seq, e.Kind, e.Name, e.Data, e.Error, boolInt(e.Done), micros(e.WakeAt))
}

func (t *tx) TruncateJournal(step string, seq int) error {
	_, err := t.exec("truncate journal", `DELETE FROM journal WHERE exec = ? AND step = ? AND seq >= ?`, t.id, step, seq)
	return err
}

func (t *tx) Tasks() ([]store.Task, error) {
	tasks, err := collect(t.ctx, t.tx, scanTask, `SELECT `+taskCols+` FROM tasks WHERE exec = ? ORDER BY id`, t.id)
	return tasks, t.s.wrap("tasks", err)
}

func (t *tx) AddTask(task *store.Task) error {
	var id int64
	err := t.tx.QueryRowContext(t.ctx, `INSERT INTO tasks (exec, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		t.id, task.Step, string(task.Kind), micros(task.ReadyAt), task.Owner, micros(task.LeaseUntil), task.Attempt, task.Claims,
		task.Queue, task.Worker).Scan(&id)
	if isForeignKey(err) {
		return t.notFound("add task: execution")
	}
	if err != nil {
		return t.s.wrap("add task", err)
	}
	task.ID, task.Exec = id, t.id
	return nil
}

func (t *tx) PutTask(task *store.Task) error {
	n, err := t.exec("put task", `UPDATE tasks SET step = ?, kind = ?, ready_at = ?, owner = ?, lease_until = ?, attempt = ?, claims = ?,
		queue = ?, worker = ? WHERE id = ? AND exec = ?`,
		task.Step, string(task.Kind), micros(task.ReadyAt), task.Owner, micros(task.LeaseUntil), task.Attempt, task.Claims,
		task.Queue, task.Worker, task.ID, t.id)
	if err == nil && n == 0 {
		return fmt.Errorf("sqlite %s: task %d of execution %q: %w", t.s.path, task.ID, t.id, store.ErrNotFound)
	}
	return err
}

func (t *tx) DeleteStep(name string) error {
	if _, err := t.exec("delete journal", `DELETE FROM journal WHERE exec = ? AND step = ?`, t.id, name); err != nil {
		return err
	}
	_, err := t.exec("delete step", `DELETE FROM steps WHERE exec = ? AND name = ?`, t.id, name)
	return err
}

func (t *tx) DeleteTask(id int64) error {
	_, err := t.exec("delete task", `DELETE FROM tasks WHERE id = ? AND exec = ?`, id, t.id)
	return err
}

const signalCols = `exec, seq, name, payload_type, payload_data, sent_at, consumed_by`

func scanSignal(row scanner) (store.Signal, error) {
	var (
		s    store.Signal
		sent int64
	)
	err := row.Scan(&s.Exec, &s.Seq, &s.Name, &s.Payload.Type, &s.Payload.Data, &sent, &s.ConsumedBy)
	s.SentAt = fromMicros(sent)
	return s, err
}

func (t *tx) Signals() ([]store.Signal, error) {
	sigs, err := collect(t.ctx, t.tx, scanSignal, `SELECT `+signalCols+` FROM signals WHERE exec = ? ORDER BY seq`, t.id)
	return sigs, t.s.wrap("signals", err)
}

// AddSignal implements store.Tx. The Seq comes from the execution's
// signal counter, so that the Seqs of deleted signals are not given again.
func (t *tx) AddSignal(s *store.Signal) error {
	var seq int64
	err := t.tx.QueryRowContext(t.ctx, `UPDATE executions SET signal_seq = signal_seq + 1 WHERE id = ? RETURNING signal_seq`,
		t.id).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return t.notFound("add signal: execution")
	}
	if err != nil {
		return t.s.wrap("add signal", err)
	}
	data := s.Payload.Data
	if data == nil {
		data = []byte{}
	}
	if err := t.write("add signal", `INSERT INTO signals (`+signalCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		t.id, seq, s.Name, s.Payload.Type, data, micros(s.SentAt), s.ConsumedBy); err != nil {
		return err
	}
	s.Exec, s.Seq = t.id, seq
	return nil
}

func (t *tx) PutSignal(s *store.Signal) error {
	data := s.Payload.Data
	if data == nil {
		data = []byte{}
	}
	n, err := t.exec("put signal", `UPDATE signals SET name = ?, payload_type = ?, payload_data = ?, sent_at = ?, consumed_by = ?
		WHERE exec = ? AND seq = ?`, s.Name, s.Payload.Type, data, micros(s.SentAt), s.ConsumedBy, t.id, s.Seq)
	if err == nil && n == 0 {
		return fmt.Errorf("sqlite %s: signal %d of execution %q: %w", t.s.path, s.Seq, t.id, store.ErrNotFound)
	}
	return err
}

// DeleteSignal implements store.Tx.
func (t *tx) DeleteSignal(seq int64) error {
	_, err := t.exec("delete signal", `DELETE FROM signals WHERE exec = ? AND seq = ?`, t.id, seq)
	return err
}
