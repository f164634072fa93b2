package postgres

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// One group's transaction, on one pooled connection:
//
//  1. One round trip sends BEGIN, takes the advisory locks of the group's
//     executions (in key order, so that groups never deadlock), reads their
//     execution records with their signal counters (the highest signal Seq
//     each gave out), reads and row-locks their tasks (FOR UPDATE, in ID
//     order, as ExtendLeases and Release lock them), and reads their steps;
//     and, when this process has few task IDs left, reserves more.
//  2. Each member's fn runs. Under the advisory lock nothing but this
//     transaction writes the execution, its steps, journal or signals, and
//     under the row locks no Claim, ExtendLeases or Release changes its
//     tasks; so the records read in step 1 stay exact, and the Tx answers
//     Execution, Tasks and Steps from them (kept up to date with its own
//     writes), and decides ErrNotFound and ErrExists on its own. Writes
//     are queued rather than sent.
//  3. Queued writes go to the server in the same round trip as the next
//     statement that needs an answer (a read of the journal or the inbox),
//     pipelined ahead of it. In a group of more than one, a member that
//     sends something before its fn returns first sets a savepoint, so
//     that its writes can be undone alone if its fn then fails.
//  4. One last round trip sends what is queued, pg_notify for the changes,
//     and COMMIT.
//
// An Update that reads the execution, its tasks and steps and writes
// anything therefore costs two round trips, shared by the whole group.

// stmt is a queued write.
type stmt struct {
	op   string
	sql  string
	args []any
	kind mergeKind // which merged statement it may join (see merge)
	// merged: args are the columns of the rows (see emit); checked: the
	// statement fails unless the rows had the versions kept (see
	// checkWrites).
	merged, checked bool
}

// group is the transaction of a group of Updates.
type group struct {
	s     *Store
	ctx   context.Context
	conn  *pgx.Conn
	multi bool // more than one member: a member's writes are undone alone

	queue     []stmt // writes not sent yet
	err       error  // the first failure on the server; the transaction is lost
	savepoint bool   // a savepoint was set: later writes belong to a subtransaction
}

// tx is the store.Tx of one Update, a member of a group.
type tx struct {
	g  *group
	s  *Store
	id string

	exec     *store.Execution // the execution as it now is; nil while it does not exist
	tasks    []store.Task     // its tasks, by ID, as they now are
	steps    []store.Step     // its steps, by name, as they now are
	lastSig  int64            // the highest signal Seq given out (executions.signal_seq)
	watchers []string         // the stores that watch it (executions.watchers, see Watch)
	versions                  // of the execution's row and tasks ("": written here)
	// sigs holds the Seqs of the inbox as it now is, once Signals has read
	// it in this Update (nil before): PutSignal then needs no round trip to
	// tell whether the signal exists.
	sigs map[int64]bool

	bad error // a write refused before it was sent: this Update fails
	// spec is set while fn runs against what this process kept of the
	// execution (see speculate): a read it needs sets needRead instead.
	spec, needRead bool
	mark           int        // where this member's writes start in the group's queue
	saved          bool       // a savepoint was set at mark
	changed        bool       // the inbox, the cancel request or the run changed (see notice)
	status         bool       // the execution was created or its status changed
	watches        bool       // this store is now among the execution's watchers
	stepsWritten   bool       // a step was put or deleted (see touch)
	tasksAdded     bool       // a task was added (see touch)
	finished       bool       // the execution's status became final
	offers         int        // tasks added or put without an owner (see notice)
	offer          store.Task // the last such task
}

// An Update's transaction begins with sqlLock (one execution) or sqlLocks
// (several, $1 their keys in order), which take the executions' advisory
// locks and plan the rest of the transaction with index lookups (see
// indexPlans) in one statement.
const (
	sqlLock  = `SELECT pg_advisory_xact_lock($1), ` + indexPlans
	sqlLocks = `SELECT (SELECT count(pg_advisory_xact_lock(k)) FROM unnest($1::bigint[]) AS k), ` + indexPlans
	// The same, giving the transaction its ID (see sqlXid) as their last
	// column, for a speculative Update with checked writes.
	sqlLockXid  = sqlLock + `, ` + xidNow
	sqlLocksXid = sqlLocks + `, ` + xidNow
)

const (
	sqlReserveIDs = `SELECT nextval($1::regclass) FROM generate_series(1, $2)`
	// The group's reads are lookups by primary key (or its prefix) of a few
	// executions, and an index scan is always right for them; but on tables
	// that grew fast since they were last analyzed (a new schema, say),
	// PostgreSQL's estimates can make a sequential scan look cheaper, and a
	// plan cached then is kept. So an Update's transaction is planned with
	// sequential scans, hash and merge joins off, from its start to its
	// end (set_config's local settings end with it): every statement in it
	// — the group's reads, the members' reads and writes of their own
	// execution, the merged writes — looks rows up by key, and a table
	// with no index for a statement is still scanned.
	indexPlans = `set_config('enable_seqscan', 'off', true), set_config('enable_hashjoin', 'off', true),
		set_config('enable_mergejoin', 'off', true)`
	sqlSavepoint   = `SAVEPOINT member`
	sqlToSavepoint = `ROLLBACK TO SAVEPOINT member`
	sqlNotify      = `SELECT pg_notify($1, $2)`
	sqlNotifyMany  = `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`
)

// The group's reads join the array of execution IDs with each table's
// primary key (or its prefix); they run after indexPlans, so that the
// join is a nested loop of index lookups whatever the statistics say.
var (
	sqlGroupExecs = `SELECT ` + qualify("e", execCols) + `, e.signal_seq, e.watchers, e.xmin::text FROM unnest($1::text[]) AS u(id)
		JOIN executions e ON e.id = u.id`
	sqlGroupTasks = `SELECT ` + qualify("t", taskCols) + `, t.xmin::text FROM unnest($1::text[]) AS u(id)
		JOIN tasks t ON t.exec = u.id ORDER BY t.id FOR UPDATE OF t`
	sqlGroupSteps = `SELECT ` + qualify("s", stepCols) + ` FROM unnest($1::text[]) AS u(id)
		JOIN steps s ON s.exec = u.id ORDER BY s.exec, s.name COLLATE "C"`
)

// qualify prefixes each column of a list with a table alias.
func qualify(alias, cols string) string {
	fields := strings.Split(cols, ",")
	for i, f := range fields {
		fields[i] = alias + "." + strings.TrimSpace(f)
	}
	return strings.Join(fields, ", ")
}

// begin runs step 1 in one round trip and returns the members' Txs.
func (g *group) begin(members []*request) ([]*tx, error) {
	txs := make([]*tx, len(members))
	ids := make([]string, len(members))
	keys := make([]int64, len(members))
	for i, m := range members {
		txs[i] = &tx{g: g, s: g.s, id: m.id}
		ids[i], keys[i] = m.id, m.key
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	if len(keys) == 1 {
		b.Queue(sqlLock, keys[0])
	} else {
		b.Queue(sqlLocks, intArray(keys))
	}
	b.Queue(sqlGroupExecs, textArray(ids))
	b.Queue(sqlGroupSteps, textArray(ids))
	b.Queue(sqlGroupTasks, textArray(ids))
	reserve := g.s.ids.wanted()
	if reserve > 0 {
		g.s.queueReserve(b, reserve)
	}
	err := g.send(nil, "begin", b, func(br pgx.BatchResults) error {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		read := make(map[string]*known, len(members))
		if err := readVersioned(br, read); err != nil {
			return err
		}
		for _, t := range txs {
			if k := read[t.id]; k != nil {
				t.exec, t.tasks, t.steps, t.lastSig, t.watchers, t.versions = k.exec, k.tasks, k.steps, k.lastSig, k.watchers, k.versions
			}
		}
		if reserve > 0 {
			return g.s.takeReserved(br)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return txs, nil
}

// send sends the queued writes and then b in one round trip; read reads
// the results of b. t is the member whose fn is running, if any: in a
// group of several, its first send sets a savepoint ahead of its writes.
// Any failure loses the transaction: it is kept in g.err and returned by
// every later call.
func (g *group) send(t *tx, op string, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	if g.err != nil {
		return g.err
	}
	if t != nil && g.multi && !t.saved {
		g.queue = slices.Insert(g.queue, t.mark, stmt{op: "savepoint", sql: sqlSavepoint, kind: barrier})
		t.saved, g.savepoint = true, true
	}
	queued := merge(g.queue)
	g.queue = nil
	if len(queued) > 0 {
		all := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(queued)+len(b.QueuedQueries))}
		for _, q := range queued {
			all.Queue(q.sql, q.args...)
		}
		all.QueuedQueries = append(all.QueuedQueries, b.QueuedQueries...)
		b = all
	}
	br := g.conn.SendBatch(g.ctx, b)
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
		what := failed
		if t != nil {
			what = fmt.Sprintf("%s of execution %q", failed, t.id)
		}
		g.err = g.s.ctxErr(g.ctx, what, err)
	}
	if t != nil {
		t.mark = 0 // what it queues from now on starts the queue
	}
	return g.err
}

// send sends what is queued and b for the running member.
func (t *tx) send(op string, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	if err := t.lost(); err != nil {
		return err
	}
	if t.spec {
		t.needRead = true
		return errNeedRead
	}
	for _, q := range b.QueuedQueries {
		if bad, ok := badValue(q.Arguments); ok {
			t.bad = fmt.Errorf("postgres %s: %s of execution %q: %s: %w", t.s.name, op, t.id, bad, ErrBadValue)
			return t.bad
		}
	}
	return t.g.send(t, op, b, read)
}

// write queues a statement. One with text that the server would refuse
// fails this Update alone, rather than the group's transaction.
func (t *tx) write(op, sql string, args ...any) error {
	return t.writeAs(mergeNone, op, sql, args...)
}

// writeAs queues a statement that may be merged with others of its kind.
func (t *tx) writeAs(kind mergeKind, op, sql string, args ...any) error {
	if err := t.lost(); err != nil {
		return err
	}
	if bad, ok := badValue(args); ok {
		t.bad = fmt.Errorf("postgres %s: %s of execution %q: %s: %w", t.s.name, op, t.id, bad, ErrBadValue)
		return t.bad
	}
	t.g.queue = append(t.g.queue, stmt{op: op, sql: sql, args: args, kind: kind})
	return nil
}

// touch gives the execution's row a new version when fn wrote steps or
// added tasks and not the row (which recording a step's outcome always
// writes; a heartbeat or a retry may not), so that such a change always
// changes its row's version too. A speculative Update relies on that: its
// guard checks the versions of the row and of the tasks, not of every
// step, and its checked writes (see checkWrites) the versions of the row
// and of the tasks it knew, not whether another was added. It writes the
// progress columns as they are, and so merges with other progress updates.
func (t *tx) touch() error {
	if !(t.stepsWritten || t.tasksAdded) || t.execX == "" || t.exec == nil {
		return nil // no step written, or the row written (or created) already
	}
	t.execX = ""
	return t.writeAs(mergeProgress, "touch execution", sqlPutProgress, t.id, t.exec.Seq, t.exec.UpdatedAt)
}

// lost returns the error that this Update fails with, if it is lost.
func (t *tx) lost() error {
	return cmp.Or(t.bad, t.g.err)
}

// undo drops what the member wrote, after its fn failed.
func (t *tx) undo() {
	g := t.g
	if g.err != nil {
		return
	}
	if t.saved {
		g.queue = append(g.queue, stmt{op: "rollback to savepoint", sql: sqlToSavepoint, kind: barrier})
		return
	}
	clear(g.queue[t.mark:])
	g.queue = g.queue[:t.mark]
}

// commit runs step 4. With executions to keep, it also returns the
// transaction's ID (see sqlXid); and what its notices left for the
// store's own listeners.
func (g *group) commit(notices []notice, keep []*tx) (xid string, nf *notifying, err error) {
	b := &pgx.Batch{}
	nf = queueNotifies(b, g.s.channel, notices)
	queueXid(b, keep)
	b.Queue("COMMIT")
	err = g.send(nil, "commit", b, func(br pgx.BatchResults) error {
		if err := nf.read(br); err != nil {
			return err
		}
		if xid, err = readXid(br, keep); err != nil {
			return err
		}
		return readCommit(br)
	})
	return xid, nf, err
}

// readCommit reads the result of COMMIT.
func readCommit(br pgx.BatchResults) error {
	tag, err := br.Exec()
	if err == nil && tag.String() != "COMMIT" {
		err = errors.New("the server rolled the transaction back")
	}
	return err
}

// rollback ends a transaction that is not committed. A connection that
// cannot roll back is closed, so that the pool drops it.
func (g *group) rollback() {
	if g.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), 5*time.Second)
	defer cancel()
	if _, err := g.conn.Exec(ctx, "ROLLBACK"); err != nil {
		_ = g.conn.Close(ctx)
	}
}

func (t *tx) notFound(what string) error {
	return fmt.Errorf("postgres %s: %s %q: %w", t.s.name, what, t.id, store.ErrNotFound)
}

// needExec fails with store.ErrNotFound while the execution does not exist.
func (t *tx) needExec(op string) error {
	if err := t.lost(); err != nil {
		return err
	}
	if t.exec == nil {
		return t.notFound(op + ": execution")
	}
	return nil
}

// Execution implements store.Tx from the record read at the start (and
// changed by this Update).
func (t *tx) Execution() (*store.Execution, error) {
	if err := t.lost(); err != nil {
		return nil, err
	}
	if t.exec == nil {
		return nil, t.notFound("execution")
	}
	return copyExec(t.exec), nil
}

// CreateExecution implements store.Tx; the insert is queued.
func (t *tx) CreateExecution(e *store.Execution) error {
	if err := t.lost(); err != nil {
		return err
	}
	if t.exec != nil {
		return fmt.Errorf("postgres %s: execution %q: %w", t.s.name, t.id, store.ErrExists)
	}
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	t.exec, t.status, t.finished, t.execX = normExec(t.id, e), true, e.Status.Finished(), ""
	t.watches, t.watchers = true, []string{t.s.self} // its creator may well wait for its end
	return t.writeAs(createExec, "create execution", `INSERT INTO executions (`+execCols+`, watchers)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19,
		ARRAY[$20::text])`, append(args, t.s.self)...)
}

// PutExecution implements store.Tx; the update is queued.
func (t *tx) PutExecution(e *store.Execution) error {
	if err := t.needExec("put execution"); err != nil {
		return err
	}
	old := t.exec
	if c, ok := progressed(old, e); ok {
		// Only the step counter and the time moved: the rest of the row,
		// its inputs above all, need not be sent or written again.
		t.exec, t.execX = c, ""
		return t.writeAs(mergeProgress, "put execution", sqlPutProgress, t.id, c.Seq, c.UpdatedAt)
	}
	// Waiters care about the end, a cancel request and a new run, not
	// about every completed step; a status change only the watchers.
	if old.CancelRequested != e.CancelRequested || old.Run != e.Run {
		t.changed = true
	}
	if old.Status != e.Status {
		t.status = true
	}
	if e.Status.Finished() && !old.Status.Finished() {
		t.finished = true
	}
	if c, ok := ended(old, e); ok {
		// The end (or another change of status and outcome): the inputs
		// and runs need not be sent or written again either.
		t.exec, t.execX = c, ""
		return t.writeAs(mergeEnd, "put execution", sqlPutEnd, endArgs(t.id, c)...)
	}
	args, err := execArgs(t.id, e)
	if err != nil {
		return err
	}
	t.exec, t.execX = normExec(t.id, e), ""
	return t.writeAs(mergeExec, "put execution", `UPDATE executions SET run = $2, graph = $3, target = $4, codec = $5,
		inputs = $6, status = $7, result_type = $8, result_data = $9, error = $10, cancel_requested = $11,
		deadline = $12, created_at = $13, updated_at = $14, finished_at = $15, seq = $16, parent = $17,
		parent_step = $18, runs = $19 WHERE id = $1`, args...)
}

// sqlPutProgress records the progress of an execution: $2 seq, $3 updated_at.
const sqlPutProgress = `UPDATE executions SET seq = $2, updated_at = $3 WHERE id = $1`

// sqlPutEnd records an execution's status and outcome (see endArgs).
const sqlPutEnd = `UPDATE executions SET status = $2, result_type = $3, result_data = $4, error = $5,
	finished_at = $6, seq = $7, updated_at = $8 WHERE id = $1`

// endArgs are sqlPutEnd's arguments for execution e (as stored).
func endArgs(id string, e *store.Execution) []any {
	rt, rd := valueArgs(e.Result)
	return []any{id, string(e.Status), rt, rd, e.Error, e.FinishedAt, e.Seq, e.UpdatedAt}
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

// Steps implements store.Tx from the steps read at the start (and changed
// by this Update).
func (t *tx) Steps() ([]store.Step, error) {
	if err := t.lost(); err != nil {
		return nil, err
	}
	out := make([]store.Step, len(t.steps))
	for i := range t.steps {
		out[i] = t.steps[i].Clone()
	}
	return out, nil
}

func byName(s store.Step, name string) int { return cmp.Compare(s.Name, name) }

// PutStep implements store.Tx; the update, or the insert of a step the
// execution does not have, is queued. (The Update knows its steps: read
// under its lock, or kept and checked by the guard.)
func (t *tx) PutStep(s *store.Step) error {
	if err := t.needExec("put step"); err != nil {
		return err
	}
	i, ok := slices.BinarySearchFunc(t.steps, s.Name, byName)
	kind, sql := mergeStep, sqlPutStep
	if !ok {
		kind, sql = mergeNewStep, sqlAddStep
	}
	if err := t.writeAs(kind, "put step", sql, stepArgs(t.id, s)...); err != nil {
		return err
	}
	t.stepsWritten = true
	put := normStep(t.id, s)
	if ok {
		t.steps[i] = put
	} else {
		t.steps = slices.Insert(t.steps, i, put)
	}
	return nil
}

// sqlPutStep updates a step and sqlAddStep inserts one ($1... in
// stepCols' order); sqlPutSteps and sqlAddSteps do so for rows sent as
// arrays, one per column.
var (
	sqlPutStep, sqlAddStep   = rowSQL("steps", stepCols, 2, stepTypes, false)
	sqlPutSteps, sqlAddSteps = rowSQL("steps", stepCols, 2, stepTypes, true)
)

// rowSQL returns the statements that update a row of table, found by its
// first nkey columns (of cols, typed as types), and that insert one. The
// row's arguments are $1... in cols' order or, with merged, one array per
// column for any number of rows (at most one per key).
func rowSQL(table, cols string, nkey int, types table, merged bool) (update, insert string) {
	names := strings.Split(cols, ",")
	var set, match, vals []string
	for i, c := range names {
		c = strings.TrimSpace(c)
		names[i] = c
		switch {
		case i < nkey && merged:
			match = append(match, "r."+c+" = v."+c)
		case i < nkey:
			match = append(match, fmt.Sprintf("%s = $%d", c, i+1))
		case merged:
			set = append(set, c+" = v."+c)
		default:
			set = append(set, fmt.Sprintf("%s = $%d", c, i+1))
		}
		vals = append(vals, fmt.Sprintf("$%d::%s", i+1, types[i]))
	}
	list := strings.Join(names, ", ")
	if merged {
		return `UPDATE ` + table + ` r SET ` + strings.Join(set, ", ") + ` FROM ` + types.unnest() + ` AS v(` + list + `)
			WHERE ` + strings.Join(match, " AND "),
			`INSERT INTO ` + table + ` (` + list + `) SELECT * FROM ` + types.unnest()
	}
	return `UPDATE ` + table + ` SET ` + strings.Join(set, ", ") + ` WHERE ` + strings.Join(match, " AND "),
		`INSERT INTO ` + table + ` (` + list + `) SELECT ` + strings.Join(vals, ", ")
}

// writeRowSQL returns the statement that writes one row of table (see
// rowSQL), where the Update does not know whether it exists: it updates
// the row if there is one and inserts it if not.
//
// It is meant for the tables of an execution's parts, whose every write
// holds the execution's lock, so that no one else can insert the row
// between the update and the insert. There, INSERT ... ON CONFLICT would
// guard against a race that cannot happen, at a cost: it locks a row it
// finds before updating it, and marks a row it inserts as speculative and
// then confirms it — a WAL record more for every row, either way.
func writeRowSQL(table, cols string, nkey int, types table) string {
	update, insert := rowSQL(table, cols, nkey, types, false)
	return `WITH u AS (` + update + ` RETURNING 1) ` + insert + ` WHERE NOT EXISTS (SELECT 1 FROM u)`
}

// DeleteStep implements store.Tx; the delete is queued.
func (t *tx) DeleteStep(name string) error {
	if t.exec == nil {
		return t.lost() // nothing to delete
	}
	if i, ok := slices.BinarySearchFunc(t.steps, name, byName); ok {
		t.steps = slices.Delete(t.steps, i, i+1)
	}
	t.stepsWritten = true
	return t.writeAs(touchSteps, "delete step", `WITH j AS (DELETE FROM journal WHERE exec = $1 AND step = $2)
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
	return t.write("put journal", sqlPutJournal, t.id, e.Step, e.Seq, e.Kind, e.Name, e.Data, clean(e.Error), e.Done, e.WakeAt)
}

// sqlPutJournal writes a journal entry ($1... in journalCols' order).
var sqlPutJournal = writeRowSQL("journal", journalCols, 3, table{"text", "text", "integer", "text", "text", "bytea",
	"text", "boolean", "timestamptz"})

// TruncateJournal implements store.Tx; the delete is queued.
func (t *tx) TruncateJournal(step string, seq int) error {
	if t.exec == nil {
		return t.lost()
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
		UPDATE executions SET signal_seq = $2, watchers = CASE WHEN $8::text = ANY(watchers) THEN watchers
			ELSE array_append(watchers, $8::text) END WHERE id = $1`,
		append(signalArgs(t.id, seq, s), t.s.self)...); err != nil {
		return err
	}
	// The sender (of an update, say) may wait for an answer or the end.
	t.lastSig, t.changed, t.watches, t.execX = seq, true, true, ""
	if !slices.Contains(t.watchers, t.s.self) {
		t.watchers = append(slices.Clip(t.watchers), t.s.self)
	}
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
	if err := t.lost(); err != nil {
		return err
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
		return t.lost() // nothing to delete
	}
	if t.sigs != nil {
		if !t.sigs[seq] {
			return t.lost()
		}
		delete(t.sigs, seq)
	}
	return t.write("delete signal", `DELETE FROM signals WHERE exec = $1 AND seq = $2`, t.id, seq)
}

// Tasks implements store.Tx from the tasks read (and locked) at the start.
func (t *tx) Tasks() ([]store.Task, error) {
	if err := t.lost(); err != nil {
		return nil, err
	}
	return slices.Clone(t.tasks), nil
}

// AddTask implements store.Tx. The insert is queued: the task's ID comes
// from the IDs this process reserved (see idPool), and only when they have
// run out does reserving more cost a round trip.
func (t *tx) AddTask(task *store.Task) error {
	if err := t.needExec("add task"); err != nil {
		return err
	}
	id, ok := t.s.ids.take()
	if !ok {
		b := &pgx.Batch{}
		t.s.queueReserve(b, idBlock)
		if err := t.send("reserve task IDs", b, t.s.takeReserved); err != nil {
			return err
		}
		if id, ok = t.s.ids.take(); !ok {
			return t.fail("add task", errors.New("no task IDs were reserved"))
		}
	}
	if err := t.writeAs(mergeAddTask, "add task", `INSERT INTO tasks (id, exec, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker)
		OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		id, t.id, task.Step, string(task.Kind), task.ReadyAt, task.Owner, task.LeaseUntil, task.Attempt, task.Claims,
		task.Queue, task.Worker); err != nil {
		return err
	}
	task.ID, task.Exec, t.tasksAdded = id, t.id, true
	i, _ := slices.BinarySearchFunc(t.tasks, id, byID)
	t.tasks, t.taskX = slices.Insert(t.tasks, i, normTask(*task)), slices.Insert(t.taskX, i, "")
	if claimable(task) {
		t.offered(task)
	}
	return nil
}

// queueReserve queues the reservation of n task IDs; takeReserved reads
// its result into the pool.
func (s *Store) queueReserve(b *pgx.Batch, n int) { b.Queue(sqlReserveIDs, s.taskSeq, n) }

func (s *Store) takeReserved(br pgx.BatchResults) error {
	rows, _ := br.Query()
	got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err == nil {
		s.ids.put(got)
	}
	return err
}

// fail loses the transaction with err.
func (t *tx) fail(op string, err error) error {
	t.g.err = t.s.wrap(fmt.Sprintf("%s of execution %q", op, t.id), err)
	return t.g.err
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
	if err := t.lost(); err != nil {
		return err
	}
	i := t.index(task.ID)
	if i < 0 {
		return fmt.Errorf("postgres %s: task %d of execution %q: %w", t.s.name, task.ID, t.id, store.ErrNotFound)
	}
	put := normTask(*task)
	put.Exec = t.id
	t.tasks[i], t.taskX[i] = put, ""
	if claimable(task) {
		t.offered(task)
	}
	return t.writeAs(mergePutTask, "put task", `UPDATE tasks SET step = $2, kind = $3, ready_at = $4, owner = $5, lease_until = $6,
		attempt = $7, claims = $8, queue = $9, worker = $10 WHERE id = $1`,
		task.ID, task.Step, string(task.Kind), task.ReadyAt, task.Owner, task.LeaseUntil, task.Attempt, task.Claims,
		task.Queue, task.Worker)
}

// DeleteTask implements store.Tx; the delete is queued.
func (t *tx) DeleteTask(id int64) error {
	if err := t.lost(); err != nil {
		return err
	}
	i := t.index(id)
	if i < 0 {
		return nil // missing, or another execution's
	}
	t.tasks, t.taskX = slices.Delete(t.tasks, i, i+1), slices.Delete(t.taskX, i, i+1)
	return t.writeAs(mergeDelTask, "delete task", `DELETE FROM tasks WHERE id = $1`, id)
}

// claimable reports whether a task written without an owner is one that
// idle workers should hear about: not one parked until a signal wakes it.
func claimable(task *store.Task) bool {
	return task.Owner == "" && task.ReadyAt.Year() < 9999
}
