package postgres

import (
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// claimedLoad is what ClaimNext read of the claimed tasks' executions, by
// execution, with the row versions that make up their digests.
type claimedLoad struct {
	execs   map[string]*loadedExec
	journal map[[2]string][]store.JournalEntry // by execution and step
}

type loadedExec struct {
	exec    store.Execution
	lastSig int64
	xmin    string
	tasks   []store.Task
	taskX   []string // the tasks' row versions, in the tasks' order (by ID)
	steps   []store.Step
	stepX   []string // the steps' row versions, in the steps' order (by name)
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
	l := &claimedLoad{execs: map[string]*loadedExec{}, journal: map[[2]string][]store.JournalEntry{}}
	err := eachRow(br, func(r pgx.CollectableRow) error {
		x := &loadedExec{}
		var err error
		x.exec, err = scanExecAnd(r, &x.lastSig, &x.xmin)
		l.execs[x.exec.ID] = x
		return err
	})
	if err == nil {
		err = eachRow(br, func(r pgx.CollectableRow) error {
			var xmin string
			s, err := scanStepAnd(r, &xmin)
			if x := l.execs[s.Exec]; x != nil {
				x.steps, x.stepX = append(x.steps, s), append(x.stepX, xmin)
			}
			return err
		})
	}
	if err == nil {
		err = eachRow(br, func(r pgx.CollectableRow) error {
			var xmin string
			t, err := scanTaskAnd(r, &xmin)
			if x := l.execs[t.Exec]; x != nil {
				x.tasks, x.taskX = append(x.tasks, t), append(x.taskX, xmin)
			}
			return err
		})
	}
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

// eachRow calls fn for each row of br's next result.
func eachRow(br pgx.BatchResults, fn func(pgx.CollectableRow) error) error {
	rows, _ := br.Query()
	_, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) { return struct{}{}, fn(r) })
	return err
}

// digest is the digest of the execution as it was read: sqlDigest's,
// computed from the row versions read. The rows were read by several
// statements, so not necessarily at one moment; but a guard that finds
// this digest again finds every row read unchanged and no row added, so
// what was read is what is stored.
func (x *loadedExec) digest() string {
	var b strings.Builder
	b.WriteString(x.xmin)
	b.WriteByte('|')
	for i, t := range x.tasks {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(t.ID, 10))
		b.WriteByte(':')
		b.WriteString(x.taskX[i])
	}
	b.WriteByte('|')
	for i, s := range x.steps {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(utf8.RuneCountInString(s.Name))) // length() counts characters
		b.WriteByte(':')
		b.WriteString(s.Name)
		b.WriteByte(':')
		b.WriteString(x.stepX[i])
	}
	return b.String()
}

// keep keeps each execution read (see known): its tasks were just leased
// here, so this process most likely makes its next Update.
func (l *claimedLoad) keep(s *Store) {
	for id, x := range l.execs {
		s.known.put(id, &known{exec: copyExec(&x.exec), tasks: slices.Clone(x.tasks), steps: cloneSteps(x.steps),
			lastSig: x.lastSig, digest: x.digest()})
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
		out[t.ID] = &store.Snapshot{Execution: copyExec(&x.exec), Steps: cloneSteps(x.steps),
			Journal: slices.Clone(l.journal[[2]string{t.Exec, t.Step}])}
	}
	return out
}
