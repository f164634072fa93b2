package postgres

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

func ops(q []stmt) string {
	var out []string
	for _, s := range q {
		out = append(out, s.op)
	}
	return strings.Join(out, ",")
}

func stepW(exec, name string) stmt {
	return stmt{op: "put step", kind: mergeStep, args: []any{exec, name, "done", 1, nil, nil, "", "", time.Time{}, "", []byte(nil),
		int64(0), time.Time{}, time.Time{}, time.Time{}, "", 0, "", ""}}
}

func addW(id int64) stmt {
	return stmt{op: "add task", kind: mergeAddTask, args: []any{id, "x", "s", "step", time.Time{}, "", time.Time{}, 1, 0, "", ""}}
}

func execRow(id string) []any {
	return []any{id, 1, "g", "T", "json", []byte("null"), "running", nil, nil, "", false, time.Time{}, time.Time{},
		time.Time{}, time.Time{}, int64(1), "", "", []byte("null")}
}

func TestMergeRules(t *testing.T) {
	del := func(id int64) stmt { return stmt{op: "delete task", kind: mergeDelTask, args: []any{id}} }
	put := func(id int64) stmt {
		return stmt{op: "put task", kind: mergePutTask, args: []any{id, "s", "step", time.Time{}, "w", time.Time{}, 1, 1, "", ""}}
	}
	other := stmt{op: "put journal"}
	save := stmt{op: "savepoint", kind: barrier}
	delStep := stmt{op: "delete step", kind: touchSteps}
	full := func(id string) stmt { return stmt{op: "put execution", kind: mergeExec, args: execRow(id)} }
	prog := func(id string) stmt {
		return stmt{op: "put execution", kind: mergeProgress, args: []any{id, int64(1), time.Time{}}}
	}
	end := func(id string) stmt {
		return stmt{op: "put execution", kind: mergeEnd, args: endArgs(id, &store.Execution{Status: store.Completed})}
	}
	newStep := func(exec, name string) stmt {
		w := stepW(exec, name)
		w.op, w.kind = "add step", mergeNewStep
		return w
	}
	for _, c := range []struct {
		name string
		in   []stmt
		want string
	}{
		{"one of each is left alone", []stmt{stepW("x", "a"), addW(1), del(2), other}, "put step,add task,delete task,put journal"},
		{"merged at the end", []stmt{stepW("x", "a"), del(1), addW(5), stepW("y", "a"), other, del(2)},
			"put journal,put steps,add task,delete tasks"},
		{"both task kinds merge together", []stmt{addW(5), addW(6), del(1)},
			"add tasks,delete task"},
		{"a deleted step keeps the order", []stmt{stepW("x", "a"), delStep, stepW("x", "a")}, "put step,delete step,put step"},
		{"a new task written again keeps the order", []stmt{addW(5), addW(6), put(5)}, "add task,add task,put task"},
		{"task updates merge after the inserts, before the deletes", []stmt{put(1), del(3), addW(5), put(2), other, addW(6)},
			"put journal,add tasks,put tasks,delete task"},
		{"an updated task deleted ends deleted", []stmt{del(1), put(1), put(2), del(2)}, "put tasks,delete tasks"},
		{"a new task deleted keeps the order", []stmt{addW(5), addW(6), del(6)}, "add task,add task,delete task"},
		{"progress merges apart from whole records", []stmt{prog("x"), full("y"), prog("z"), full("w")},
			"put executions,put progress"},
		{"progress and a whole record of one execution keep their order", []stmt{prog("x"), full("x"), prog("z"), stepW("x", "a"), stepW("z", "a")},
			"put execution,put execution,put execution,put steps"},
		{"the other executions' progress merges", []stmt{prog("x"), full("x"), prog("z"), prog("y")},
			"put execution,put execution,put progress"},
		{"ends merge apart from progress", []stmt{end("x"), prog("y"), end("z"), prog("w")}, "put progress,put ends"},
		{"an end and progress of one execution keep their order", []stmt{prog("x"), end("x"), end("z"), end("y")},
			"put execution,put execution,put ends"},
		{"new steps merge apart from the others", []stmt{stepW("x", "a"), newStep("y", "a"), stepW("z", "a"), newStep("w", "a")},
			"add steps,put steps"},
		{"savepoints cut segments", []stmt{stepW("x", "a"), save, stepW("y", "a"), stepW("z", "a")},
			"put step,savepoint,put steps"},
	} {
		if got := ops(merge(c.in)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	// Of two upserts of one step, the later wins.
	later := stepW("x", "a")
	later.args[2] = "failed"
	got := merge([]stmt{stepW("x", "a"), stepW("y", "a"), later})
	if rows := got[0].args[2].(textArray); len(rows) != 2 || rows[0] != "failed" {
		t.Errorf("merged statuses %v, want the later upsert's", got[0].args[2])
	}
	// A step inserted and then updated is inserted, with the later values;
	// a write alone of its kind goes as its own statement.
	got = merge([]stmt{newStep("x", "a"), stepW("y", "a"), later, newStep("z", "a")})
	if ops(got) != "add steps,put step" {
		t.Fatalf("a step inserted and updated: %s", ops(got))
	}
	if rows := got[0].args[2].(textArray); len(rows) != 2 || rows[0] != "failed" {
		t.Errorf("inserted statuses %v, want the update's first", got[0].args[2])
	}
	// Of two updates of one task, the later wins.
	first, second := put(7), put(7)
	second.args[1] = "b"
	got = merge([]stmt{first, put(8), second})
	if rows := got[0].args[1].(textArray); len(rows) != 2 || rows[0] != "b" {
		t.Errorf("merged task steps %v, want the later update's", got[0].args[1])
	}
}

func TestTextColumn(t *testing.T) {
	type named string
	rows := [][]any{{"a", "x"}, {named("b"), nil}, {"c", "z"}}
	if got, ok := textColumn(rows, 0).(textArray); !ok || strings.Join(got, ",") != "a,b,c" {
		t.Errorf("column without NULLs: %#v", textColumn(rows, 0))
	}
	got, ok := textColumn(rows, 1).(nullTextArray)
	if !ok || len(got) != 3 || *got[0] != "x" || got[1] != nil || *got[2] != "z" {
		t.Errorf("column with a NULL: %#v", textColumn(rows, 1))
	}
}

// checkWrites checks each kept row at its first write, as a lone
// statement or within a merged one, and tells when a kept row is not
// written or a write is one it cannot check.
func TestCheckWrites(t *testing.T) {
	prog := func(id string) stmt {
		return stmt{op: "put execution", kind: mergeProgress, sql: sqlPutProgress, args: []any{id, int64(2), time.Time{}}}
	}
	put := func(id int64) stmt {
		return stmt{op: "put task", kind: mergePutTask, sql: "UPDATE tasks SET step = $2 WHERE id = $1",
			args: []any{id, "s", "step", time.Time{}, "w", time.Time{}, 1, 1, "", ""}}
	}
	kept := func() (map[string]string, map[int64]string) {
		return map[string]string{"e": "100", "f": "101"}, map[int64]string{7: "102", 8: "103"}
	}
	// Lone writes: each kept row's first write checks its version, the
	// second does not; steps and new tasks go as they are; the rows of
	// executions go first (a step insert must not fail before them).
	execs, tasks := kept()
	queue := []stmt{prog("e"), stepW("e", "s1"), put(7), addW(9), prog("e"), prog("f"), put(8)}
	out, ok := checkWrites(queue, execs, tasks)
	if !ok {
		t.Fatal("every kept row written, and checkWrites says not")
	}
	for i, want := range []struct {
		from    int    // the position in queue
		version string // "" if not checked
	}{{0, "100"}, {4, ""}, {5, "101"}, {1, ""}, {2, "102"}, {3, ""}, {6, "103"}} {
		q, from := out[i], queue[want.from]
		if q.checked != (want.version != "") {
			t.Errorf("%d %s: checked %v", i, q.op, q.checked)
		}
		if want.version == "" {
			if !reflect.DeepEqual(q, from) {
				t.Errorf("%d: %+v, want %+v", i, q, from)
			}
			continue
		}
		if v := q.args[len(q.args)-1]; q.op != from.op || v != want.version || !strings.Contains(q.sql, "xmin::text = $") {
			t.Errorf("%d %s: %q with version %v, want %s of %s", i, q.op, q.sql, v, want.version, from.op)
		}
	}
	// A created execution's row stays after its insert; a kept one's goes
	// first.
	execs, tasks = kept()
	create := stmt{op: "create execution", kind: createExec, args: []any{"c"}}
	out, ok = checkWrites([]stmt{put(7), create, prog("c"), prog("e"), put(8), prog("f")}, execs, tasks)
	if got := ops(out); !ok || got != "put execution,put execution,put task,create execution,put execution,put task" ||
		out[4].args[0] != "c" {
		t.Errorf("with a created execution: %s, ok %v", got, ok)
	}
	// Merged writes: one version per row, "" for a row checked before.
	execs, tasks = kept()
	merged := merge([]stmt{put(7), put(8), prog("e"), prog("f")})
	out, ok = checkWrites(append([]stmt{prog("e")}, merged...), execs, tasks)
	if !ok || len(out) != 3 {
		t.Fatalf("merged: %d statements, ok %v", len(out), ok)
	}
	for _, q := range out[1:] {
		v := q.args[len(q.args)-1]
		switch q.kind {
		case mergeProgress:
			if !reflect.DeepEqual(v, textArray{"", "101"}) || q.sql != checkedWrites[mergeProgress].sql {
				t.Errorf("merged progress: versions %v, sql %q", v, q.sql)
			}
		case mergePutTask:
			if !reflect.DeepEqual(v, textArray{"102", "103"}) || q.sql != checkedWrites[mergePutTask].sql {
				t.Errorf("merged tasks: versions %v, sql %q", v, q.sql)
			}
		default:
			t.Errorf("merged: unexpected %s", q.op)
		}
	}
	// A kept task not written, or a write that checks nothing (the inbox,
	// a savepoint), needs the guard.
	for name, queue := range map[string][]stmt{
		"task 8 not written": {prog("e"), prog("f"), put(7)},
		"a journal write":    {prog("e"), prog("f"), put(7), put(8), {op: "put journal"}},
		"a savepoint":        {{op: "savepoint", kind: barrier}, prog("e"), prog("f"), put(7), put(8)},
		"one write of a created and a kept row": append([]stmt{{op: "create execution", kind: createExec, args: []any{"c"}}},
			merge([]stmt{prog("c"), prog("e"), prog("f"), put(7), put(8)})...),
	} {
		execs, tasks := kept()
		if _, ok := checkWrites(queue, execs, tasks); ok {
			t.Errorf("%s: checkWrites says no guard is needed", name)
		}
	}
}

// Checked writes lock their tasks by ascending ID, as ExtendLeases and
// Release do, or checkWrites gives up (and the guard, which locks them in
// order first, is sent instead).
func TestTaskLockOrder(t *testing.T) {
	put := func(id int64) stmt {
		return stmt{op: "put task", kind: mergePutTask, sql: "UPDATE tasks SET step = $2 WHERE id = $1",
			args: []any{id, "s", "step", time.Time{}, "w", time.Time{}, 1, 1, "", ""}}
	}
	del := func(id int64) stmt {
		return stmt{op: "delete task", kind: mergeDelTask, sql: "DELETE FROM tasks WHERE id = $1", args: []any{id}}
	}
	locks := func(q []stmt) (ids []int64) {
		for _, s := range q {
			switch {
			case s.kind != mergePutTask && s.kind != mergeDelTask:
			case s.merged:
				ids = append(ids, s.args[0].(intArray)...)
			default:
				ids = append(ids, s.args[0].(int64))
			}
		}
		return ids
	}
	for _, c := range []struct {
		name  string
		queue []stmt
		want  []int64 // nil: no order will do
	}{
		{"lone, in order", []stmt{put(3), stepW("e", "s"), put(9)}, []int64{3, 9}},
		{"lone, reversed", []stmt{put(9), stepW("e", "s"), del(3)}, []int64{3, 9}},
		{"merged rows", merge([]stmt{put(9), put(3), put(5)}), []int64{3, 5, 9}},
		{"deletes below the updates", merge([]stmt{put(8), del(2), put(7), del(1)}), []int64{1, 2, 7, 8}},
		{"ranges that interleave", merge([]stmt{put(8), del(2), put(1), del(9)}), nil},
		{"a new task written again", []stmt{addW(9), addW(10), put(10), put(9)}, nil},
	} {
		execs := map[string]string{}
		tasks := map[int64]string{}
		for _, id := range locks(c.queue) {
			tasks[id] = fmt.Sprint("v", id)
		}
		for _, q := range c.queue {
			if q.kind == mergeAddTask {
				delete(tasks, q.args[0].(int64))
			}
		}
		out, ok := checkWrites(c.queue, execs, tasks)
		if ok != (c.want != nil) {
			t.Errorf("%s: ok %v", c.name, ok)
			continue
		}
		if !ok {
			continue
		}
		if got := locks(out); !slices.Equal(got, c.want) {
			t.Errorf("%s: locks %v, want %v", c.name, got, c.want)
		}
		for _, q := range out { // each row keeps its own version
			if q.merged && (q.kind == mergePutTask || q.kind == mergeDelTask) {
				ids, vs := q.args[0].(intArray), q.args[len(q.args)-1].(textArray)
				for k, id := range ids {
					if vs[k] != fmt.Sprint("v", id) {
						t.Errorf("%s: task %d sent with version %s", c.name, id, vs[k])
					}
				}
			}
		}
	}
}
