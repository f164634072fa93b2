package postgres

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Merging a group's writes. A group of Updates queues, for every step
// commit, much the same statements: upserts of steps, inserts and deletes
// of tasks, an update of the execution. Sent one by one, each costs the
// server a statement; merged, each kind costs one statement per flush,
// whatever the size of the group: the rows go as arrays and unnest turns
// them back into rows.
//
// Merging moves statements, so it only happens where moving them changes
// nothing. The queue is cut into segments at savepoints (a member's writes
// must stay after its savepoint). Within a segment:
//
//   - step writes (inserts of new steps, updates of others) merge when
//     the segment deletes no step (a delete between two writes of one
//     step would be reordered); of two writes of one step the later's
//     values win, as they would have, written by the first's kind;
//   - task inserts merge when no other statement of the segment touches
//     the tasks they insert (an update or a delete of a new task must come
//     after it); task updates and deletes merge alike (of two updates of
//     one task the later wins), the updates run after the inserts and the
//     deletes last, so that a task updated and deleted ends deleted in
//     either order;
//   - execution updates merge (the later of two for one execution wins),
//     and so do the updates of only an execution's progress, and those of
//     only its status and outcome (its end), except that an execution
//     with more than one kind in the segment keeps its own in their
//     order; an insert of the execution
//     stays before them, and the signal counter, which AddSignal moves, is
//     not among their columns.
//
// Merged statements run at the end of their segment, with index lookups
// forced as for the group's reads. A kind with a single row there goes as
// its own plain statement, in the merged one's place: unnest of one row
// costs the server about twice what the plain statement does.

// mergeKind says which merged statement a queued write can join.
type mergeKind uint8

const (
	mergeNone     mergeKind = iota
	mergeStep               // update of a step: args are stepArgs
	mergeNewStep            // insert of a step: args are stepArgs
	mergeAddTask            // insert of a task: args are its row, ID first
	mergeDelTask            // delete of a task: args are its ID
	mergePutTask            // update of a task: args are putTaskTypes, ID first
	mergeExec               // update of an execution: args are execArgs
	mergeProgress           // update of an execution's seq and updated_at: args are its ID, seq, updated_at
	mergeEnd                // update of an execution's status and outcome: args are endArgs
	touchSteps              // a delete of a step: not merged
	createExec              // an insert of an execution: not merged
	barrier                 // a savepoint or a rollback to one
)

// table describes the rows of a merged statement: the SQL type of each
// column, in the order of the statements' args.
type table []string

var (
	stepTypes = table{"text", "text", "text", "integer", "text", "bytea", "text", "text", "timestamptz", "text",
		"bytea", "bigint", "timestamptz", "timestamptz", "timestamptz", "text", "integer", "text", "text"}
	taskTypes = table{"bigint", "text", "text", "text", "timestamptz", "text", "timestamptz", "integer", "integer",
		"text", "text"}
	progressTypes = table{"text", "bigint", "timestamptz"}
	endTypes      = table{"text", "text", "text", "bytea", "text", "timestamptz", "bigint", "timestamptz"}
	putTaskTypes  = table{"bigint", "text", "text", "timestamptz", "text", "timestamptz", "integer", "integer", "text", "text"}
	execTypes     = table{"text", "integer", "text", "text", "text", "jsonb", "text", "text", "bytea", "text", "boolean",
		"timestamptz", "timestamptz", "timestamptz", "timestamptz", "bigint", "text", "text", "jsonb"}
)

// unnest returns unnest($1::type[], ...) for the table; jsonb columns go
// as text and are cast where they are used.
func (tb table) unnest() string {
	parts := make([]string, len(tb))
	for i, typ := range tb {
		if typ == "jsonb" {
			typ = "text"
		}
		parts[i] = fmt.Sprintf("$%d::%s[]", i+1, typ)
	}
	return "unnest(" + strings.Join(parts, ", ") + ")"
}

var (
	sqlAddTasks = `INSERT INTO tasks (` + taskCols + `) OVERRIDING SYSTEM VALUE SELECT * FROM ` + taskTypes.unnest()
	sqlDelTasks = `DELETE FROM tasks WHERE id = ANY($1::bigint[])`
	sqlPutTasks = mergedUpdate("tasks t", putTaskSet, putTaskTypes, putTaskCols, false)
	sqlPutExecs = mergedUpdate("executions e", execSet(), execTypes, execCols, false)
	sqlPutProgs = mergedUpdate("executions e", progressSet, progressTypes, "id, seq, updated_at", false)
	sqlPutEnds  = mergedUpdate("executions e", endSet, endTypes, endCols, false)
)

const (
	putTaskCols = "id, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker"
	putTaskSet  = `step = u.step, kind = u.kind, ready_at = u.ready_at, owner = u.owner,
		lease_until = u.lease_until, attempt = u.attempt, claims = u.claims, queue = u.queue, worker = u.worker`
	progressSet = `seq = u.seq, updated_at = u.updated_at`
	endCols     = "id, status, result_type, result_data, error, finished_at, seq, updated_at"
	endSet      = `status = u.status, result_type = u.result_type, result_data = u.result_data,
		error = u.error, finished_at = u.finished_at, seq = u.seq, updated_at = u.updated_at`
)

// mergedUpdate is the update of target ("table alias") from rows of tb
// named cols (the ID first) and setting set. A checked one (see
// checkWrites) takes one more column, v, the version (xmin) that the row
// must have, "" for any, and fails with a division by zero unless every
// row was updated.
func mergedUpdate(target, set string, tb table, cols string, checked bool) string {
	alias := target[strings.IndexByte(target, ' ')+1:]
	where := alias + `.id = u.id`
	if checked {
		tb, cols = append(slices.Clip(tb), "text"), cols+", v"
		where += ` AND (u.v = '' OR ` + alias + `.xmin::text = u.v)`
	}
	sql := `UPDATE ` + target + ` SET ` + set + ` FROM ` + tb.unnest() + ` AS u(` + cols + `) WHERE ` + where
	if checked {
		return everyRow(sql, tb[0])
	}
	return sql
}

// everyRow wraps the write sql, whose $1 holds one ID per row it must
// write, in a statement that divides by zero unless it wrote every one.
func everyRow(sql, idType string) string {
	return `WITH w AS (` + sql + ` RETURNING 1) SELECT 1 / (CASE WHEN count(*) = cardinality($1::` + idType +
		`[]) THEN 1 ELSE 0 END) FROM w`
}

// execSet is the SET list of sqlPutExecs: every column but the ID.
func execSet() string {
	var set []string
	for i, c := range strings.Split(execCols, ",") {
		c = strings.TrimSpace(c)
		switch {
		case c == "id":
		case execTypes[i] == "jsonb":
			set = append(set, c+" = u."+c+"::jsonb")
		default:
			set = append(set, c+" = u."+c)
		}
	}
	return strings.Join(set, ", ")
}

// merge returns the queue with the writes that can be merged merged.
func merge(queue []stmt) []stmt {
	if len(queue) < 2 {
		return queue // nothing to merge with
	}
	out := make([]stmt, 0, len(queue))
	start := 0
	for i, q := range queue {
		if q.kind == barrier {
			out = mergeSegment(out, queue[start:i])
			out = append(out, q)
			start = i + 1
		}
	}
	return mergeSegment(out, queue[start:])
}

// mergeSegment appends a segment of the queue to out, merged.
func mergeSegment(out, seg []stmt) []stmt {
	var steps, adds, puts, dels int
	stepsOK, tasksOK := true, true
	added := map[int64]bool{}
	// An execution with more than one kind of update keeps them in their
	// order, unmerged; the others' merge.
	kindOf, mixed := map[string]mergeKind{}, map[string]bool{}
	for _, q := range seg {
		switch q.kind {
		case mergeStep, mergeNewStep:
			steps++
		case mergeAddTask:
			adds++
			added[q.args[0].(int64)] = true
		case mergeDelTask:
			dels++
		case mergePutTask:
			puts++
		case mergeExec, mergeProgress, mergeEnd:
			id := q.args[0].(string)
			if k, ok := kindOf[id]; ok && k != q.kind {
				mixed[id] = true
			}
			kindOf[id] = q.kind
		case touchSteps:
			stepsOK = false
		}
	}
	for _, q := range seg {
		if (q.kind == mergeDelTask || q.kind == mergePutTask) && added[q.args[0].(int64)] {
			tasksOK = false
		}
	}
	execUpdates := map[mergeKind]int{} // of executions not mixed
	for _, q := range seg {
		if (q.kind == mergeExec || q.kind == mergeProgress || q.kind == mergeEnd) && !mixed[q.args[0].(string)] {
			execUpdates[q.kind]++
		}
	}
	mergeSteps, mergeTasks := stepsOK && steps > 1, tasksOK && (adds > 1 || puts > 1 || dels > 1)
	mergeExecs, mergeProgs, mergeEnds := execUpdates[mergeExec] > 1, execUpdates[mergeProgress] > 1, execUpdates[mergeEnd] > 1
	if !mergeSteps && !mergeTasks && !mergeExecs && !mergeProgs && !mergeEnds {
		return append(out, seg...)
	}
	var stepRows, addRows, putRows, delRows, execRows, progRows, endRows rows
	for _, q := range seg {
		switch {
		case (q.kind == mergeStep || q.kind == mergeNewStep) && mergeSteps:
			// A step inserted and then updated is inserted as it ended.
			stepRows.add(q.args[0].(string)+"\x00"+q.args[1].(string), q)
		case q.kind == mergeAddTask && mergeTasks:
			addRows.ws = append(addRows.ws, q)
		case q.kind == mergePutTask && mergeTasks:
			putRows.add(strconv.FormatInt(q.args[0].(int64), 10), q)
		case q.kind == mergeDelTask && mergeTasks:
			delRows.ws = append(delRows.ws, q)
		case q.kind == mergeExec && mergeExecs && !mixed[q.args[0].(string)]:
			execRows.add(q.args[0].(string), q)
		case q.kind == mergeProgress && mergeProgs && !mixed[q.args[0].(string)]:
			progRows.add(q.args[0].(string), q)
		case q.kind == mergeEnd && mergeEnds && !mixed[q.args[0].(string)]:
			endRows.add(q.args[0].(string), q)
		default:
			out = append(out, q)
		}
	}
	out = emit(out, execRows.ws, "put executions", sqlPutExecs, execTypes)
	out = emit(out, progRows.ws, "put progress", sqlPutProgs, progressTypes)
	out = emit(out, endRows.ws, "put ends", sqlPutEnds, endTypes)
	var newSteps, oldSteps []stmt
	for _, w := range stepRows.ws {
		if w.kind == mergeNewStep {
			newSteps = append(newSteps, w)
		} else {
			oldSteps = append(oldSteps, w)
		}
	}
	out = emit(out, newSteps, "add steps", sqlAddSteps, stepTypes)
	out = emit(out, oldSteps, "put steps", sqlPutSteps, stepTypes)
	out = emit(out, addRows.ws, "add tasks", sqlAddTasks, taskTypes)
	out = emit(out, putRows.ws, "put tasks", sqlPutTasks, putTaskTypes)
	if len(delRows.ws) > 1 {
		ids := make([]int64, len(delRows.ws))
		for i, w := range delRows.ws {
			ids[i] = w.args[0].(int64)
		}
		return append(out, stmt{op: "delete tasks", sql: sqlDelTasks, args: []any{intArray(ids)}, kind: mergeDelTask, merged: true})
	}
	return append(out, delRows.ws...)
}

// rows collects the writes of one kind that merge, one per key: of two
// writes of one row the later's values win, as they would have, in the
// place (and with the kind) of the first.
type rows struct {
	ws []stmt
	at map[string]int
}

func (r *rows) add(key string, q stmt) {
	if i, ok := r.at[key]; ok {
		r.ws[i].args = q.args
		return
	}
	if r.at == nil {
		r.at = map[string]int{}
	}
	r.at[key] = len(r.ws)
	r.ws = append(r.ws, q)
}

// emit appends writes of one kind to out as one statement: the write
// itself when it is alone (unnest costs the server more than a plain
// statement for one row), else the merged statement sql, its rows sent as
// one array per column of tb.
func emit(out, ws []stmt, op, sql string, tb table) []stmt {
	switch len(ws) {
	case 0:
		return out
	case 1:
		return append(out, ws[0])
	}
	rs := make([][]any, len(ws))
	for i, w := range ws {
		rs[i] = w.args
	}
	return append(out, stmt{op: op, sql: sql, args: columns(tb, rs), kind: ws[0].kind, merged: true})
}

// textColumn returns column j of rows as a textArray, or as a
// nullTextArray when it holds a NULL (most text columns have none).
func textColumn(rows [][]any, j int) any {
	strs := make(textArray, len(rows))
	for i, r := range rows {
		switch v := r[j].(type) {
		case nil:
			return nullableText(rows, j)
		case string:
			strs[i] = v
		default: // a named string type
			strs[i] = fmt.Sprint(v)
		}
	}
	return strs
}

// nullableText is textColumn for a column with NULLs.
func nullableText(rows [][]any, j int) nullTextArray {
	col := make(nullTextArray, len(rows))
	for i, r := range rows {
		switch v := r[j].(type) {
		case nil:
		case string:
			col[i] = &v
		default:
			s := fmt.Sprint(v)
			col[i] = &s
		}
	}
	return col
}

// columns turns rows into one array argument per column.
func columns(tb table, rows [][]any) []any {
	args := make([]any, len(tb))
	for j, typ := range tb {
		switch typ {
		case "text":
			args[j] = textColumn(rows, j)
		case "jsonb":
			col := make(byteaArray, len(rows)) // sent as text[], without a copy
			for i, r := range rows {
				col[i] = r[j].([]byte)
			}
			args[j] = col
		case "integer", "bigint":
			col := make(intArray, len(rows))
			for i, r := range rows {
				switch v := r[j].(type) {
				case int:
					col[i] = int64(v)
				case int64:
					col[i] = v
				}
			}
			args[j] = col
		case "bytea":
			col := make(byteaArray, len(rows))
			for i, r := range rows {
				if b, ok := r[j].([]byte); ok {
					col[i] = b
				}
			}
			args[j] = col
		case "timestamptz":
			col := make(timeArray, len(rows))
			for i, r := range rows {
				col[i] = r[j].(time.Time)
			}
			args[j] = col
		case "boolean":
			col := make(boolArray, len(rows))
			for i, r := range rows {
				col[i] = r[j].(bool)
			}
			args[j] = col
		default:
			panic("postgres: no column type " + typ)
		}
	}
	return args
}

// Checked writes. A speculative group (see Store.speculate) whose writes
// touch no kept row but through the updates and deletes below needs no
// guard: each such write checks, as it locks the row, that the row still
// has the version that was kept, and fails the transaction (a division by
// zero, as the guard does) when one has changed or gone. The writes are
// first write of a row carries the check (later ones find it written by
// the transaction itself), in a merged statement, or in a lone one as it is.
var checkedWrites = map[mergeKind]struct {
	tb  table
	sql string
}{
	mergePutTask:  {putTaskTypes, mergedUpdate("tasks t", putTaskSet, putTaskTypes, putTaskCols, true)},
	mergeDelTask:  {table{"bigint"}, everyRow(`DELETE FROM tasks t USING unnest($1::bigint[], $2::text[]) AS u(id, v) WHERE t.id = u.id AND (u.v = '' OR t.xmin::text = u.v)`, "bigint")},
	mergeExec:     {execTypes, mergedUpdate("executions e", execSet(), execTypes, execCols, true)},
	mergeProgress: {progressTypes, mergedUpdate("executions e", progressSet, progressTypes, "id, seq, updated_at", true)},
	mergeEnd:      {endTypes, mergedUpdate("executions e", endSet, endTypes, endCols, true)},
}

// checkWrites returns the merged queue with its updates and deletes of
// executions and tasks checked against the kept versions of execs (by
// execution ID) and tasks (by task ID), and reports whether that checks
// every kept row and the queue writes nothing else that a guard would be
// needed for: only steps, new tasks, new executions (whose inserts fail on
// the primary key if they exist after all) and the writes above.
// It deletes from execs and tasks the rows it checks.
func checkWrites(queue []stmt, execs map[string]string, tasks map[int64]string) ([]stmt, bool) {
	out := make([]stmt, len(queue))
	for i, q := range queue {
		switch q.kind {
		case mergeStep, mergeNewStep, mergeAddTask, createExec:
			out[i] = q
			continue
		}
		c, ok := checkedWrites[q.kind]
		if !ok {
			return nil, false
		}
		if !q.merged && strings.HasSuffix(q.sql, "WHERE id = $1") {
			// A lone write: checked as it is, if it is its row's first.
			var v string
			switch id := q.args[0].(type) {
			case string:
				v = execs[id]
				delete(execs, id)
			case int64:
				v = tasks[id]
				delete(tasks, id)
			default:
				return nil, false
			}
			out[i] = q
			if v != "" {
				out[i].sql = checkedLone(q.sql, len(q.args))
				out[i].args, out[i].checked = append(slices.Clip(q.args), v), true
			}
			continue
		}
		cols := q.args
		if !q.merged {
			cols = columns(c.tb, [][]any{q.args})
		}
		var v textArray
		switch ids := cols[0].(type) {
		case textArray:
			v = make(textArray, len(ids))
			for j, id := range ids {
				v[j] = execs[id]
				delete(execs, id)
			}
		case intArray:
			v = make(textArray, len(ids))
			for j, id := range ids {
				v[j] = tasks[id]
				delete(tasks, id)
			}
		default:
			return nil, false
		}
		out[i] = stmt{op: q.op, sql: c.sql, args: append(slices.Clip(cols), v), kind: q.kind, merged: true, checked: true}
	}
	if len(execs) > 0 || len(tasks) > 0 {
		return nil, false
	}
	out, ok := rowsFirst(out)
	return out, ok && taskLockOrder(out)
}

// rowsFirst moves the writes of executions' rows ahead of the others, in
// their order, so that a changed row fails its check before another write
// can fail on what changed with it (a step that fn took for a new one fails
// on its key; the row's version covers the steps). It moves no write of an
// execution created in the transaction (that stays after its insert), and
// reports false when a write holds rows of both kinds.
func rowsFirst(queue []stmt) ([]stmt, bool) {
	created := map[string]bool{}
	for _, q := range queue {
		if q.kind == createExec {
			created[q.args[0].(string)] = true
		}
	}
	front := make([]stmt, 0, len(queue))
	var rest []stmt
	for _, q := range queue {
		switch q.kind {
		case mergeExec, mergeProgress, mergeEnd:
			ids := []string{}
			if q.merged {
				ids = q.args[0].(textArray)
			} else if id, ok := q.args[0].(string); ok {
				ids = []string{id}
			}
			n := 0
			for _, id := range ids {
				if created[id] {
					n++
				}
			}
			if n == 0 {
				front = append(front, q)
				continue
			}
			if n < len(ids) {
				return nil, false
			}
		}
		rest = append(rest, q)
	}
	return append(front, rest...), true
}

// taskLockOrder puts the updates and deletes of tasks in queue (checked,
// see checkWrites) in an order that locks the rows by ascending ID, and
// reports false when no order does. Without a guard, these writes are
// what lock a group's tasks, and ExtendLeases and Release lock a worker's
// tasks in ID order: a write that took a higher ID before a lower one
// could deadlock with them. A merged write's rows are sorted (the server
// takes them in the order sent); whole statements move only among the
// positions of such writes, and only when no task is written twice or
// added in the same transaction, so that moving them changes nothing.
func taskLockOrder(queue []stmt) bool {
	var at []int      // positions of task updates and deletes
	var ids [][]int64 // the IDs that each one locks, ascending
	for i, q := range queue {
		if q.kind != mergePutTask && q.kind != mergeDelTask {
			continue
		}
		at = append(at, i)
		if q.merged {
			ids = append(ids, sortRows(q.args)[0].(intArray))
		} else {
			ids = append(ids, []int64{q.args[0].(int64)})
		}
	}
	ascending := func() bool {
		var last int64 = -1
		for _, s := range ids {
			for _, id := range s {
				if id <= last {
					return false
				}
				last = id
			}
		}
		return true
	}
	if ascending() {
		return true
	}
	seen := map[int64]bool{} // tasks written, then also those inserted
	for _, s := range ids {
		for _, id := range s {
			if seen[id] {
				return false // a task written twice: its writes keep their order
			}
			seen[id] = true
		}
	}
	for _, q := range queue {
		if q.kind != mergeAddTask {
			continue
		}
		added := []int64{0}
		if q.merged {
			added = q.args[0].(intArray)
		} else {
			added[0] = q.args[0].(int64)
		}
		for _, id := range added {
			if seen[id] {
				return false // a new task: its writes stay after its insert
			}
		}
	}
	moved := make([]stmt, len(at))
	order := make([]int, len(at))
	for k := range order {
		order[k] = k
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(ids[a][0], ids[b][0]) })
	sorted := make([][]int64, len(at))
	for k, o := range order {
		moved[k], sorted[k] = queue[at[o]], ids[o]
	}
	ids = sorted
	if !ascending() {
		return false // their ranges interleave
	}
	for k, i := range at {
		queue[i] = moved[k]
	}
	return true
}

// sortRows sorts the rows of a merged write (its columns, the IDs first,
// as intArray, all made for this write) by ascending ID, in place.
func sortRows(cols []any) []any {
	r := rowSorter{ids: cols[0].(intArray)}
	if !slices.IsSorted(r.ids) {
		for _, c := range cols {
			r.swaps = append(r.swaps, reflect.Swapper(c))
		}
		sort.Sort(r)
	}
	return cols
}

// rowSorter sorts the columns of a merged write together, by ID.
type rowSorter struct {
	ids   intArray
	swaps []func(i, j int) // one per column, IDs among them
}

func (r rowSorter) Len() int           { return len(r.ids) }
func (r rowSorter) Less(i, j int) bool { return r.ids[i] < r.ids[j] }
func (r rowSorter) Swap(i, j int) {
	for _, swap := range r.swaps {
		swap(i, j)
	}
}

// checkedLones holds checkedLone's statements by the write they check:
// a few, one per kind of lone write.
var checkedLones sync.Map

// checkedLone returns the lone write sql (of n arguments, ending with
// "WHERE id = $1") checked against the version in argument n+1: it
// divides by zero unless it wrote its row.
func checkedLone(sql string, n int) string {
	if c, ok := checkedLones.Load(sql); ok {
		return c.(string)
	}
	c := `WITH w AS (` + sql + ` AND xmin::text = $` + strconv.Itoa(n+1) + ` RETURNING 1) SELECT 1 / count(*) FROM w`
	checkedLones.Store(sql, c)
	return c
}
