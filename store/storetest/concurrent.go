package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/docket-run/docket/store"
)

// testSnapshot checks Store.Snapshot against the single reads.
func testSnapshot(t *testing.T, s store.Store) {
	create(t, s, minimal("s1"))
	update(t, s, "s1", func(tx store.Tx) error {
		for _, st := range []store.Step{{Name: "b", Status: store.StepReady}, {Name: "a", Status: store.StepDone, Seq: 1}} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		for i := range 3 {
			if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: i, Kind: "run", Done: true}); err != nil {
				return err
			}
		}
		return tx.PutJournal(&store.JournalEntry{Step: "b", Seq: 0, Kind: "now", Done: true})
	})
	snap, err := s.Snapshot(t.Context(), "s1", "a")
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	x, err := s.Execution(t.Context(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := s.Steps(t.Context(), "s1")
	if err != nil {
		t.Fatal(err)
	}
	journal, err := s.Journal(t.Context(), "s1", "a")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Snapshot.Execution", snap.Execution, x)
	check(t, "Snapshot.Steps", snap.Steps, steps)
	check(t, "Snapshot.Journal", snap.Journal, journal)
	if len(snap.Steps) != 2 || snap.Steps[0].Name != "a" || len(snap.Journal) != 3 {
		t.Errorf("Snapshot = %d steps (first %q), %d journal entries; want 2 (a first) and 3", len(snap.Steps), snap.Steps[0].Name, len(snap.Journal))
	}
	if _, err := s.Snapshot(t.Context(), "missing", "a"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Snapshot(missing) = %v, want ErrNotFound", err)
	}
}

// testUpdateConcurrentOutcomes runs many Updates of different executions
// at once, as a busy engine does, where some fail or panic after writing
// (some after a read that sends their writes to the server first): each
// Update's outcome must be its own, whatever ran beside it.
func testUpdateConcurrentOutcomes(t *testing.T, s store.Store) {
	const n = 96
	for i := range n {
		create(t, s, minimal(fmt.Sprintf("c%02d", i)))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	panics := make([]any, n)
	for i := range n {
		wg.Go(func() {
			defer func() { panics[i] = recover() }()
			id := fmt.Sprintf("c%02d", i)
			errs[i] = s.Update(t.Context(), id, func(tx store.Tx) error {
				x, err := tx.Execution()
				if err != nil {
					return err
				}
				x.Seq = int64(i + 1)
				if err := tx.PutExecution(x); err != nil {
					return err
				}
				if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepDone, Seq: x.Seq}); err != nil {
					return err
				}
				task := store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(i)}
				if err := tx.AddTask(&task); err != nil {
					return err
				}
				if i%4 == 1 { // a read: what was written so far may be sent
					if _, err := tx.Journal("a"); err != nil {
						return err
					}
					if _, err := tx.Signals(); err != nil {
						return err
					}
				}
				steps, err := tx.Steps()
				if err != nil {
					return err
				}
				if len(steps) != 1 || steps[0].Seq != x.Seq {
					return fmt.Errorf("Tx.Steps = %+v, want this Update's step", steps)
				}
				if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 0, Kind: "run", Done: true}); err != nil {
					return err
				}
				switch i % 6 {
				case 2, 3:
					return errBoom
				case 5:
					panic(errBoom)
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		failed := i%6 == 2 || i%6 == 3
		panicked := i%6 == 5
		switch {
		case panicked:
			if panics[i] != errBoom {
				t.Errorf("%s: recovered %v, want the fn's panic", id, panics[i])
			}
		case failed:
			if !errors.Is(errs[i], errBoom) {
				t.Errorf("%s: Update = %v, want the fn's error", id, errs[i])
			}
		default:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("%s: Update = %v (panic %v), want success", id, errs[i], panics[i])
			}
		}
		x, err := s.Execution(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		steps, _ := s.Steps(t.Context(), id)
		tasks, _ := s.Tasks(t.Context(), id)
		journal, _ := s.Journal(t.Context(), id, "a")
		kept := x.Seq != 0 || len(steps) != 0 || len(tasks) != 0 || len(journal) != 0
		if (failed || panicked) && kept {
			t.Errorf("%s: a failed Update left seq %d, %d steps, %d tasks, %d journal entries", id, x.Seq, len(steps), len(tasks), len(journal))
		}
		if !failed && !panicked && (x.Seq != int64(i+1) || len(steps) != 1 || len(tasks) != 1 || len(journal) != 1) {
			t.Errorf("%s: a successful Update left seq %d, %d steps, %d tasks, %d journal entries", id, x.Seq, len(steps), len(tasks), len(journal))
		}
	}
	// Task IDs are unique across all of them.
	seen := map[int64]string{}
	for i := range n {
		id := fmt.Sprintf("c%02d", i)
		tasks, err := s.Tasks(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			if other, dup := seen[task.ID]; dup {
				t.Errorf("task ID %d given to %s and %s", task.ID, other, id)
			}
			seen[task.ID] = id
		}
	}
}
