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
// forced as for the group's reads.

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
	full, progress, end := map[string]int{}, map[string]int{}, map[string]int{} // updates per execution
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
		case mergeExec:
			full[q.args[0].(string)]++
		case mergeProgress:
			progress[q.args[0].(string)]++
		case mergeEnd:
			end[q.args[0].(string)]++
		case touchSteps:
			stepsOK = false
		}
	}
	for _, q := range seg {
		if (q.kind == mergeDelTask || q.kind == mergePutTask) && added[q.args[0].(int64)] {
			tasksOK = false
		}
	}
	// An execution with more than one kind of update keeps them in their
	// order, unmerged; the others' merge.
	mixed := map[string]bool{}
	for _, kinds := range []map[string]int{full, progress, end} {
		for id := range kinds {
			n := 0
			for _, k := range []map[string]int{full, progress, end} {
				if k[id] > 0 {
					n++
				}
			}
			if n > 1 {
				mixed[id] = true
			}
		}
	}
	for id := range mixed {
		delete(full, id)
		delete(progress, id)
		delete(end, id)
	}
	mergeSteps, mergeTasks := stepsOK && steps > 1, tasksOK && (adds > 1 || puts > 1 || dels > 1)
	mergeExecs, mergeProgs, mergeEnds := rowsOf(full) > 1, rowsOf(progress) > 1, rowsOf(end) > 1
	if !mergeSteps && !mergeTasks && !mergeExecs && !mergeProgs && !mergeEnds {
		return append(out, seg...)
	}
	var stepRows, addRows, putRows, execRows, progRows, endRows [][]any
	var newStep []bool // of stepRows: an insert
	var delIDs []int64
	stepAt, execAt, progAt, endAt, putAt := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	for _, q := range seg {
		switch {
		case (q.kind == mergeStep || q.kind == mergeNewStep) && mergeSteps:
			// A step inserted and then updated is inserted as it ended.
			n := len(stepRows)
			stepRows = latest(stepRows, stepAt, q.args[0].(string)+"\x00"+q.args[1].(string), q.args)
			if len(stepRows) > n {
				newStep = append(newStep, q.kind == mergeNewStep)
			}
		case q.kind == mergeAddTask && mergeTasks:
			addRows = append(addRows, q.args)
		case q.kind == mergePutTask && mergeTasks:
			putRows = latest(putRows, putAt, strconv.FormatInt(q.args[0].(int64), 10), q.args)
		case q.kind == mergeDelTask && mergeTasks:
			delIDs = append(delIDs, q.args[0].(int64))
		case q.kind == mergeExec && mergeExecs && !mixed[q.args[0].(string)]:
			execRows = latest(execRows, execAt, q.args[0].(string), q.args)
		case q.kind == mergeProgress && mergeProgs && !mixed[q.args[0].(string)]:
			progRows = latest(progRows, progAt, q.args[0].(string), q.args)
		case q.kind == mergeEnd && mergeEnds && !mixed[q.args[0].(string)]:
			endRows = latest(endRows, endAt, q.args[0].(string), q.args)
		default:
			out = append(out, q)
		}
	}
	if len(execRows) > 0 {
		out = append(out, stmt{op: "put executions", sql: sqlPutExecs, args: columns(execTypes, execRows)})
	}
	if len(progRows) > 0 {
		out = append(out, stmt{op: "put progress", sql: sqlPutProgs, args: columns(progressTypes, progRows)})
	}
	if len(endRows) > 0 {
		out = append(out, stmt{op: "put ends", sql: sqlPutEnds, args: columns(endTypes, endRows)})
	}
	var newRows, oldRows [][]any
	for i, r := range stepRows {
		if newStep[i] {
			newRows = append(newRows, r)
		} else {
			oldRows = append(oldRows, r)
		}
	}
	if len(newRows) > 0 {
		out = append(out, stmt{op: "add steps", sql: sqlAddSteps, args: columns(stepTypes, newRows)})
	}
	if len(oldRows) > 0 {
		out = append(out, stmt{op: "put steps", sql: sqlPutSteps, args: columns(stepTypes, oldRows)})
	}
	if len(addRows) > 0 {
		out = append(out, stmt{op: "add tasks", sql: sqlAddTasks, args: columns(taskTypes, addRows)})
	}
	if len(putRows) > 0 {
		out = append(out, stmt{op: "put tasks", sql: sqlPutTasks, args: columns(putTaskTypes, putRows)})
	}
	if len(delIDs) > 0 {
		out = append(out, stmt{op: "delete tasks", sql: sqlDelTasks, args: []any{intArray(delIDs)}})
	}
	return out
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

// rowsOf counts the updates in a count per key.
func rowsOf(per map[string]int) int {
	n := 0
	for _, c := range per {
		n += c
	}
	return n
}

// latest adds row under key to rows, or replaces the row already there:
// of two writes of one row, the later wins, as it would have.
func latest(rows [][]any, at map[string]int, key string, row []any) [][]any {
	if i, ok := at[key]; ok {
		rows[i] = row
		return rows
	}
	at[key] = len(rows)
	return append(rows, row)
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
