// Package storetest is the conformance suite for store.Store backends. Every
// backend runs it unchanged from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
//	}
//
// The suite pins down the behaviour that the doc comments of package store
// describe, plus these rules that the engine relies on:
//
//   - Times come back equal (time.Time.Equal) to what was stored, to at least
//     Precision, and in UTC. The zero time comes back as the zero time.
//   - A nil *Value comes back nil; nil and empty byte slices are not told apart.
//   - Records handed in or out share no memory with the store.
//   - Store.Steps, Store.Journal and Store.Tasks of an unknown execution are
//     empty, not an error.
//   - Tx.PutExecution, PutStep, PutJournal and AddTask fail with
//     store.ErrNotFound while the execution does not exist; PutTask fails with
//     store.ErrNotFound for a task that is not the execution's.
//   - Execution.Runs, Step.Worker, Task.Queue and Task.Worker round-trip;
//     the times in Runs come back like other times, and nil and empty Runs
//     are not told apart.
//   - Task IDs increase and are never reused, even after deletes.
//   - Claim returns the tasks it leased oldest ReadyAt first (ties by ID),
//     only from the queue it was asked for ("" is the default queue; names
//     match exactly). A task is claimable when ReadyAt <= now and its lease
//     is free or LeaseUntil <= now. Release clears Owner and LeaseUntil.
//   - A task pinned to a worker (Task.Worker) is claimable by other workers
//     only while that worker is not alive at now: it never called
//     ExtendLeases, or its last call's until is <= now. The pinned worker
//     itself may claim it whenever the lease rules allow. ExtendLeases
//     records liveness with or without IDs and whether or not it still held
//     them; the last call says (a later until extends, an earlier one
//     shortens). Forgetting long-dead workers must not change any of this.
//   - Tx.DeleteSignal removes one signal (a missing one, or one of an
//     execution that does not exist, is no error); a deleted signal is
//     store.ErrNotFound to PutSignal; Seqs are never given twice, not even
//     after the last signal or all of them were deleted, while an Update
//     that fails gives none.
//   - NextReadyAt reports the earliest time strictly after now at which a
//     task becomes claimable: its ReadyAt or, while leased, the later of
//     ReadyAt and LeaseUntil.
//   - List orders by creation (newest first), not by CreatedAt.
//     CreatedAfter and CreatedBefore are exclusive bounds; the cursor is ""
//     exactly when there is no further page, and later inserts never show up
//     on later pages of a walk that started before them.
//   - CacheGet finds an entry while now is before its expiry.
//   - Once closed, every method returns an error, and Close may be called again.
//   - A panic in an Update's fn writes nothing and leaves the store usable.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

// Precision is the coarsest time resolution a backend may keep: times are
// compared after truncating both sides to it.
const Precision = time.Microsecond

// Run runs the conformance suite as subtests of t. open must return a new,
// empty store each time it is called; Run closes it when the subtest ends
// (the opener may close it as well).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s store.Store)
	}{
		{"Execution/RoundTrip", testExecutionRoundTrip},
		{"Execution/ZeroValues", testExecutionZero},
		{"Execution/Exists", testExecutionExists},
		{"Execution/Put", testExecutionPut},
		{"Execution/NotFound", testExecutionNotFound},
		{"Execution/Runs", testExecutionRuns},
		{"Update/ErrorDiscardsNew", testUpdateErrorNew},
		{"Update/ErrorDiscardsChanges", testUpdateErrorExisting},
		{"Update/Panic", testUpdatePanic},
		{"Update/CancelledContext", testUpdateCancelled},
		{"Update/Isolation", testUpdateIsolation},
		{"Update/Copies", testCopies},
		{"Update/ConcurrentOutcomes", testUpdateConcurrentOutcomes},
		{"Snapshot", testSnapshot},
		{"Steps", testSteps},
		{"Steps/Worker", testStepWorker},
		{"Journal", testJournal},
		{"Signals", testSignals},
		{"Signals/Delete", testDeleteSignal},
		{"DeleteStep", testDeleteStep},
		{"Tasks", testTasks},
		{"Tasks/OtherExecution", testTasksOtherExec},
		{"Tasks/QueueAndPin", testTaskQueueAndPin},
		{"Claim/Order", testClaimOrder},
		{"Claim/Leases", testClaimLeases},
		{"Claim/Eager", testClaimEager},
		{"Claim/Concurrent", testClaimConcurrent},
		{"Claim/Queues", testClaimQueues},
		{"Claim/Pinned", testClaimPinned},
		{"ExtendLeases", testExtendLeases},
		{"ExtendLeases/Liveness", testExtendLeasesLiveness},
		{"Release", testRelease},
		{"NextReadyAt", testNextReadyAt},
		{"NextReadyAt/ClaimNext", testClaimNext},
		{"List/Order", testListOrder},
		{"List/Filters", testListFilters},
		{"List/Paging", testListPaging},
		{"List/DefaultLimit", testListDefaultLimit},
		{"List/BadCursor", testListBadCursor},
		{"Cache", testCache},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// base is a whole-second instant that all task and list tests count from,
// so that no test depends on sub-Precision differences.
var base = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// at returns base plus n seconds.
func at(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }

var errBoom = errors.New("storetest: boom")

func update(t *testing.T, s store.Store, id string, fn func(store.Tx) error) {
	t.Helper()
	if err := s.Update(t.Context(), id, fn); err != nil {
		t.Fatalf("Update(%q): %v", id, err)
	}
}

// create inserts e in its own Update.
func create(t *testing.T, s store.Store, e store.Execution) {
	t.Helper()
	update(t, s, e.ID, func(tx store.Tx) error { return tx.CreateExecution(&e) })
}

// minimal returns an execution with just enough fields set.
func minimal(id string) store.Execution {
	return store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base}
}

// addTasks inserts tasks for exec (which must exist) and returns them with IDs set.
func addTasks(t *testing.T, s store.Store, exec string, tasks ...store.Task) []store.Task {
	t.Helper()
	update(t, s, exec, func(tx store.Tx) error {
		for i := range tasks {
			if err := tx.AddTask(&tasks[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return tasks
}

// txTasks reads an execution's tasks in an Update, and checks that
// Store.Tasks agrees.
func txTasks(t *testing.T, s store.Store, exec string) []store.Task {
	t.Helper()
	var out []store.Task
	update(t, s, exec, func(tx store.Tx) error {
		var err error
		out, err = tx.Tasks()
		return err
	})
	got, err := s.Tasks(t.Context(), exec)
	if err != nil {
		t.Fatalf("Store.Tasks(%q): %v", exec, err)
	}
	check(t, "Store.Tasks against Tx.Tasks", got, out)
	return out
}

func ids(tasks []store.Task) []int64 {
	out := make([]int64, len(tasks))
	for i, t := range tasks {
		out[i] = t.ID
	}
	return out
}

// check fails t with the differences between got and want, if any.
func check(t *testing.T, what string, got, want any) {
	t.Helper()
	if d := diff(got, want); len(d) > 0 {
		for _, line := range d {
			t.Errorf("%s: %s", what, line)
		}
	}
}

// diff compares got and want field by field. Times are compared with Equal
// after truncating to Precision, and non-zero times in got must be in UTC;
// nil and empty slices are equal; pointers compare what they point to.
func diff(got, want any) []string {
	var out []string
	walk(&out, "", reflect.ValueOf(got), reflect.ValueOf(want))
	return out
}

var timeType = reflect.TypeOf(time.Time{})

func walk(out *[]string, path string, g, w reflect.Value) {
	name := path
	if name == "" {
		name = "value"
	}
	if !g.IsValid() || !w.IsValid() {
		if g.IsValid() != w.IsValid() {
			*out = append(*out, fmt.Sprintf("%s: got %v, want %v", name, g, w))
		}
		return
	}
	if g.Type() == timeType {
		gt, wt := g.Interface().(time.Time), w.Interface().(time.Time)
		switch {
		case !gt.Truncate(Precision).Equal(wt.Truncate(Precision)):
			*out = append(*out, fmt.Sprintf("%s: got %v, want %v", name, gt, wt))
		case !gt.IsZero() && gt.Location() != time.UTC:
			*out = append(*out, fmt.Sprintf("%s: got %v in %v, want UTC", name, gt, gt.Location()))
		}
		return
	}
	switch g.Kind() {
	case reflect.Pointer:
		if g.IsNil() || w.IsNil() {
			if g.IsNil() != w.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: got %s, want %s", name, show(g), show(w)))
			}
			return
		}
		walk(out, path, g.Elem(), w.Elem())
	case reflect.Struct:
		for i := range g.NumField() {
			f := g.Type().Field(i)
			p := f.Name
			if path != "" {
				p = path + "." + f.Name
			}
			walk(out, p, g.Field(i), w.Field(i))
		}
	case reflect.Slice:
		if g.Type().Elem().Kind() == reflect.Uint8 {
			if gb, wb := g.Bytes(), w.Bytes(); string(gb) != string(wb) {
				*out = append(*out, fmt.Sprintf("%s: got %q, want %q", name, gb, wb))
			}
			return
		}
		if g.Len() != w.Len() {
			*out = append(*out, fmt.Sprintf("%s: got %d elements, want %d: got %+v, want %+v", name, g.Len(), w.Len(), g, w))
			return
		}
		for i := range g.Len() {
			walk(out, fmt.Sprintf("%s[%d]", name, i), g.Index(i), w.Index(i))
		}
	default:
		if !g.Equal(w) {
			*out = append(*out, fmt.Sprintf("%s: got %#v, want %#v", name, g.Interface(), w.Interface()))
		}
	}
}

func show(v reflect.Value) string {
	if v.IsNil() {
		return "nil"
	}
	return fmt.Sprintf("%+v", v.Elem().Interface())
}

// withTimeout returns a context that ends the test's wait on a store that
// hangs instead of answering.
func withTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}
