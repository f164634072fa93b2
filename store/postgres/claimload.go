package postgres

import (
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// claimedLoad is what ClaimNext read of the claimed tasks' executions, by
// execution, with the row versions that make up their digests.
type claimedLoad struct {
	execs   map[string]*known
	journal map[[2]string][]store.JournalEntry // by execution and step
}

// queueClaimedLoad queues the reads of the claimed tasks' executions.
func queueClaimedLoad(b *pgx.Batch) {
	b.Queue(sqlClaimedExecs)
	b.Queue(sqlClaimedSteps)
	b.Queue(sqlClaimedTasks)
	b.Queue(sqlClaimedJournal)
}

// readClaimedLoad reads what queueClaimedLoad queued.
func readClaimedLoad(br pgx.BatchResults) (*claimedLoad, error) {
	l := &claimedLoad{execs: map[string]*known{}, journal: map[[2]string][]store.JournalEntry{}}
	err := readVersioned(br, l.execs)
	if err == nil {
		err = eachRow(br, func(r pgx.CollectableRow) error {
			e, err := scanEntry(r)
			k := [2]string{e.Exec, e.Step}
			l.journal[k] = append(l.journal[k], e)
			return err
		})
	}
	return l, err
}

// readVersioned reads three results into execs: executions (with their
// signal counters and watchers), then steps, then tasks, the executions
// and tasks with their versions (xmin; the steps need none, see
// known.digest), the steps in bytewise name order and the tasks in ID
// order. Steps and tasks of executions not read are skipped.
func readVersioned(br pgx.BatchResults, execs map[string]*known) error {
	err := eachVersioned(br, func(r pgx.CollectableRow, more ...any) (*known, error) {
		x := &known{}
		e, err := scanExecAnd(r, append([]any{&x.lastSig, &x.watchers}, more...)...)
		x.exec = &e
		return x, err
	}, func(x *known, v string) {
		x.execX = v
		execs[x.exec.ID] = x
	})
	if err == nil {
		err = eachRow(br, func(r pgx.CollectableRow) error {
			s, err := scanStep(r)
			if x := execs[s.Exec]; err == nil && x != nil {
				x.steps = append(x.steps, s)
			}
			return err
		})
	}
	if err == nil {
		err = eachVersioned(br, scanTaskAnd, func(t store.Task, v string) {
			if x := execs[t.Exec]; x != nil {
				x.tasks, x.taskX = append(x.tasks, t), append(x.taskX, v)
			}
		})
	}
	return err
}

// eachVersioned calls fn for each row of br's next result, scanned with
// its version (the row's last column).
func eachVersioned[T any](br pgx.BatchResults, scan func(pgx.CollectableRow, ...any) (T, error), fn func(T, string)) error {
	var version string
	return eachRow(br, func(r pgx.CollectableRow) error {
		v, err := scan(r, &version)
		if err == nil {
			fn(v, version)
		}
		return err
	})
}

// eachRow calls fn for each row of br's next result.
func eachRow(br pgx.BatchResults, fn func(pgx.CollectableRow) error) error {
	rows, _ := br.Query()
	_, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) { return struct{}{}, fn(r) })
	return err
}

// keep keeps each execution read (see known): its tasks were just leased
// here, so this process most likely makes its next Update. What is kept
// is no longer l's: call snapshots first.
func (l *claimedLoad) keep(s *Store) {
	for id, x := range l.execs {
		s.known.put(id, x)
	}
}

// snapshots returns the snapshot of each of tasks whose execution was
// read, each with copies of its own.
func (l *claimedLoad) snapshots(tasks []store.Task) map[int64]*store.Snapshot {
	out := make(map[int64]*store.Snapshot, len(tasks))
	for _, t := range tasks {
		x := l.execs[t.Exec]
		if x == nil {
			continue
		}
		out[t.ID] = &store.Snapshot{Execution: copyExec(x.exec), Steps: cloneSteps(x.steps, 0),
			Journal: slices.Clone(l.journal[[2]string{t.Exec, t.Step}])}
	}
	return out
}
