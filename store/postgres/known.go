package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/docket-run/docket/store"
)

// Known executions. An execution's next Update often comes from the
// process that committed its last one: a worker records a step and runs
// the successor it leased to itself, then records that. The first of the
// two round trips of an Update — lock, then read the execution, its tasks
// and steps — then reads what this process already has. So the store
// keeps each execution it wrote (or claimed) with the row versions (xmin)
// of the execution and its tasks: the versions read, and for
// the rows a transaction wrote, that transaction's ID, which the commit
// returns. The next lone Update of that execution runs its fn against
// what was kept and sends everything in one round trip: BEGIN, the lock, a
// guard that recomputes the digest of the versions (row-locking the
// tasks) and fails unless it is the kept one, the writes, COMMIT. Any
// change by anyone — another process's Update, a claim, a lease extended
// — changes a row version (a step is never written without its
// execution's row, see tx.touch), so a guard that passes proves that fn
// saw exactly what is stored. A guard that fails aborts the transaction before
// anything is committed, and the Update runs again the ordinary way (so fn
// may run twice; only the last run's writes are kept). So does an Update
// whose fn needs a read of its own (the journal, the inbox): nothing has
// been sent then. A version the store gets wrong costs only that: the
// guard fails.
//
// An Update that writes over exactly the rows it knew needs no guard: its
// writes check the kept versions as they lock the rows (see checkWrites).
//
// The speculation only covers what the digest covers: the execution row
// (an added signal moves its counter; a written step moves its version),
// its tasks and so its steps. Reads of
// the journal and the inbox go to the server, and stop it.

// maxKnown bounds how many executions the store keeps.
const maxKnown = 1024

// maxKnownBytes bounds the values (inputs, result, step outputs and
// heartbeats) of one kept execution: a larger one is not kept, so that
// what the store keeps stays within maxKnown × maxKnownBytes.
const maxKnownBytes = 64 << 10

// known is an execution as this process last committed (or read) it.
type known struct {
	exec     *store.Execution // nil: it does not exist
	tasks    []store.Task     // by ID
	steps    []store.Step     // by name, bytewise
	lastSig  int64
	watchers []string
	versions
}

// versions are the row versions (xmin) of an execution's row and its
// tasks, in the order of the tasks they go with. In
// a running transaction, "" marks a row that it wrote: that row's version
// is the transaction's ID (see resolve).
type versions struct {
	execX string
	taskX []string
}

// resolve gives the rows marked written the version xid, the ID of the
// transaction that wrote them ("" if it was given none: it wrote nothing),
// and reports false when that leaves a version unknown.
func (v *versions) resolve(xid string) bool {
	ok := true
	set := func(x *string) {
		if *x == "" {
			*x = xid
		}
		ok = ok && *x != ""
	}
	set(&v.execX)
	for i := range v.taskX {
		set(&v.taskX[i])
	}
	return ok
}

// digest is sqlDigest's value for the execution as kept: the version of
// its row and each task's ID and version in ID order. The steps need no
// versions of their own: an Update that writes a step writes the row too
// (see touch). An execution that does not exist has the digest "|".
func (e *known) digest() string {
	var b strings.Builder
	if e.exec != nil {
		b.WriteString(e.execX)
	}
	b.WriteByte('|')
	for i, t := range e.tasks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(t.ID, 10))
		b.WriteByte(':')
		b.WriteString(e.taskX[i])
	}
	return b.String()
}

// knownSet holds known executions by ID. An entry is taken out to be used,
// so that two Updates never speculate on one version.
type knownSet struct {
	mu sync.Mutex
	m  map[string]*known
}

func (k *knownSet) put(id string, e *known) {
	if e.size() > maxKnownBytes {
		k.drop(id)
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*known{}
	}
	if _, ok := k.m[id]; !ok && len(k.m) >= maxKnown {
		for old := range k.m { // any one: map order is random enough
			delete(k.m, old)
			break
		}
	}
	k.m[id] = e
}

// size is about how many bytes of values e holds.
func (e *known) size() int {
	n := 0
	if x := e.exec; x != nil {
		for _, v := range x.Inputs {
			n += len(v.Data)
		}
		if x.Result != nil {
			n += len(x.Result.Data)
		}
	}
	for _, s := range e.steps {
		if s.Output != nil {
			n += len(s.Output.Data)
		}
		n += len(s.Heartbeat)
	}
	return n
}

func (k *knownSet) drop(id string) {
	k.mu.Lock()
	delete(k.m, id)
	k.mu.Unlock()
}

// takeAll takes out what is known of the executions of members, an
// execution that a Create expects not to exist counting as known absent;
// it returns nil, and forgets them all, unless every one is known.
func (k *knownSet) takeAll(members []*request) []*known {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]*known, len(members))
	all := true
	for i, m := range members {
		out[i] = k.m[m.id]
		delete(k.m, m.id)
		if out[i] == nil && m.absent {
			out[i] = &known{} // its digest is "|"
		}
		all = all && out[i] != nil
	}
	if !all {
		return nil
	}
	return out
}

// sqlDigest is the digest of execution $1 (see known.digest): the
// versions of its row and of its tasks. It locks the tasks' rows, as the
// group's read does.
var sqlDigest = `SELECT ` + digestOf("$1", " FOR UPDATE")

// digestOf is the expression of the digest of the execution whose ID is
// the expression id.
func digestOf(id, lock string) string {
	return `coalesce((SELECT xmin::text FROM executions WHERE id = ` + id + `), '') || '|' ||
	coalesce((SELECT string_agg(t.id::text || ':' || t.xmin::text, ',' ORDER BY t.id)
		FROM (SELECT id, xmin FROM tasks WHERE exec = ` + id + ` ORDER BY id` + lock + `) t), '')`
}

// sqlGroupGuard is the guard of a group that speculates (see speculate):
// $1 the members' IDs, $2 their digests. It locks all the members' tasks
// first, in ID order, as every statement that locks tasks takes them, so
// that none deadlocks with another; and it takes the tasks' versions from
// the rows it locked, the latest ones.
var (
	sqlGroupGuard = `WITH t AS MATERIALIZED (SELECT exec, id, xmin FROM tasks WHERE exec = ANY($1::text[])
		ORDER BY id FOR UPDATE)
	SELECT 1 / (CASE WHEN bool_and((coalesce((SELECT xmin::text FROM executions WHERE id = u.id), '') || '|' ||
		coalesce((SELECT string_agg(t.id::text || ':' || t.xmin::text, ',' ORDER BY t.id) FROM t WHERE t.exec = u.id), ''))
		= u.d) THEN 1 ELSE 0 END)` + groupGuardFrom
	groupGuardFrom = ` FROM unnest($1::text[], $2::text[]) AS u(id, d)`
)

// sqlPlans plans the rest of a transaction that takes no lock as sqlLock
// does.
const sqlPlans = `SELECT ` + indexPlans

// sqlGuard fails with a division by zero unless the digest of execution $1
// is $2; the tasks' rows stay locked, as the group's read locks them.
var sqlGuard = `SELECT 1 / (CASE WHEN (` + sqlDigest + `) = $2 THEN 1 ELSE 0 END)`

// The guards of a transaction that will write and keep what it wrote also
// give it its ID (see sqlXid), which saves a statement.
var (
	sqlGuardXid      = sqlGuard + `, ` + xidNow
	sqlGroupGuardXid = strings.TrimSuffix(sqlGroupGuard, groupGuardFrom) + `, ` + xidNow + groupGuardFrom
)

// sqlXid reads the ID of the transaction, if it was given one (it wrote
// something), as xmin shows it: the version of every row it wrote.
// xidNow gives the transaction its ID at once.
const (
	sqlXid = `SELECT pg_current_xact_id_if_assigned()::xid::text`
	xidNow = `pg_current_xact_id()::xid::text`
)

// errNeedRead stops a speculative fn that asked for a read.
var errNeedRead = errors.New("postgres: the update needs a read")

// keep records what t committed in the transaction xid (see sqlXid), or
// forgets the execution when that cannot be told. It is only called (see
// leasedHere) when this process is likely to make the execution's next
// Update: a worker of this process holds a lease on one of its tasks. (A
// client that started an execution, or sent it a signal, would find it
// changed by the worker that runs it, and speculating would cost it a
// round trip.)
func (s *Store) keep(t *tx, xid string) {
	if t.exec == nil || !t.versions.resolve(xid) || t.g.savepoint {
		// Rows written after a savepoint carry the ID of a
		// subtransaction, which the store does not know.
		s.known.drop(t.id)
		return
	}
	// The execution's record is kept as it is: the store never changes one
	// in place (a write makes a new record, see PutExecution), and Execution
	// hands out copies. Tasks and steps are changed in place, and the
	// transaction's may share their array with other executions' (read in
	// one group), so they are copied.
	// The next Update of an execution kept usually adds a step's record
	// (its next step's): the steps get room for it.
	s.known.put(t.id, &known{exec: t.exec, tasks: slices.Clone(t.tasks), steps: cloneSteps(t.steps, 1),
		lastSig: t.lastSig, watchers: t.watchers, versions: t.versions})
}

// leasedHere reports whether one of tasks is leased to a worker of this
// process (one that has claimed or extended leases through this store).
func (s *Store) leasedHere(tasks []store.Task) bool {
	for _, t := range tasks {
		if t.Owner != "" {
			if _, ok := s.owners.Load(t.Owner); ok {
				return true
			}
		}
	}
	return false
}

// cloneSteps copies steps, with room for that many more.
func cloneSteps(steps []store.Step, room int) []store.Step {
	out := make([]store.Step, len(steps), len(steps)+room)
	for i := range steps {
		out[i] = steps[i].Clone()
	}
	return out
}

// queueXid queues sqlXid if there are executions to keep.
func queueXid(b *pgx.Batch, keep []*tx) {
	if len(keep) > 0 {
		b.Queue(sqlXid)
	}
}

// readXid reads what queueXid queued.
func readXid(br pgx.BatchResults, keep []*tx) (string, error) {
	if len(keep) == 0 {
		return "", nil
	}
	var xid *string
	err := br.QueryRow().Scan(&xid)
	if xid == nil {
		return "", err
	}
	return *xid, err
}

// speculate runs members against ks, what this process last committed
// (or read) of their executions, in one round trip on conn. It reports
// false when they must run the ordinary way instead: an fn needed a read
// or failed, or the guard found an execution changed. Either way nothing
// was committed. A group speculates only when every member's execution
// is known; its guard checks all of them, and one changed execution sends
// the whole group the ordinary way.
func (s *Store) speculate(ctx context.Context, conn *pgx.Conn, members []*request, ctxs []context.Context, ks []*known) bool {
	g := &group{s: s, ctx: ctx, conn: conn, queue: make([]stmt, 0, 8*len(members))}
	txs := make([]*tx, len(members))
	digests := make([]string, len(members)) // of what fn starts from: it changes ks
	// The versions kept, by row, for checked writes.
	execVs, taskVs := make(map[string]string, len(members)), make(map[int64]string, len(members))
	var notices []notice
	for i, m := range members {
		k := ks[i]
		digests[i] = k.digest()
		if k.exec != nil {
			execVs[m.id] = k.execX
		}
		for j, task := range k.tasks {
			taskVs[task.ID] = k.taskX[j]
		}
		t := &tx{g: g, s: s, id: m.id, exec: k.exec, tasks: k.tasks, steps: k.steps, lastSig: k.lastSig, watchers: k.watchers,
			versions: k.versions, spec: true}
		txs[i] = t
		if err := ctxs[i].Err(); err != nil {
			if len(members) > 1 {
				return false // the ordinary way sorts out whose context ended
			}
			m.err = s.ctxErr(ctxs[i], "update", err)
			return true
		}
		// Whatever fn decided from what was kept is only good once the
		// guard confirms it: a failure or a panic, too, runs again the
		// ordinary way.
		if err := runFn(m, t); err != nil || m.panicked || t.needRead || t.bad != nil || t.touch() != nil {
			for _, m := range members[:i+1] {
				m.err, m.panicked, m.pval = nil, false, nil
			}
			return false
		}
		notices = append(notices, t.notice())
	}
	// Members that all create their execution need neither locks nor a
	// guard: the insert of an execution that exists after all fails on
	// its primary key, and that too sends them the ordinary way.
	creating := true
	for i, t := range txs {
		creating = creating && ks[i].exec == nil && t.exec != nil
	}
	var keep []*tx
	for _, t := range txs {
		if s.leasedHere(t.tasks) {
			keep = append(keep, t)
		}
	}
	queued := merge(g.queue)
	// Writes that check every kept row need no guard (see checkWrites),
	// when every member also has a row to check: one it knew, or the
	// execution it creates (whose insert fails if it exists after all). A
	// member that found its execution absent and left it so has none.
	checked := !creating
	for i, t := range txs {
		checked = checked && (ks[i].exec != nil || t.exec != nil)
	}
	if checked {
		var cq []stmt
		if cq, checked = checkWrites(queued, execVs, taskVs); checked {
			queued = cq
		}
	}
	// The transaction's ID is wanted if it writes rows to keep; the guard
	// (or the lock, with checked writes) asks for it, or a statement of its
	// own when there is neither.
	wantXid := len(keep) > 0 && len(queued) > 0
	lockSQL, locksSQL, guardSQL, groupGuardSQL := sqlLock, sqlLocks, sqlGuard, sqlGroupGuard
	if wantXid {
		lockSQL, locksSQL, guardSQL, groupGuardSQL = sqlLockXid, sqlLocksXid, sqlGuardXid, sqlGroupGuardXid
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	switch {
	case creating:
		// Nothing to lock or check; the writes are planned as in every
		// Update (a plan is made once per connection, see Connections).
		b.Queue(sqlPlans)
	case len(members) == 1 && checked:
		b.Queue(lockSQL, members[0].key)
	case len(members) == 1:
		b.Queue(sqlLock, members[0].key)
		b.Queue(guardSQL, members[0].id, digests[0])
	default:
		ids, keys := make([]string, len(members)), make([]int64, len(members))
		for i, m := range members {
			ids[i], keys[i] = m.id, m.key
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		if checked {
			b.Queue(locksSQL, intArray(keys))
		} else {
			b.Queue(sqlLocks, intArray(keys))
			b.Queue(groupGuardSQL, textArray(ids), textArray(digests))
		}
	}
	guard := len(b.QueuedQueries) - 1 // the guard, or the lock of checked writes
	for _, q := range queued {
		b.Queue(q.sql, q.args...)
	}
	nf := queueNotifies(b, s.channel, notices)
	if creating && wantXid {
		b.Queue(sqlXid)
	}
	reserve := s.ids.wanted() // as the ordinary first round trip does
	if reserve > 0 {
		s.queueReserve(b, reserve)
	}
	b.Queue("COMMIT")
	stale := false
	var xid string
	br := conn.SendBatch(ctx, b)
	failed := "begin"
	err := func() error {
		for i := range guard + 1 {
			var err error
			switch {
			case i < guard || creating:
				_, err = br.Exec()
			case checked && wantXid: // the lock: its columns, then the ID
				err = br.QueryRow().Scan(nil, nil, nil, nil, &xid)
			case checked:
				_, err = br.Exec()
			case wantXid:
				var one int
				err = br.QueryRow().Scan(&one, &xid)
			default:
				_, err = br.Exec()
			}
			if i == guard && !creating && !checked && isCode(err, codeDivisionByZero) { // the guard
				stale = true
			}
			if err != nil {
				return err
			}
		}
		for _, q := range queued {
			failed = q.op
			if _, err := br.Exec(); err != nil {
				switch {
				case q.checked && (isCode(err, codeDivisionByZero) || isCode(err, codeDeadlock)):
					stale = true // a row changed, or was taken by another in another order
				case (creating || checked) && kind(err) == store.ErrExists:
					stale = true // an execution exists
				}
				return err
			}
		}
		failed = "commit"
		if err := nf.read(br); err != nil {
			return err
		}
		if creating && wantXid {
			if err := br.QueryRow().Scan(&xid); err != nil {
				return err
			}
		}
		if reserve > 0 {
			if err := s.takeReserved(br); err != nil {
				return err
			}
		}
		return readCommit(br)
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		g.rollback()
		if stale {
			s.stale.Add(int64(len(members)))
			return false
		}
		what := failed
		if len(members) == 1 {
			what = fmt.Sprintf("%s of execution %q", failed, members[0].id)
		}
		for _, m := range members {
			m.err = s.ctxErr(ctx, what, err)
		}
		return true
	}
	s.speculated.Add(int64(len(members)))
	if checked {
		s.checked.Add(int64(len(members)))
	}
	if len(members) > 1 {
		s.specGroups.Add(1)
	}
	for _, t := range txs {
		if slices.Contains(keep, t) {
			s.keep(t, xid)
		} else {
			s.known.drop(t.id)
		}
		s.committed(t)
	}
	s.tellLocal(nf)
	return true
}

// isCode reports whether err is the server's error code.
func isCode(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == code
}
