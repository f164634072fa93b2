package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

// full returns an execution with every field set, its times in a zone other
// than UTC and with nanoseconds below Precision.
func full(id string) store.Execution {
	zone := time.FixedZone("X", 5*3600+30*60)
	t0 := time.Date(2031, 6, 7, 8, 9, 10, 123456789, zone)
	return store.Execution{
		ID:     id,
		Run:    3,
		Graph:  "checkout",
		Target: "main.Receipt",
		Codec:  "json",
		Inputs: []store.Value{
			{Type: "main.Order", Data: []byte(`{"id":42}`)},
			{Type: "[]uint8", Data: []byte{0, 1, 2, 0xff, '"', '\\'}},
			{Type: "string", Data: nil},
		},
		Status:          store.Failed,
		Result:          &store.Value{Type: "main.Receipt", Data: []byte{0xde, 0xad, 0, 0xbe, 0xef}},
		Error:           "step \"pay\": card declined\nline two",
		CancelRequested: true,
		Deadline:        t0.Add(time.Hour),
		CreatedAt:       t0,
		UpdatedAt:       t0.Add(time.Minute + 987654321),
		FinishedAt:      t0.Add(2 * time.Minute),
		Seq:             1<<40 + 7,
		Parent:          "order-7",
		ParentStep:      "ship",
		Runs: []store.RunRecord{
			{Run: 1, StartedAt: t0.Add(-2 * time.Hour), EndedAt: t0.Add(-time.Hour - 1), Steps: 4},
			{Run: 2, StartedAt: t0.Add(-time.Hour), EndedAt: t0.Add(-1), Steps: 9},
		},
	}
}

func testExecutionRoundTrip(t *testing.T, s store.Store) {
	want := full("exec-1")
	update(t, s, "exec-1", func(tx store.Tx) error {
		e := want
		if err := tx.CreateExecution(&e); err != nil {
			return err
		}
		got, err := tx.Execution()
		if err != nil {
			return fmt.Errorf("Tx.Execution after create: %w", err)
		}
		check(t, "Tx.Execution in the creating Update", got, &want)
		return nil
	})
	update(t, s, "exec-1", func(tx store.Tx) error {
		got, err := tx.Execution()
		if err != nil {
			return err
		}
		check(t, "Tx.Execution in a later Update", got, &want)
		return nil
	})
	got, err := s.Execution(t.Context(), "exec-1")
	if err != nil {
		t.Fatalf("Execution: %v", err)
	}
	check(t, "Store.Execution", got, &want)
}

func testExecutionZero(t *testing.T, s store.Store) {
	want := store.Execution{ID: "zero"}
	create(t, s, want)
	got, err := s.Execution(t.Context(), "zero")
	if err != nil {
		t.Fatalf("Execution: %v", err)
	}
	check(t, "zero execution", got, &want)
	if got.Result != nil {
		t.Errorf("Result = %+v, want nil", got.Result)
	}
	for name, tm := range map[string]time.Time{"Deadline": got.Deadline, "CreatedAt": got.CreatedAt,
		"UpdatedAt": got.UpdatedAt, "FinishedAt": got.FinishedAt} {
		if !tm.IsZero() {
			t.Errorf("%s = %v, want the zero time", name, tm)
		}
	}
}

func testExecutionExists(t *testing.T, s store.Store) {
	want := full("dup")
	create(t, s, want)
	other := minimal("dup")
	err := s.Update(t.Context(), "dup", func(tx store.Tx) error { return tx.CreateExecution(&other) })
	if !errors.Is(err, store.ErrExists) {
		t.Fatalf("second CreateExecution: got %v, want ErrExists", err)
	}
	got, err := s.Execution(t.Context(), "dup")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "execution after failed second create", got, &want)

	// Twice in one Update.
	err = s.Update(t.Context(), "dup2", func(tx store.Tx) error {
		e := minimal("dup2")
		if err := tx.CreateExecution(&e); err != nil {
			return fmt.Errorf("first create: %w", err)
		}
		if err := tx.CreateExecution(&e); !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("second create in the same Update: got %v, want ErrExists", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testExecutionPut(t *testing.T, s store.Store) {
	e := minimal("put")
	e.Result = &store.Value{Type: "int", Data: []byte("1")}
	create(t, s, e)
	want := full("put")
	update(t, s, "put", func(tx store.Tx) error {
		e := want
		return tx.PutExecution(&e)
	})
	got, err := s.Execution(t.Context(), "put")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "after PutExecution", got, &want)

	// Clearing fields.
	want = minimal("put")
	update(t, s, "put", func(tx store.Tx) error {
		e := want
		return tx.PutExecution(&e)
	})
	got, err = s.Execution(t.Context(), "put")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "after PutExecution clearing fields", got, &want)
	if got.Result != nil {
		t.Errorf("Result = %+v after clearing it, want nil", got.Result)
	}
}

func testExecutionNotFound(t *testing.T, s store.Store) {
	if _, err := s.Execution(t.Context(), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Store.Execution(missing): got %v, want ErrNotFound", err)
	}
	create(t, s, minimal("present"))
	if _, err := s.Execution(t.Context(), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Store.Execution(missing) beside another: got %v, want ErrNotFound", err)
	}
	update(t, s, "missing", func(tx store.Tx) error {
		if _, err := tx.Execution(); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("Tx.Execution: got %v, want ErrNotFound", err)
		}
		e := minimal("missing")
		if err := tx.PutExecution(&e); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutExecution: got %v, want ErrNotFound", err)
		}
		if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutStep: got %v, want ErrNotFound", err)
		}
		if err := tx.PutJournal(&store.JournalEntry{Step: "a", Kind: "run"}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutJournal: got %v, want ErrNotFound", err)
		}
		if err := tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("AddTask: got %v, want ErrNotFound", err)
		}
		if err := tx.PutTask(&store.Task{ID: 1, Step: "a", Kind: store.TaskStep}); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutTask: got %v, want ErrNotFound", err)
		}
		if steps, err := tx.Steps(); err != nil || len(steps) != 0 {
			t.Errorf("Tx.Steps = %v, %v; want none", steps, err)
		}
		if j, err := tx.Journal("a"); err != nil || len(j) != 0 {
			t.Errorf("Tx.Journal = %v, %v; want none", j, err)
		}
		if tasks, err := tx.Tasks(); err != nil || len(tasks) != 0 {
			t.Errorf("Tx.Tasks = %v, %v; want none", tasks, err)
		}
		return nil
	})
	if _, err := s.Execution(t.Context(), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after the Update: got %v, want ErrNotFound", err)
	}
	if steps, err := s.Steps(t.Context(), "missing"); err != nil || len(steps) != 0 {
		t.Errorf("Store.Steps(missing) = %v, %v; want none and no error", steps, err)
	}
	if j, err := s.Journal(t.Context(), "missing", "a"); err != nil || len(j) != 0 {
		t.Errorf("Store.Journal(missing) = %v, %v; want none and no error", j, err)
	}
	if tasks, err := s.Tasks(t.Context(), "missing"); err != nil || len(tasks) != 0 {
		t.Errorf("Store.Tasks(missing) = %v, %v; want none and no error", tasks, err)
	}
}

// snapshot is everything a store holds about one execution.
type snapshot struct {
	Exec    *store.Execution
	Steps   []store.Step
	Journal []store.JournalEntry
	Tasks   []store.Task
}

func take(t *testing.T, s store.Store, id string) snapshot {
	t.Helper()
	var snap snapshot
	update(t, s, id, func(tx store.Tx) error {
		var err error
		snap.Exec, err = tx.Execution()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if snap.Steps, err = tx.Steps(); err != nil {
			return err
		}
		if snap.Journal, err = tx.Journal("a"); err != nil {
			return err
		}
		snap.Tasks, err = tx.Tasks()
		return err
	})
	return snap
}

func testUpdateErrorNew(t *testing.T, s store.Store) {
	err := s.Update(t.Context(), "doomed", func(tx store.Tx) error {
		e := full("doomed")
		if err := tx.CreateExecution(&e); err != nil {
			return err
		}
		if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady}); err != nil {
			return err
		}
		if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 0, Kind: "run", Done: true}); err != nil {
			return err
		}
		if err := tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base}); err != nil {
			return err
		}
		return fmt.Errorf("wrapped: %w", errBoom)
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if _, err := s.Execution(t.Context(), "doomed"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Execution after failed Update: got %v, want ErrNotFound", err)
	}
	check(t, "state after failed Update", take(t, s, "doomed"), snapshot{})
	if steps, err := s.Steps(t.Context(), "doomed"); err != nil || len(steps) != 0 {
		t.Errorf("Steps = %v, %v; want none", steps, err)
	}
	if j, err := s.Journal(t.Context(), "doomed", "a"); err != nil || len(j) != 0 {
		t.Errorf("Journal = %v, %v; want none", j, err)
	}
	if got, err := s.Claim(t.Context(), "w", "", at(100), time.Minute, 10); err != nil || len(got) != 0 {
		t.Errorf("Claim = %v, %v; want nothing", got, err)
	}
	if _, ok, err := s.NextReadyAt(t.Context(), at(-100)); err != nil || ok {
		t.Errorf("NextReadyAt = %v, %v; want none", ok, err)
	}
	if list, _, err := s.List(t.Context(), store.ListQuery{}); err != nil || len(list) != 0 {
		t.Errorf("List = %v, %v; want none", list, err)
	}
	// The ID is still free.
	create(t, s, minimal("doomed"))
}

func testUpdateErrorExisting(t *testing.T, s store.Store) {
	const id = "keep"
	create(t, s, full(id))
	var tasks []store.Task
	update(t, s, id, func(tx store.Tx) error {
		for _, st := range []store.Step{{Name: "a", Status: store.StepRunning}, {Name: "b", Status: store.StepDone, Seq: 1}} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		for i := range 3 {
			if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: i, Kind: "run", Data: []byte{byte(i)}, Done: true}); err != nil {
				return err
			}
		}
		for i := range 2 {
			task := store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(i)}
			if err := tx.AddTask(&task); err != nil {
				return err
			}
			tasks = append(tasks, task)
		}
		return nil
	})
	before := take(t, s, id)
	err := s.Update(t.Context(), id, func(tx store.Tx) error {
		e := minimal(id)
		e.Status = store.Completed
		if err := tx.PutExecution(&e); err != nil {
			return err
		}
		if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepDone, Attempt: 9}); err != nil {
			return err
		}
		if err := tx.PutStep(&store.Step{Name: "c", Status: store.StepReady}); err != nil {
			return err
		}
		if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 0, Kind: "sleep"}); err != nil {
			return err
		}
		if err := tx.TruncateJournal("a", 1); err != nil {
			return err
		}
		changed := tasks[0]
		changed.ReadyAt, changed.Owner, changed.LeaseUntil = at(50), "w", at(60)
		if err := tx.PutTask(&changed); err != nil {
			return err
		}
		if err := tx.DeleteTask(tasks[1].ID); err != nil {
			return err
		}
		if err := tx.AddTask(&store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: base}); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	check(t, "state after failed Update", take(t, s, id), before)
	got, err := s.Claim(t.Context(), "w", "", at(10), time.Minute, 10)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "claimed task IDs", ids(got), ids(tasks))
}

func testUpdatePanic(t *testing.T, s store.Store) {
	create(t, s, minimal("p"))
	func() {
		defer func() {
			if r := recover(); r != errBoom {
				t.Errorf("recovered %v, want the panic value to pass through", r)
			}
		}()
		_ = s.Update(withTimeout(t), "p", func(tx store.Tx) error {
			e := full("p")
			if err := tx.PutExecution(&e); err != nil {
				return err
			}
			if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady}); err != nil {
				return err
			}
			panic(errBoom)
		})
	}()
	// The store must still work, and nothing from the panicking fn is kept.
	err := s.Update(withTimeout(t), "p", func(tx store.Tx) error {
		e, err := tx.Execution()
		if err != nil {
			return err
		}
		check(t, "execution after panic", e, &store.Execution{ID: "p", Run: 1, Graph: "g", Status: store.Running, CreatedAt: base})
		steps, err := tx.Steps()
		if len(steps) != 0 {
			t.Errorf("steps after panic: %+v", steps)
		}
		return err
	})
	if err != nil {
		t.Fatalf("Update after a panicking Update: %v", err)
	}
}

func testUpdateCancelled(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	called := false
	err := s.Update(ctx, "c", func(tx store.Tx) error {
		called = true
		e := minimal("c")
		return tx.CreateExecution(&e)
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Update with a cancelled context: got %v, want context.Canceled", err)
	}
	if called {
		t.Error("Update ran fn with a cancelled context")
	}
	if _, err := s.Execution(t.Context(), "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Execution: got %v, want ErrNotFound", err)
	}
}

func testUpdateIsolation(t *testing.T, s store.Store) {
	const goroutines, rounds = 8, 50
	create(t, s, minimal("counter"))
	create(t, s, minimal("other"))
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			for i := range rounds {
				err := s.Update(t.Context(), "counter", func(tx store.Tx) error {
					e, err := tx.Execution()
					if err != nil {
						return err
					}
					e.Seq++
					if err := tx.PutExecution(e); err != nil {
						return err
					}
					// A step per increment, named after the count it saw.
					return tx.PutStep(&store.Step{Name: fmt.Sprintf("s%04d", e.Seq), Seq: e.Seq, Status: store.StepDone})
				})
				if err != nil {
					errs <- fmt.Errorf("goroutine %d round %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	e, err := s.Execution(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if e.Seq != goroutines*rounds {
		t.Errorf("Seq = %d after %d increments", e.Seq, goroutines*rounds)
	}
	steps, err := s.Steps(t.Context(), "counter")
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) != goroutines*rounds {
		t.Errorf("%d steps after %d increments: two Updates saw the same count", len(steps), goroutines*rounds)
	}
	if o, err := s.Execution(t.Context(), "other"); err != nil || o.Seq != 0 {
		t.Errorf("other execution: %+v, %v", o, err)
	}
}

// testCopies checks that the store keeps copies, as a database does.
func testCopies(t *testing.T, s store.Store) {
	in := full("c")
	step := store.Step{Name: "a", Status: store.StepDone, Output: &store.Value{Type: "T", Data: []byte("out")}, Heartbeat: []byte("hb")}
	entry := store.JournalEntry{Step: "a", Kind: "run", Data: []byte("data"), Done: true}
	update(t, s, "c", func(tx store.Tx) error {
		if err := tx.CreateExecution(&in); err != nil {
			return err
		}
		if err := tx.PutStep(&step); err != nil {
			return err
		}
		return tx.PutJournal(&entry)
	})
	want := full("c")
	wantStep, wantEntry := step, entry
	wantStep.Exec, wantEntry.Exec = "c", "c"
	wantStep.Output = &store.Value{Type: "T", Data: []byte("out")}
	wantStep.Heartbeat, wantEntry.Data = []byte("hb"), []byte("data")
	// Scribble over what was passed in.
	in.Inputs[0].Data[0] = 'X'
	in.Inputs[0].Type = "X"
	in.Result.Data[0] = 'X'
	in.Runs[0].Steps = -1
	step.Output.Data[0] = 'X'
	step.Heartbeat[0] = 'X'
	entry.Data[0] = 'X'
	// And over what comes out.
	got, err := s.Execution(t.Context(), "c")
	if err != nil {
		t.Fatal(err)
	}
	got.Inputs[0].Data[0] = 'Y'
	got.Result.Data[0] = 'Y'
	got.Runs[1].Run = -1
	steps, err := s.Steps(t.Context(), "c")
	if err != nil || len(steps) != 1 {
		t.Fatalf("Steps = %v, %v", steps, err)
	}
	steps[0].Output.Data[0] = 'Y'
	steps[0].Heartbeat[0] = 'Y'
	j, err := s.Journal(t.Context(), "c", "a")
	if err != nil || len(j) != 1 {
		t.Fatalf("Journal = %v, %v", j, err)
	}
	j[0].Data[0] = 'Y'

	got, err = s.Execution(t.Context(), "c")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "execution", got, &want)
	steps, _ = s.Steps(t.Context(), "c")
	check(t, "steps", steps, []store.Step{wantStep})
	j, _ = s.Journal(t.Context(), "c", "a")
	check(t, "journal", j, []store.JournalEntry{wantEntry})
}
