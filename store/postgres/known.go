package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/docket-run/docket/store"
)

// Known executions. An execution's next Update often comes from the
// process that committed its last one: a worker records a step and runs
// the successor it leased to itself, then records that. The first of the
// two round trips of an Update — lock, then read the execution, its tasks
// and steps — then reads what this process already has. So when an Update
// runs alone, the store commits each execution it wrote with a digest of
// the row versions (xmin) of the execution, its tasks and its steps, and
// keeps what it wrote. The next lone Update of that execution runs its fn
// against what was kept and sends everything in one round trip: BEGIN,
// the lock, a guard that recomputes the digest (row-locking the tasks) and
// fails unless it is unchanged, the writes, COMMIT. Any change by anyone —
// another process's Update, a claim, a lease extended — changes a row
// version, so a guard that passes proves that fn saw exactly what is
// stored. A guard that fails aborts the transaction before anything is
// committed, and the Update runs again the ordinary way (so fn may run
// twice; only the last run's writes are kept). So does an Update whose fn
// needs a read of its own (the journal, the inbox): nothing has been sent
// then.
//
// The speculation only covers what the digest covers: the execution row
// (an added signal moves its counter), its tasks and its steps. Reads of
// the journal and the inbox go to the server, and stop it.

// maxKnown bounds how many executions the store keeps.
const maxKnown = 1024

// known is an execution as this process last committed it.
type known struct {
	exec    *store.Execution
	tasks   []store.Task
	steps   []store.Step
	lastSig int64
	digest  string
}

// knownSet holds known executions by ID. An entry is taken out to be used,
// so that two Updates never speculate on one version.
type knownSet struct {
	mu sync.Mutex
	m  map[string]*known
}

func (k *knownSet) take(id string) *known {
	k.mu.Lock()
	defer k.mu.Unlock()
	e := k.m[id]
	delete(k.m, id)
	return e
}

func (k *knownSet) put(id string, e *known) {
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

func (k *knownSet) drop(id string) {
	k.mu.Lock()
	delete(k.m, id)
	k.mu.Unlock()
}

// dropAll forgets the executions of members, under one lock.
func (k *knownSet) dropAll(members []*request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if len(k.m) == 0 {
		return
	}
	for _, m := range members {
		delete(k.m, m.id)
	}
}

// sqlDigest is the digest of execution $1: the versions of its row, its
// tasks' and its steps'. Step names are length-prefixed, so that no two
// different sets of rows give one digest. It locks the tasks' rows, as
// the group's read does; sqlReadDigest, for read-only transactions, does
// not.
var (
	sqlDigest     = digestSQL(" FOR UPDATE")
	sqlReadDigest = digestSQL("")
)

func digestSQL(lock string) string {
	return `SELECT coalesce((SELECT xmin::text FROM executions WHERE id = $1), '') || '|' ||
	coalesce((SELECT string_agg(t.id::text || ':' || t.xmin::text, ',' ORDER BY t.id)
		FROM (SELECT id, xmin FROM tasks WHERE exec = $1 ORDER BY id` + lock + `) t), '') || '|' ||
	coalesce((SELECT string_agg(length(name)::text || ':' || name || ':' || xmin::text, ',' ORDER BY name)
		FROM steps WHERE exec = $1), '')`
}

// absentDigest is the digest of an execution that does not exist.
const absentDigest = "||"

// sqlGuard fails with a division by zero unless the digest of execution $1
// is $2; the tasks' rows stay locked, as the group's read locks them.
var sqlGuard = `SELECT 1 / (CASE WHEN (` + sqlDigest + `) = $2 THEN 1 ELSE 0 END)`

// errNeedRead stops a speculative fn that asked for a read.
var errNeedRead = errors.New("postgres: the update needs a read")

// keep records what the lone member t committed, with its digest, or
// forgets the execution when there is no digest. The digest is only read
// (see leasedHere) when this process is likely to make the execution's
// next Update: a worker of this process holds a lease on one of its
// tasks. (A client that started an execution, or sent it a signal, would
// find it changed by the worker that runs it, and speculating would cost
// it a round trip.)
func (s *Store) keep(t *tx, digest string) {
	if t.exec == nil || digest == "" {
		s.known.drop(t.id)
		return
	}
	s.known.put(t.id, &known{exec: copyExec(t.exec), tasks: slices.Clone(t.tasks), steps: cloneSteps(t.steps),
		lastSig: t.lastSig, digest: digest})
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

func cloneSteps(steps []store.Step) []store.Step {
	out := make([]store.Step, len(steps))
	for i := range steps {
		out[i] = steps[i].Clone()
	}
	return out
}

// queueDigest queues the digest of execution id, in a transaction that
// plans with index lookups (see sqlIndexPlans).
func queueDigest(b *pgx.Batch, id string) {
	b.Queue(sqlDigest, id)
}

// readDigest reads what queueDigest queued.
func readDigest(br pgx.BatchResults) (string, error) {
	var d string
	err := br.QueryRow().Scan(&d)
	return d, err
}

// speculate runs m against k, what this process last committed of its
// execution, in one round trip on conn. It reports false when m must run
// the ordinary way instead: its fn needed a read, or the guard found the
// execution changed. Either way nothing was committed.
func (s *Store) speculate(ctx context.Context, conn *pgx.Conn, m *request, mctx context.Context, k *known) bool {
	g := &group{s: s, ctx: ctx, conn: conn, queue: make([]stmt, 0, 8)}
	t := &tx{g: g, s: s, id: m.id, exec: k.exec, tasks: k.tasks, steps: k.steps, lastSig: k.lastSig, spec: true}
	if err := mctx.Err(); err != nil {
		m.err = s.ctxErr(mctx, "update", err)
		return true
	}
	// Whatever fn decided from what was kept is only good once the guard
	// confirms it: a failure or a panic, too, runs again the ordinary way.
	if err := runFn(m, t); err != nil || m.panicked || t.needRead || t.bad != nil {
		m.err, m.panicked, m.pval = nil, false, nil
		return false
	}
	payload := t.payload()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLock, m.key)
	b.Queue(sqlIndexPlans)
	b.Queue(sqlGuard, m.id, k.digest)
	queued := merge(g.queue)
	for _, q := range queued {
		b.Queue(q.sql, q.args...)
	}
	if payload != "" {
		b.Queue(sqlNotify, s.channel, payload)
	}
	keep := s.leasedHere(t.tasks)
	if keep {
		queueDigest(b, m.id)
	}
	reserve := s.ids.wanted() // as the ordinary first round trip does
	if reserve > 0 {
		s.queueReserve(b, reserve)
	}
	b.Queue("COMMIT")
	stale, digest := false, ""
	br := conn.SendBatch(ctx, b)
	failed := "begin"
	err := func() error {
		for i := range 4 {
			_, err := br.Exec()
			if i == 3 {
				var pe *pgconn.PgError
				if errors.As(err, &pe) && pe.Code == "22012" { // division_by_zero: the guard
					stale = true
				}
			}
			if err != nil {
				return err
			}
		}
		for _, q := range queued {
			failed = q.op
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		failed = "commit"
		if payload != "" {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		if keep {
			var err error
			if digest, err = readDigest(br); err != nil {
				return err
			}
		}
		if reserve > 0 {
			if err := s.takeReserved(br); err != nil {
				return err
			}
		}
		tag, err := br.Exec()
		if err == nil && tag.String() != "COMMIT" {
			err = errors.New("the server rolled the transaction back")
		}
		return err
	}()
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		g.rollback()
		if stale {
			s.stale.Add(1)
			return false
		}
		m.err = s.ctxErr(ctx, fmt.Sprintf("%s of execution %q", failed, m.id), err)
		return true
	}
	s.speculated.Add(1)
	s.keep(t, digest)
	return true
}
