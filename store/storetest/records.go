package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

func testSteps(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	zone := time.FixedZone("Y", -7*3600)
	t0 := time.Date(2032, 2, 3, 4, 5, 6, 999999999, zone)
	b := store.Step{
		Name: "b", Status: store.StepSuspended, Attempt: 2, Error: "timeout", Wait: "timer 5m", Signal: "approve",
		WakeAt: t0.Add(5 * time.Minute), Heartbeat: []byte{0, 1, 0xff}, ReadyAt: t0, StartedAt: t0.Add(time.Second),
	}
	a := store.Step{
		Name: "a", Status: store.StepDone, Attempt: 1,
		Output: &store.Value{Type: "main.Out", Data: []byte(`{"ok":true}`)},
		Seq:    1<<33 + 1, ReadyAt: t0, StartedAt: t0.Add(time.Millisecond), FinishedAt: t0.Add(time.Second),
		Comp: store.CompFailed, CompAttempt: 4, CompError: "refund failed",
	}
	update(t, s, "e1", func(tx store.Tx) error {
		for _, st := range []store.Step{b, a} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		got, err := tx.Steps()
		if err != nil {
			return err
		}
		check(t, "Tx.Steps in the writing Update", got, withExec("e1", a, b))
		return nil
	})
	update(t, s, "e2", func(tx store.Tx) error {
		return tx.PutStep(&store.Step{Name: "a", Status: store.StepReady, ReadyAt: t0})
	})
	got, err := s.Steps(t.Context(), "e1")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Store.Steps", got, withExec("e1", a, b))

	// Replace a; output cleared.
	a2 := store.Step{Name: "a", Status: store.StepRunning, Attempt: 2, ReadyAt: t0, StartedAt: t0, Comp: store.CompPending}
	update(t, s, "e1", func(tx store.Tx) error {
		if err := tx.PutStep(&a2); err != nil {
			return err
		}
		got, err := tx.Steps()
		if err != nil {
			return err
		}
		check(t, "Tx.Steps after replace", got, withExec("e1", a2, b))
		return nil
	})
	got, err = s.Steps(t.Context(), "e1")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Store.Steps after replace", got, withExec("e1", a2, b))
	if got[0].Output != nil {
		t.Errorf("Output = %+v after replacing with nil", got[0].Output)
	}
	got, err = s.Steps(t.Context(), "e2")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "other execution's steps", got, withExec("e2", store.Step{Name: "a", Status: store.StepReady, ReadyAt: t0}))

	// Many steps come back sorted by name.
	names := []string{"m", "c", "z", "b2", "a1", "y", "k"}
	update(t, s, "e2", func(tx store.Tx) error {
		for _, n := range names {
			if err := tx.PutStep(&store.Step{Name: n, Status: store.StepReady}); err != nil {
				return err
			}
		}
		return nil
	})
	got, err = s.Steps(t.Context(), "e2")
	if err != nil {
		t.Fatal(err)
	}
	var gotNames []string
	for _, st := range got {
		gotNames = append(gotNames, st.Name)
	}
	wantNames := append(slices.Clone(names), "a")
	slices.Sort(wantNames)
	check(t, "step names", gotNames, wantNames)
}

func withExec(exec string, steps ...store.Step) []store.Step {
	for i := range steps {
		steps[i].Exec = exec
	}
	return steps
}

func entries(exec string, es ...store.JournalEntry) []store.JournalEntry {
	for i := range es {
		es[i].Exec = exec
	}
	return es
}

func testJournal(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	zone := time.FixedZone("Z", 9*3600)
	wake := time.Date(2033, 3, 4, 5, 6, 7, 1234567, zone)
	a0 := store.JournalEntry{Step: "a", Seq: 0, Kind: "run", Name: "charge", Data: []byte(`"ch_1"`), Done: true}
	a1 := store.JournalEntry{Step: "a", Seq: 1, Kind: "sleep", Name: "wait", WakeAt: wake}
	a2 := store.JournalEntry{Step: "a", Seq: 2, Kind: "run", Name: "mail", Error: "smtp down", Done: true}
	a3 := store.JournalEntry{Step: "a", Seq: 3, Kind: "random", Data: []byte{0, 0xff}, Done: true}
	b0 := store.JournalEntry{Step: "b", Seq: 0, Kind: "now", Data: []byte("t"), Done: true}
	b1 := store.JournalEntry{Step: "b", Seq: 1, Kind: "run", Done: true}
	update(t, s, "e1", func(tx store.Tx) error {
		// Out of order.
		for _, e := range []store.JournalEntry{a2, b1, a0, a3, b0, a1} {
			if err := tx.PutJournal(&e); err != nil {
				return err
			}
		}
		got, err := tx.Journal("a")
		if err != nil {
			return err
		}
		check(t, "Tx.Journal(a)", got, entries("e1", a0, a1, a2, a3))
		return nil
	})
	update(t, s, "e2", func(tx store.Tx) error { return tx.PutJournal(&a0) })
	journal := func(exec, step string) []store.JournalEntry {
		t.Helper()
		got, err := s.Journal(t.Context(), exec, step)
		if err != nil {
			t.Fatalf("Journal(%s, %s): %v", exec, step, err)
		}
		return got
	}
	check(t, "Journal(e1, a)", journal("e1", "a"), entries("e1", a0, a1, a2, a3))
	check(t, "Journal(e1, b)", journal("e1", "b"), entries("e1", b0, b1))
	check(t, "Journal(e1, none)", journal("e1", "none"), []store.JournalEntry(nil))

	// Replace by Seq: the sleep finishes.
	a1done := a1
	a1done.Done, a1done.WakeAt, a1done.Data = true, time.Time{}, []byte("woke")
	update(t, s, "e1", func(tx store.Tx) error { return tx.PutJournal(&a1done) })
	check(t, "after replacing seq 1", journal("e1", "a"), entries("e1", a0, a1done, a2, a3))

	// Truncate from 2 on, only for step a of e1.
	update(t, s, "e1", func(tx store.Tx) error {
		if err := tx.TruncateJournal("a", 2); err != nil {
			return err
		}
		got, err := tx.Journal("a")
		if err != nil {
			return err
		}
		check(t, "Tx.Journal after truncate", got, entries("e1", a0, a1done))
		return tx.TruncateJournal("none", 0)
	})
	check(t, "Journal(e1, a) after truncate", journal("e1", "a"), entries("e1", a0, a1done))
	check(t, "Journal(e1, b) after truncating a", journal("e1", "b"), entries("e1", b0, b1))
	check(t, "Journal(e2, a) after truncating e1's", journal("e2", "a"), entries("e2", a0))

	// Truncate past the end changes nothing; from 0 empties the step.
	update(t, s, "e1", func(tx store.Tx) error { return tx.TruncateJournal("a", 10) })
	check(t, "after truncating past the end", journal("e1", "a"), entries("e1", a0, a1done))
	update(t, s, "e1", func(tx store.Tx) error { return tx.TruncateJournal("a", 0) })
	check(t, "after truncating from 0", journal("e1", "a"), []store.JournalEntry(nil))
	check(t, "Journal(e1, b) at the end", journal("e1", "b"), entries("e1", b0, b1))
}

func testTasks(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	zone := time.FixedZone("W", -3*3600)
	t0 := time.Date(2034, 4, 5, 6, 7, 8, 555555555, zone)
	in := []store.Task{
		{Step: "a", Kind: store.TaskStep, ReadyAt: t0, Attempt: 1},
		{Step: "b", Kind: store.TaskStep, ReadyAt: t0.Add(-time.Hour), Attempt: 3, Claims: 2},
		{Kind: store.TaskCompensate, ReadyAt: t0, Owner: "w1", LeaseUntil: t0.Add(time.Minute)},
	}
	e1 := addTasks(t, s, "e1", in[:2]...)
	e2 := addTasks(t, s, "e2", in[2])
	e1more := addTasks(t, s, "e1", store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: t0})
	all := append(append(slices.Clone(e1), e2...), e1more...)
	for i, task := range all {
		if task.ID <= 0 {
			t.Errorf("task %d: ID %d, want > 0", i, task.ID)
		}
		if i > 0 && task.ID <= all[i-1].ID {
			t.Errorf("task IDs not increasing: %v", ids(all))
		}
	}
	if e1[0].Exec != "e1" || e2[0].Exec != "e2" {
		t.Errorf("AddTask set Exec to %q and %q", e1[0].Exec, e2[0].Exec)
	}
	wantE1 := append(slices.Clone(e1), e1more...)
	check(t, "Tasks(e1)", txTasks(t, s, "e1"), wantE1)
	check(t, "Tasks(e2)", txTasks(t, s, "e2"), e2)

	// PutTask updates; it may clear a lease.
	changed := wantE1[1]
	changed.Step, changed.Kind, changed.ReadyAt = "b2", store.TaskCompensate, t0.Add(time.Hour)
	changed.Owner, changed.LeaseUntil = "w9", t0.Add(2*time.Hour)
	changed.Attempt, changed.Claims = 4, 0
	update(t, s, "e1", func(tx store.Tx) error { return tx.PutTask(&changed) })
	wantE1[1] = changed
	check(t, "Tasks(e1) after PutTask", txTasks(t, s, "e1"), wantE1)
	changed.Owner, changed.LeaseUntil = "", time.Time{}
	update(t, s, "e1", func(tx store.Tx) error { return tx.PutTask(&changed) })
	wantE1[1] = changed
	check(t, "Tasks(e1) after clearing the lease", txTasks(t, s, "e1"), wantE1)

	// PutTask of an unknown task.
	err := s.Update(t.Context(), "e1", func(tx store.Tx) error {
		return tx.PutTask(&store.Task{ID: all[len(all)-1].ID + 100, Kind: store.TaskStep, ReadyAt: t0})
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutTask of an unknown ID: got %v, want ErrNotFound", err)
	}

	// DeleteTask, and deleting again or an unknown ID.
	last := wantE1[2]
	update(t, s, "e1", func(tx store.Tx) error {
		if err := tx.DeleteTask(last.ID); err != nil {
			return err
		}
		if err := tx.DeleteTask(last.ID); err != nil {
			return err
		}
		if err := tx.DeleteTask(last.ID + 1000); err != nil {
			return err
		}
		got, err := tx.Tasks()
		if err != nil {
			return err
		}
		check(t, "Tx.Tasks after DeleteTask", got, wantE1[:2])
		return nil
	})
	check(t, "Tasks(e1) after DeleteTask", txTasks(t, s, "e1"), wantE1[:2])

	// IDs are not reused after deleting the newest task.
	next := addTasks(t, s, "e1", store.Task{Step: "d", Kind: store.TaskStep, ReadyAt: t0})
	if next[0].ID <= last.ID {
		t.Errorf("AddTask after deleting task %d gave ID %d; IDs must not be reused", last.ID, next[0].ID)
	}
}

// testTasksOtherExec checks that an Update cannot touch another execution's tasks.
func testTasksOtherExec(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	theirs := addTasks(t, s, "e1", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base})
	update(t, s, "e2", func(tx store.Tx) error {
		changed := theirs[0]
		changed.Owner, changed.LeaseUntil = "thief", at(1000)
		if err := tx.PutTask(&changed); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutTask of another execution's task: got %v, want ErrNotFound", err)
		}
		if err := tx.DeleteTask(theirs[0].ID); err != nil {
			t.Errorf("DeleteTask of another execution's task: %v", err)
		}
		return nil
	})
	check(t, "Tasks(e1)", txTasks(t, s, "e1"), theirs)
	check(t, "Tasks(e2)", txTasks(t, s, "e2"), []store.Task(nil))
}
