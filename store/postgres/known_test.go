package postgres_test

import (
	"reflect"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// An execution's next lone Update from the process that committed its
// last one, leasing a task to a worker of that process, runs on what that
// process kept, in one round trip — unless anything about the execution
// changed meanwhile (another process's Update, a claim), or its fn needs a
// read; then it runs the ordinary way, on what is stored. Either way the
// outcome is what the ordinary way gives.
func TestSpeculation(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	// Each store's worker says it is alive (as a worker does on start).
	owner := map[store.Store]string{a: "worker-a", b: "worker-b"}
	for s, w := range owner {
		if _, err := s.ExtendLeases(t.Context(), w, nil, base); err != nil {
			t.Fatal(err)
		}
	}
	create(t, a, "e")
	step := func(s store.Store, name string) (seen []string) {
		t.Helper()
		err := s.Update(t.Context(), "e", func(tx store.Tx) error {
			steps, err := tx.Steps()
			if err != nil {
				return err
			}
			seen = nil
			for _, st := range steps {
				seen = append(seen, st.Name)
			}
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			x.Seq++
			if err := tx.PutExecution(x); err != nil {
				return err
			}
			if err := tx.PutStep(&store.Step{Name: name, Status: store.StepDone, Seq: x.Seq}); err != nil {
				return err
			}
			// Leased to this store's worker (a lease already run out, so
			// that a claim can take it).
			return tx.AddTask(&store.Task{Step: name, Kind: store.TaskStep, ReadyAt: base,
				Owner: owner[s], LeaseUntil: base})
		})
		if err != nil {
			t.Fatal(err)
		}
		return seen
	}
	want := func(ok, stale int64) {
		t.Helper()
		if gotOK, gotStale := a.Speculated(); gotOK != ok || gotStale != stale {
			t.Fatalf("speculated %d, stale %d; want %d, %d", gotOK, gotStale, ok, stale)
		}
	}
	step(a, "s1") // the create leased nothing: this one reads first
	want(0, 0)
	step(a, "s2")
	want(1, 0)
	// Another process writes: a's next Update finds its kept state stale,
	// runs again on what is stored, and sees b's step.
	step(b, "s3")
	if seen := step(a, "s4"); !reflect.DeepEqual(seen, []string{"s1", "s2", "s3"}) {
		t.Errorf("steps seen after another process wrote: %v", seen)
	}
	want(1, 1)
	step(a, "s5")
	want(2, 1)
	// A claim moves a task's lease: stale again.
	if got, err := b.Claim(t.Context(), "w", "", base.Add(time.Minute), time.Minute, 1); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	step(a, "s6")
	want(2, 2)
	// An fn that reads the journal runs the ordinary way, at once.
	err := a.Update(t.Context(), "e", func(tx store.Tx) error {
		_, err := tx.Journal("s1")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	want(2, 2)
	// What speculative Updates wrote is what is stored.
	step(a, "s7")
	step(a, "s8")
	want(4, 2)
	// A worker reads an execution with Snapshot (one transaction, with its
	// digest) before it runs a step: its next Update speculates on that.
	if _, err := b.Snapshot(t.Context(), "e", "s1"); err != nil {
		t.Fatal(err)
	}
	if seen := step(b, "s9"); len(seen) != 8 {
		t.Errorf("steps seen after a Snapshot: %v", seen)
	}
	if ok, stale := b.Speculated(); ok != 1 || stale != 0 {
		t.Errorf("after a Snapshot: speculated %d, stale %d; want 1, 0", ok, stale)
	}
	// A store whose workers hold no lease of the execution (a client
	// sending it signals, say) keeps nothing: its next Update reads first.
	c := open(t, url)
	for range 2 {
		if err := c.Update(t.Context(), "e", func(tx store.Tx) error {
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			return tx.PutExecution(x)
		}); err != nil {
			t.Fatal(err)
		}
	}
	if ok, stale := c.Speculated(); ok != 0 || stale != 0 {
		t.Errorf("a client's Updates: speculated %d, stale %d; want 0, 0", ok, stale)
	}
	steps, err := b.Steps(t.Context(), "e")
	if err != nil || len(steps) != 9 {
		t.Fatalf("steps %v, %v", steps, err)
	}
	x, err := b.Execution(t.Context(), "e")
	if err != nil || x.Seq != 9 {
		t.Fatalf("execution %+v, %v; want Seq 9", x, err)
	}
	tasks, err := b.Tasks(t.Context(), "e")
	if err != nil || len(tasks) != 9 {
		t.Fatalf("tasks %v, %v", tasks, err)
	}
}

// Create speculates that the execution does not exist: alone, it commits
// in one round trip; when the execution exists after all, the guard sends
// it the ordinary way and its fn finds the execution.
func TestCreateSpeculation(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "a") // task IDs are reserved by an Update that reads first
	create(t, b, "b")
	createFn := func(found *bool) func(tx store.Tx) error {
		return func(tx store.Tx) error {
			_, err := tx.Execution()
			if *found = err == nil; *found {
				return nil
			}
			if err := tx.CreateExecution(&store.Execution{ID: "c", Run: 1, Graph: "g", Status: store.Running, CreatedAt: base}); err != nil {
				return err
			}
			return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base})
		}
	}
	var found bool
	if err := a.Create(t.Context(), "c", createFn(&found)); err != nil || found {
		t.Fatalf("create: %v (found %v)", err, found)
	}
	if ok, stale := a.Speculated(); ok != 1 || stale != 0 {
		t.Fatalf("speculated %d, stale %d; want 1, 0", ok, stale)
	}
	if err := b.Create(t.Context(), "c", createFn(&found)); err != nil || !found {
		t.Fatalf("create again: %v (found %v)", err, found)
	}
	if ok, stale := b.Speculated(); ok != 0 || stale != 1 {
		t.Fatalf("speculated %d, stale %d; want 0, 1", ok, stale)
	}
	if tasks, err := b.Tasks(t.Context(), "c"); err != nil || len(tasks) != 1 {
		t.Fatalf("tasks %v, %v; want the one task", tasks, err)
	}
}
