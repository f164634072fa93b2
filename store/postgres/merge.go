package postgres

import (
	"fmt"
	"strconv"
	"strings"
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
	sqlPutTasks = `UPDATE tasks t SET step = u.step, kind = u.kind, ready_at = u.ready_at, owner = u.owner,
		lease_until = u.lease_until, attempt = u.attempt, claims = u.claims, queue = u.queue, worker = u.worker
		FROM ` + putTaskTypes.unnest() + ` AS u(id, step, kind, ready_at, owner, lease_until, attempt, claims, queue, worker)
		WHERE t.id = u.id`
	sqlPutExecs = putExecsSQL()
	sqlPutProgs = `UPDATE executions e SET seq = u.seq, updated_at = u.updated_at FROM ` + progressTypes.unnest() +
		` AS u(id, seq, updated_at) WHERE e.id = u.id`
	sqlPutEnds = `UPDATE executions e SET status = u.status, result_type = u.result_type, result_data = u.result_data,
		error = u.error, finished_at = u.finished_at, seq = u.seq, updated_at = u.updated_at FROM ` + endTypes.unnest() +
		` AS u(id, status, result_type, result_data, error, finished_at, seq, updated_at) WHERE e.id = u.id`
)

func putExecsSQL() string {
	cols := strings.Split(execCols, ",")
	var set []string
	for i, c := range cols {
		c = strings.TrimSpace(c)
		cols[i] = c
		switch {
		case c == "id":
		case execTypes[i] == "jsonb":
			set = append(set, c+" = u."+c+"::jsonb")
		default:
			set = append(set, c+" = u."+c)
		}
	}
	return `UPDATE executions e SET ` + strings.Join(set, ", ") + ` FROM ` + execTypes.unnest() +
		` AS u(` + strings.Join(cols, ", ") + `) WHERE e.id = u.id`
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
		return append(out, stmt{op: "delete tasks", sql: sqlDelTasks, args: []any{intArray(ids)}})
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
	return append(out, stmt{op: op, sql: sql, args: columns(tb, rs)})
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
