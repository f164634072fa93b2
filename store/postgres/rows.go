package postgres

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// Times go to the database as they are (pgx sends microseconds, dropping
// what is below) and come back in UTC; the zero time.Time is stored as
// 0001-01-01 00:00:00 UTC and comes back as the zero time.

// utc returns a time read from the database, in UTC.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// norm returns t as the database would give it back.
func norm(t time.Time) time.Time { return utc(t.Truncate(time.Microsecond)) }

// clean makes free text (error messages, wait descriptions) storable: a
// text column takes neither NUL bytes nor invalid UTF-8, and refusing an
// execution's error message would leave it unrecorded.
func clean(s string) string {
	if strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) {
		return s
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// PostgreSQL's range of timestamptz: 4713 BC to 294276 AD.
var (
	minTime = time.Date(-4712, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(294276, 1, 1, 0, 0, 0, 0, time.UTC)
)

// badValue describes the first of args that the server would refuse, if
// any: text with a NUL byte or invalid UTF-8, a time outside PostgreSQL's
// range, or an int (the type of the integer columns' values) beyond 32
// bits. Values are checked before they are sent so that a bad one fails
// its own Update, not the group's transaction.
func badValue(args []any) (string, bool) {
	for _, a := range args {
		switch v := a.(type) {
		case string:
			if strings.IndexByte(v, 0) >= 0 || !utf8.ValidString(v) {
				return fmt.Sprintf("text %q", v), true
			}
		case time.Time:
			if v.Before(minTime) || !v.Before(maxTime) {
				return fmt.Sprintf("time %s", v), true
			}
		case int:
			if v > math.MaxInt32 || v < math.MinInt32 {
				return fmt.Sprintf("integer %d", v), true
			}
		}
	}
	return "", false
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

func valueOf(typ *string, data []byte) *store.Value {
	if typ == nil {
		return nil
	}
	return &store.Value{Type: *typ, Data: data}
}

func cloneValue(v *store.Value) *store.Value {
	if v == nil {
		return nil
	}
	return &store.Value{Type: v.Type, Data: clone(v.Data)}
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

const execCols = `id, run, graph, target, codec, inputs, status, result_type, result_data, error,
	cancel_requested, deadline, created_at, updated_at, finished_at, seq, parent, parent_step, runs`

func execArgs(id string, e *store.Execution) ([]any, error) {
	inputs, err := json.Marshal(e.Inputs)
	if err != nil {
		return nil, fmt.Errorf("encoding inputs: %w", err)
	}
	runs, err := json.Marshal(normRuns(e.Runs))
	if err != nil {
		return nil, fmt.Errorf("encoding runs: %w", err)
	}
	rt, rd := valueArgs(e.Result)
	return []any{id, e.Run, e.Graph, e.Target, e.Codec, inputs, string(e.Status), rt, rd, clean(e.Error),
		e.CancelRequested, e.Deadline, e.CreatedAt, e.UpdatedAt, e.FinishedAt, e.Seq, e.Parent, e.ParentStep, runs}, nil
}

// normRuns returns a copy of runs with their times as the database gives
// them back: in UTC, to the microsecond (they are kept in JSON).
func normRuns(runs []store.RunRecord) []store.RunRecord {
	if runs == nil {
		return nil
	}
	out := make([]store.RunRecord, len(runs))
	for i, r := range runs {
		r.StartedAt, r.EndedAt = norm(r.StartedAt), norm(r.EndedAt)
		out[i] = r
	}
	return out
}

// normExec returns a copy of e as the database gives it back after a write.
func normExec(id string, e *store.Execution) *store.Execution {
	c := *e
	c.ID = id
	if e.Inputs != nil {
		c.Inputs = make([]store.Value, len(e.Inputs))
		for i, v := range e.Inputs {
			c.Inputs[i] = store.Value{Type: v.Type, Data: clone(v.Data)}
		}
	}
	c.Result = cloneValue(e.Result)
	c.Runs = normRuns(e.Runs)
	c.Error = clean(e.Error)
	c.Deadline, c.CreatedAt, c.UpdatedAt, c.FinishedAt = norm(e.Deadline), norm(e.CreatedAt), norm(e.UpdatedAt), norm(e.FinishedAt)
	return &c
}

// progressed returns old, as stored, with the Seq and UpdatedAt of e, when
// e differs from it in nothing else: the record of a step's progress,
// which needs only those two columns written.
func progressed(old, e *store.Execution) (*store.Execution, bool) {
	if !sameStart(old, e) || old.Status != e.Status || old.Error != clean(e.Error) ||
		!old.FinishedAt.Equal(norm(e.FinishedAt)) || !sameValue(old.Result, e.Result) {
		return nil, false
	}
	c := *old // its slices are not changed in place, so they can be shared
	c.Seq, c.UpdatedAt = e.Seq, norm(e.UpdatedAt)
	return &c, true
}

// ended returns old, as stored, with the status, result, error, end time,
// Seq and UpdatedAt of e, when e differs from it in nothing else: the
// record of an execution's end, which needs only those columns written
// (not its inputs and runs again).
func ended(old, e *store.Execution) (*store.Execution, bool) {
	if !sameStart(old, e) {
		return nil, false
	}
	c := *old
	c.Status, c.Result, c.Error = e.Status, cloneValue(e.Result), clean(e.Error)
	c.FinishedAt, c.Seq, c.UpdatedAt = norm(e.FinishedAt), e.Seq, norm(e.UpdatedAt)
	return &c, true
}

// sameStart reports whether e is stored as old is, but perhaps for its
// status, result, error, end time, Seq and UpdatedAt.
func sameStart(old, e *store.Execution) bool {
	return old.Run == e.Run && old.Graph == e.Graph && old.Target == e.Target && old.Codec == e.Codec &&
		old.CancelRequested == e.CancelRequested &&
		old.Deadline.Equal(norm(e.Deadline)) && old.CreatedAt.Equal(norm(e.CreatedAt)) &&
		old.Parent == e.Parent && old.ParentStep == e.ParentStep &&
		(old.Inputs == nil) == (e.Inputs == nil) &&
		slices.EqualFunc(old.Inputs, e.Inputs, func(a, b store.Value) bool { return sameValue(&a, &b) }) &&
		(old.Runs == nil) == (e.Runs == nil) &&
		slices.EqualFunc(old.Runs, e.Runs, func(a, b store.RunRecord) bool {
			return a.Run == b.Run && a.Steps == b.Steps && a.StartedAt.Equal(norm(b.StartedAt)) && a.EndedAt.Equal(norm(b.EndedAt))
		})
}

// sameValue reports whether two values are stored alike.
func sameValue(a, b *store.Value) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Type == b.Type && (a.Data == nil) == (b.Data == nil) && bytes.Equal(a.Data, b.Data)
}

// copyExec returns a copy of e that shares no memory with it.
func copyExec(e *store.Execution) *store.Execution {
	if e == nil {
		return nil
	}
	return normExec(e.ID, e)
}

func scanExec(row pgx.CollectableRow) (store.Execution, error) { return scanExecAnd(row) }

// scanExecAnd scans an execution followed by the columns of extra.
func scanExecAnd(row pgx.CollectableRow, extra ...any) (store.Execution, error) {
	var (
		e      store.Execution
		inputs []byte
		runs   []byte
		status string
		rt     *string
		rd     []byte
	)
	dest := append([]any{&e.ID, &e.Run, &e.Graph, &e.Target, &e.Codec, &inputs, &status, &rt, &rd, &e.Error,
		&e.CancelRequested, &e.Deadline, &e.CreatedAt, &e.UpdatedAt, &e.FinishedAt, &e.Seq, &e.Parent, &e.ParentStep, &runs}, extra...)
	if err := row.Scan(dest...); err != nil {
		return e, err
	}
	if err := json.Unmarshal(inputs, &e.Inputs); err != nil {
		return e, fmt.Errorf("decoding inputs of %s: %w", e.ID, err)
	}
	if err := json.Unmarshal(runs, &e.Runs); err != nil {
		return e, fmt.Errorf("decoding runs of %s: %w", e.ID, err)
	}
	for i := range e.Runs {
		e.Runs[i].StartedAt, e.Runs[i].EndedAt = utc(e.Runs[i].StartedAt), utc(e.Runs[i].EndedAt)
	}
	e.Status, e.Result = store.Status(status), valueOf(rt, rd)
	e.Deadline, e.CreatedAt, e.UpdatedAt, e.FinishedAt = utc(e.Deadline), utc(e.CreatedAt), utc(e.UpdatedAt), utc(e.FinishedAt)
	return e, nil
}

const stepCols = `exec, name, status, attempt, output_type, output_data, error, wait, wake_at, signal,
	heartbeat, seq, ready_at, started_at, finished_at, comp, comp_attempt, comp_error, worker`

func stepArgs(exec string, s *store.Step) []any {
	ot, od := valueArgs(s.Output)
	return []any{exec, s.Name, string(s.Status), s.Attempt, ot, od, clean(s.Error), clean(s.Wait), s.WakeAt, s.Signal,
		s.Heartbeat, s.Seq, s.ReadyAt, s.StartedAt, s.FinishedAt, string(s.Comp), s.CompAttempt, clean(s.CompError), s.Worker}
}

// scanStep scans a row of stepCols.
func scanStep(row pgx.CollectableRow) (store.Step, error) {
	var (
		s            store.Step
		status, comp string
		ot           *string
		od           []byte
	)
	err := row.Scan(&s.Exec, &s.Name, &status, &s.Attempt, &ot, &od, &s.Error, &s.Wait, &s.WakeAt, &s.Signal,
		&s.Heartbeat, &s.Seq, &s.ReadyAt, &s.StartedAt, &s.FinishedAt, &comp, &s.CompAttempt, &s.CompError, &s.Worker)
	s.Status, s.Comp, s.Output = store.StepStatus(status), store.CompStatus(comp), valueOf(ot, od)
	s.WakeAt, s.ReadyAt, s.StartedAt, s.FinishedAt = utc(s.WakeAt), utc(s.ReadyAt), utc(s.StartedAt), utc(s.FinishedAt)
	return s, err
}

// normStep returns a copy of s as the database gives it back after a write.
func normStep(exec string, s *store.Step) store.Step {
	c := s.Clone()
	c.Exec = exec
	if c.Output != nil && c.Output.Data == nil {
		c.Output.Data = []byte{} // an output's data is never NULL
	}
	c.Error, c.Wait, c.CompError = clean(s.Error), clean(s.Wait), clean(s.CompError)
	c.WakeAt, c.ReadyAt, c.StartedAt, c.FinishedAt = norm(s.WakeAt), norm(s.ReadyAt), norm(s.StartedAt), norm(s.FinishedAt)
	return c
}

const journalCols = `exec, step, seq, kind, name, data, error, done, wake_at`

func scanEntry(row pgx.CollectableRow) (store.JournalEntry, error) {
	var e store.JournalEntry
	err := row.Scan(&e.Exec, &e.Step, &e.Seq, &e.Kind, &e.Name, &e.Data, &e.Error, &e.Done, &e.WakeAt)
	e.WakeAt = utc(e.WakeAt)
	return e, err
}

const taskCols = `id, exec, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker`

func scanTask(row pgx.CollectableRow) (store.Task, error) { return scanTaskAnd(row) }

// scanTaskAnd is scanTask for a row with more columns after the task's,
// scanned into extra.
func scanTaskAnd(row pgx.CollectableRow, extra ...any) (store.Task, error) {
	var (
		t    store.Task
		kind string
	)
	err := row.Scan(append([]any{&t.ID, &t.Exec, &t.Step, &kind, &t.ReadyAt, &t.Owner, &t.LeaseUntil, &t.Attempt, &t.Claims, &t.Queue, &t.Worker}, extra...)...)
	t.Kind, t.ReadyAt, t.LeaseUntil = store.TaskKind(kind), utc(t.ReadyAt), utc(t.LeaseUntil)
	return t, err
}

// normTask returns t as the database gives it back after a write.
func normTask(t store.Task) store.Task {
	t.ReadyAt, t.LeaseUntil = norm(t.ReadyAt), norm(t.LeaseUntil)
	return t
}

const signalCols = `exec, seq, name, payload_type, payload_data, sent_at, consumed_by`

func signalArgs(exec string, seq int64, s *store.Signal) []any {
	data := s.Payload.Data
	if data == nil {
		data = []byte{}
	}
	return []any{exec, seq, s.Name, s.Payload.Type, data, s.SentAt, s.ConsumedBy}
}

func scanSignal(row pgx.CollectableRow) (store.Signal, error) {
	var s store.Signal
	err := row.Scan(&s.Exec, &s.Seq, &s.Name, &s.Payload.Type, &s.Payload.Data, &s.SentAt, &s.ConsumedBy)
	s.SentAt = utc(s.SentAt)
	return s, err
}

func scanID(row pgx.CollectableRow) (int64, error) {
	var id int64
	err := row.Scan(&id)
	return id, err
}
