package postgres_test

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
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
			// Leased to this store's worker (a lease already run out, so
			// that a claim can take it).
			return recordStep(tx, name, &store.Task{Step: name, Kind: store.TaskStep, ReadyAt: base,
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

// A worker's claim (ClaimNext) reads the claimed tasks' executions in its
// round trip and keeps them with the digest of the rows it read: the
// Update that records the claimed step speculates on that — with step
// names whose length in bytes is not their length in characters, and in
// any order the database's collation gives them — unless the execution
// changed after the claim.
func TestClaimSpeculation(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "e")
	names := []string{"é,{x}", "Zed", "a\"b", "ß"}
	addTask := func(step string) {
		t.Helper()
		err := a.Update(t.Context(), "e", func(tx store.Tx) error {
			return tx.AddTask(&store.Task{Step: step, Kind: store.TaskStep, ReadyAt: base})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	err := a.Update(t.Context(), "e", func(tx store.Tx) error {
		for _, n := range names {
			if err := tx.PutStep(&store.Step{Name: n, Status: store.StepReady}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	claim := func(step string) store.Task {
		t.Helper()
		c, err := b.ClaimNext(t.Context(), "worker-b", "", base, time.Minute, 5)
		if err != nil || len(c.Tasks) != 1 || c.Tasks[0].Step != step {
			t.Fatalf("claim: %+v, %v; want the task of %s", c, err, step)
		}
		if snap := c.Snapshots[c.Tasks[0].ID]; snap == nil || snap.Execution.ID != "e" || len(snap.Steps) != len(names) {
			t.Fatalf("snapshot %+v", snap)
		}
		return c.Tasks[0]
	}
	record := func(task store.Task) {
		t.Helper()
		err := b.Update(t.Context(), "e", func(tx store.Tx) error {
			if err := recordStep(tx, task.Step, nil); err != nil {
				return err
			}
			return tx.DeleteTask(task.ID)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	want := func(ok, stale int64) {
		t.Helper()
		if gotOK, gotStale := b.Speculated(); gotOK != ok || gotStale != stale {
			t.Fatalf("speculated %d, stale %d; want %d, %d", gotOK, gotStale, ok, stale)
		}
	}
	for i, n := range names[:2] {
		addTask(n)
		record(claim(n))
		want(int64(i+1), 0)
	}
	// Another process changes the execution between the claim and the
	// Update: the Update finds it changed and runs the ordinary way.
	addTask(names[2])
	task := claim(names[2])
	if err := a.Update(t.Context(), "e", func(tx store.Tx) error {
		return tx.PutStep(&store.Step{Name: names[3], Status: store.StepSuspended, Wait: "a signal"})
	}); err != nil {
		t.Fatal(err)
	}
	record(task)
	want(2, 1)
	steps, err := b.Steps(t.Context(), "e")
	if err != nil || len(steps) != len(names) {
		t.Fatalf("steps %+v, %v", steps, err)
	}
	for _, s := range steps {
		if wantStatus := map[bool]store.StepStatus{true: store.StepDone, false: store.StepSuspended}[s.Name != names[3]]; s.Status != wantStatus {
			t.Errorf("step %s: %s, want %s", s.Name, s.Status, wantStatus)
		}
	}
}

// Groups speculate too: when every member's execution is known, a group
// of Updates commits in one round trip, its guard checking all of them;
// when another process changed one, the whole group runs the ordinary
// way. Either way every Update's writes are kept, once.
func TestGroupSpeculation(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url, postgres.MaxConns(4)), open(t, url) // a: one group at a time
	if _, err := a.ExtendLeases(t.Context(), "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	const execs, rounds = 8, 30
	add := func(s store.Store, id, step, owner string) error {
		return s.Update(t.Context(), id, func(tx store.Tx) error {
			var task *store.Task
			if owner != "" {
				task = &store.Task{Step: step, Kind: store.TaskStep, ReadyAt: base, Owner: owner, LeaseUntil: base.Add(time.Hour)}
			}
			return recordStep(tx, step, task)
		})
	}
	for i := range execs {
		create(t, a, fmt.Sprint("g-", i))
	}
	// Each execution gets steps from this process's worker, step after
	// step, and now and then from another process.
	inParallel(t, execs, func(i int) error {
		for r := range rounds {
			if err := add(a, fmt.Sprint("g-", i), fmt.Sprint("a", r), "worker-a"); err != nil {
				return err
			}
		}
		return nil
	}, func(i int) error {
		for r := range rounds / 10 {
			time.Sleep(time.Duration(r+i) * time.Millisecond)
			if err := add(b, fmt.Sprint("g-", i), fmt.Sprint("b", r), ""); err != nil {
				return err
			}
		}
		return nil
	})
	ok, stale := a.Speculated()
	t.Logf("%d Updates grouped, %d speculated (%d groups of several), %d found their execution changed",
		a.Grouped(), ok, a.SpeculatedGroups(), stale)
	if a.SpeculatedGroups() == 0 {
		t.Error("no group speculated")
	}
	// With the other process gone, what a keeps after each commit (the row
	// versions it read, and its transaction's ID for the rows it wrote) is
	// exact: once each execution is known again, no Update finds it changed.
	for i := range execs {
		if err := add(a, fmt.Sprint("g-", i), "c", "worker-a"); err != nil {
			t.Fatal(err)
		}
	}
	ok, stale = a.Speculated()
	groups := a.SpeculatedGroups()
	const more = 10
	inParallel(t, execs, func(i int) error {
		for r := range more {
			if err := add(a, fmt.Sprint("g-", i), fmt.Sprint("d", r), "worker-a"); err != nil {
				return err
			}
		}
		return nil
	})
	ok2, stale2 := a.Speculated()
	t.Logf("alone: %d more speculated (%d groups of several), %d stale", ok2-ok, a.SpeculatedGroups()-groups, stale2-stale)
	if stale2 != stale || ok2-ok != execs*more {
		t.Errorf("alone: %d speculated, %d stale; want %d, 0", ok2-ok, stale2-stale, execs*more)
	}
	const total = rounds + rounds/10 + 1 + more
	for i := range execs {
		id := fmt.Sprint("g-", i)
		steps, err := a.Steps(t.Context(), id)
		if err != nil || len(steps) != total {
			t.Fatalf("%s: %d steps, %v; want %d", id, len(steps), err, total)
		}
		x, err := a.Execution(t.Context(), id)
		if err != nil || x.Seq != int64(len(steps)) {
			t.Fatalf("%s: seq %d, %v; want %d", id, x.Seq, err, len(steps))
		}
		tasks, err := a.Tasks(t.Context(), id)
		if err != nil || len(tasks) != rounds+1+more {
			t.Fatalf("%s: %d tasks, %v; want %d", id, len(tasks), err, rounds+1+more)
		}
	}
}

// An execution whose values are large is not kept: its next Update reads
// it, so that what the store keeps stays small.
func TestKnownSizeBound(t *testing.T) {
	a := open(t, pgtest.URL(t))
	if _, err := a.ExtendLeases(t.Context(), "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id   string
		size int
		want int64 // Updates speculated after the second
	}{{"small", 1 << 10, 1}, {"large", 100 << 10, 1}} {
		create(t, a, c.id)
		for i := range 2 {
			err := a.Update(t.Context(), c.id, func(tx store.Tx) error {
				out := &store.Value{Type: "bytes", Data: make([]byte, c.size)}
				if err := tx.PutStep(&store.Step{Name: fmt.Sprint("s", i), Status: store.StepDone, Output: out}); err != nil {
					return err
				}
				return tx.AddTask(&store.Task{Step: fmt.Sprint("s", i), Kind: store.TaskStep, ReadyAt: base,
					Owner: "worker-a", LeaseUntil: base.Add(time.Hour)})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if ok, _ := a.Speculated(); ok != c.want {
			t.Errorf("%s: %d Updates speculated, want %d", c.id, ok, c.want)
		}
	}
}

// recordStep records, as a worker does, that step completed: the
// execution's step counter moves, the step is done, and task, if any, is
// added.
func recordStep(tx store.Tx, step string, task *store.Task) error {
	x, err := moveOn(tx)
	if err != nil {
		return err
	}
	if err := tx.PutStep(&store.Step{Name: step, Status: store.StepDone, Seq: x.Seq}); err != nil {
		return err
	}
	if task == nil {
		return nil
	}
	return tx.AddTask(task)
}

// moveOn moves the execution's step counter on and returns it as written.
func moveOn(tx store.Tx) (*store.Execution, error) {
	x, err := tx.Execution()
	if err != nil {
		return nil, err
	}
	x.Seq++
	return x, tx.PutExecution(x)
}

// Step names are kept in bytewise order whatever the database's collation:
// on a database whose default collation sorts "a" before "B" (ICU, en-US),
// Updates find the steps they rewrite (no step is listed twice), Steps
// lists them bytewise, and speculating Updates still find the versions they
// kept (the digest orders names bytewise too).
func TestStepNamesUnderCollation(t *testing.T) {
	url := pgtest.Database(t, `TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'`)
	a := open(t, url)
	if _, err := a.ExtendLeases(t.Context(), "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	create(t, a, "e")
	names := []string{"b", "B", "a", "_x", "Z", "é", "A"}
	lease := &store.Task{Kind: store.TaskStep, ReadyAt: base, Owner: "worker-a", LeaseUntil: base.Add(time.Hour)}
	for round := range 3 { // the first round adds the steps, later ones rewrite them
		for _, n := range names {
			err := a.Update(t.Context(), "e", func(tx store.Tx) error {
				steps, err := tx.Steps()
				if err != nil {
					return err
				}
				if want := min(len(names), round*len(names)+slices.Index(names, n)); len(steps) != want {
					return fmt.Errorf("round %d, step %q: the Update sees %d steps, want %d", round, n, len(steps), want)
				}
				task := *lease
				task.Step = n
				return recordStep(tx, n, &task)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	steps, err := a.Steps(t.Context(), "e")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, s.Name)
	}
	want := slices.Clone(names)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("steps %q, want %q (bytewise)", got, want)
	}
	if ok, stale := a.Speculated(); stale != 0 || ok != int64(3*len(names)-1) {
		t.Errorf("speculated %d, stale %d; want %d, 0", ok, stale, 3*len(names)-1)
	}
}

// inParallel runs each of fns for each of n executions, all at once, and
// fails t with the first error.
func inParallel(t *testing.T, n int, fns ...func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n*len(fns))
	for i := range n {
		for _, fn := range fns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs <- fn(i)
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// A step written alone (a heartbeat, say, with neither the execution's
// row nor a task) by another process still makes what a process kept of
// the execution stale: the store gives the row a new version with it, and
// the guard checks the row's version. So the next Update sees the step.
func TestSpeculationSeesStepWrittenAlone(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	if _, err := a.ExtendLeases(ctx, "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	create(t, a, "e")
	var beat []byte
	record := func(name string) {
		t.Helper()
		err := a.Update(ctx, "e", func(tx store.Tx) error {
			steps, err := tx.Steps()
			if err != nil {
				return err
			}
			beat = steps[len(steps)-1:][0].Heartbeat
			return recordStep(tx, name, &store.Task{Step: name, Kind: store.TaskStep, ReadyAt: base,
				Owner: "worker-a", LeaseUntil: base.Add(time.Hour)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Update(ctx, "e", func(tx store.Tx) error { return recordStep(tx, "s1", nil) }); err != nil {
		t.Fatal(err)
	}
	record("s2")
	record("s3")
	if ok, stale := a.Speculated(); ok != 1 || stale != 0 {
		t.Fatalf("speculated %d, stale %d; want 1, 0", ok, stale)
	}
	err := b.Update(ctx, "e", func(tx store.Tx) error {
		steps, err := tx.Steps()
		if err != nil {
			return err
		}
		s := steps[len(steps)-1]
		s.Heartbeat = []byte("beat")
		return tx.PutStep(&s)
	})
	if err != nil {
		t.Fatal(err)
	}
	record("s4")
	if string(beat) != "beat" {
		t.Errorf("the next Update saw heartbeat %q of s3, want the one written elsewhere", beat)
	}
	if ok, stale := a.Speculated(); ok != 1 || stale != 1 {
		t.Errorf("speculated %d, stale %d; want 1, 1", ok, stale)
	}
}

// A group that speculates locks its members' tasks and checks their
// versions in one statement: a task claimed by another process after its
// execution was kept sends the whole group the ordinary way, and each
// member's fn then sees what is stored.
func TestGroupGuardSeesClaim(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	if _, err := a.ExtendLeases(ctx, "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	create(t, a, "held")
	for _, id := range []string{"g1", "g2"} {
		create(t, a, id)
		err := a.Update(ctx, id, func(tx store.Tx) error {
			// Leased here (so kept), the lease run out (so claimable).
			return recordStep(tx, "s1", &store.Task{Step: "s1", Kind: store.TaskStep, ReadyAt: base,
				Owner: "worker-a", LeaseUntil: base})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Claim(ctx, "worker-b", "", base.Add(time.Minute), time.Minute, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	_, staleBefore := a.Speculated()
	var mu sync.Mutex
	owners := map[string]string{}
	update := func(id string) func() error {
		return func() error {
			return a.Update(ctx, id, func(tx store.Tx) error {
				tasks, err := tx.Tasks()
				if err != nil || len(tasks) != 1 {
					return fmt.Errorf("tasks %v, %v", tasks, err)
				}
				mu.Lock()
				owners[id] = tasks[0].Owner
				mu.Unlock()
				x, err := tx.Execution()
				if err != nil {
					return err
				}
				x.Seq++
				return tx.PutExecution(x)
			})
		}
	}
	whileLeaderHeld(t, a, "held", 10*time.Millisecond, update("g1"), update("g2"))
	if _, stale := a.Speculated(); stale-staleBefore != 2 {
		t.Errorf("%d members found their execution changed, want the group's 2", stale-staleBefore)
	}
	claimed, other := got[0].Exec, map[string]string{"g1": "g2", "g2": "g1"}[got[0].Exec]
	if owners[claimed] != "worker-b" || owners[other] != "worker-a" {
		t.Errorf("owners seen %v, want %s's task claimed by worker-b", owners, claimed)
	}
}

// keptBy creates executions ids on s, each with step s1 recorded and a
// task for s2 leased to worker-a (alive, through s), the lease run out (so
// claimable): s keeps them all. It returns their tasks' IDs.
func keptBy(t *testing.T, s *postgres.Store, ids ...string) []int64 {
	t.Helper()
	if _, err := s.ExtendLeases(t.Context(), "worker-a", nil, base); err != nil {
		t.Fatal(err)
	}
	var tasks []int64
	for _, id := range ids {
		create(t, s, id)
		task := store.Task{Step: "s2", Kind: store.TaskStep, ReadyAt: base, Owner: "worker-a", LeaseUntil: base}
		if err := s.Update(t.Context(), id, func(tx store.Tx) error { return recordStep(tx, "s1", &task) }); err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, task.ID)
	}
	return tasks
}

// advance records, as a worker running a chain does, that the step of the
// execution's one task completed and leases its successor to owner in the
// same task: every row the Update writes is one it knew, so a speculative
// one needs no guard (its writes check the versions kept). It returns the
// tasks that fn saw.
func advance(tx store.Tx, owner string) ([]store.Task, error) {
	tasks, err := tx.Tasks()
	if err != nil {
		return nil, err
	}
	x, err := moveOn(tx)
	if err != nil {
		return nil, err
	}
	if err := tx.PutStep(&store.Step{Name: fmt.Sprint("s", x.Seq), Status: store.StepDone, Seq: x.Seq}); err != nil {
		return nil, err
	}
	next := tasks[0]
	next.Step, next.Owner, next.LeaseUntil = fmt.Sprint("s", x.Seq+1), owner, base
	return tasks, tx.PutTask(&next)
}

// An Update that speculates and writes only rows it knew — the execution's
// row and each of its tasks — sends no guard: each write checks, as it
// locks its row, the version kept. A claim of the task, a change of the
// row, and a task added by another process (which gives the row a new
// version, see touch) each make the next Update find its execution
// changed; it then runs the ordinary way and sees the change.
func TestCheckedSpeculation(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	keptBy(t, a, "e")
	var seen []store.Task
	step := func() {
		t.Helper()
		if err := a.Update(ctx, "e", func(tx store.Tx) (err error) {
			seen, err = advance(tx, "worker-a")
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(what string, checked, stale int64) {
		t.Helper()
		if st := a.Stats(); st.Checked != checked || st.Stale != stale {
			t.Fatalf("%s: checked %d, stale %d; want %d, %d", what, st.Checked, st.Stale, checked, stale)
		}
	}
	step()
	want("a kept execution", 1, 0)

	if got, err := b.Claim(ctx, "worker-b", "", base.Add(time.Minute), time.Minute, 1); err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	step()
	want("after a claim", 1, 1)
	if len(seen) != 1 || seen[0].Owner != "worker-b" {
		t.Errorf("after a claim, fn saw tasks %+v, want the one claimed by worker-b", seen)
	}
	step()
	want("kept again", 2, 1)

	if err := b.Update(ctx, "e", func(tx store.Tx) error {
		return tx.AddTask(&store.Task{Step: "timer", Kind: store.TaskStep, ReadyAt: base.Add(time.Hour)})
	}); err != nil {
		t.Fatal(err)
	}
	step()
	want("after a task added elsewhere", 2, 2)
	if len(seen) != 2 {
		t.Errorf("after a task added elsewhere, fn saw tasks %+v, want 2", seen)
	}
	// Two tasks now, one of them not written by advance: the guard's way.
	step()
	want("with a task it does not write", 2, 2)
	if ok, _ := a.Speculated(); ok != 3 {
		t.Errorf("speculated %d, want 3", ok)
	}
	if err := b.Update(ctx, "e", func(tx store.Tx) error {
		tasks, err := tx.Tasks()
		if err != nil {
			return err
		}
		return tx.DeleteTask(tasks[1].ID)
	}); err != nil {
		t.Fatal(err)
	}
	step() // stale: b deleted a task it knew of
	step()
	want("one task again", 3, 3)

	x, err := b.Execution(ctx, "e")
	if err != nil || x.Seq != 8 {
		t.Fatalf("execution %+v, %v; want Seq 8", x, err)
	}
	tasks, err := b.Tasks(ctx, "e")
	if err != nil || len(tasks) != 1 || tasks[0].Step != "s9" || tasks[0].Owner != "worker-a" {
		t.Fatalf("tasks %+v, %v; want s9 leased to worker-a", tasks, err)
	}
	steps, err := b.Steps(ctx, "e")
	if err != nil || len(steps) != 8 {
		t.Fatalf("steps %v, %v; want 8", steps, err)
	}
}

// A group whose members all write only rows they knew checks the kept
// versions in its merged writes: one member's task claimed by another
// process sends the whole group the ordinary way, and each fn then sees
// what is stored.
func TestCheckedGroupSeesClaim(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "held")
	ids := []string{"g1", "g2", "g3"}
	keptBy(t, a, ids...)
	var mu sync.Mutex
	owners := map[string]string{}
	update := func(id string) func() error {
		return func() error {
			return a.Update(ctx, id, func(tx store.Tx) error {
				tasks, err := advance(tx, "worker-a")
				mu.Lock()
				owners[id] = tasks[0].Owner
				mu.Unlock()
				return err
			})
		}
	}
	var updates []func() error
	for _, id := range ids {
		updates = append(updates, update(id))
	}
	before := a.Stats()
	whileLeaderHeld(t, a, "held", 10*time.Millisecond, updates...)
	if d := a.Stats().Sub(before); d.Checked != 3 || d.Stale != 0 || a.SpeculatedGroups() == 0 {
		t.Fatalf("a group of kept executions: checked %d, stale %d, groups %d; want 3, 0 and a group",
			d.Checked, d.Stale, a.SpeculatedGroups())
	}
	got, err := b.Claim(ctx, "worker-b", "", base.Add(time.Minute), time.Minute, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v %v", got, err)
	}
	before = a.Stats()
	whileLeaderHeld(t, a, "held", 10*time.Millisecond, updates...)
	if d := a.Stats().Sub(before); d.Stale != 3 || d.Checked != 0 {
		t.Errorf("after a claim: checked %d, stale %d; want 0 and the group's 3", d.Checked, d.Stale)
	}
	for _, id := range ids {
		want := "worker-a"
		if id == got[0].Exec {
			want = "worker-b"
		}
		if owners[id] != want {
			t.Errorf("%s: fn saw its task owned by %q, want %q", id, owners[id], want)
		}
	}
	for _, id := range ids {
		x, err := b.Execution(ctx, id)
		if err != nil || x.Seq != 3 {
			t.Errorf("%s: execution %+v, %v; want Seq 3", id, x, err)
		}
	}
}

// Checked writes lock a group's tasks by ascending ID, as ExtendLeases
// does: a transaction that holds one of them and then takes the highest
// (as a lease extension of all of them would) gets it at once, and the
// group, which waited for the one held, holding only lower ones, then
// commits. Sent in another order (the members' own), the group could hold
// the highest while waiting: a deadlock, which the server breaks after a
// second by aborting the group (its members would then find their
// executions "changed").
func TestCheckedWritesLockInOrder(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a := open(t, url)
	create(t, a, "held")
	ids := []string{"g1", "g2", "g3", "g4", "g5", "g6"}
	sorted := slices.Sorted(slices.Values(keptBy(t, a, ids...)))
	mid, high := sorted[1], sorted[len(sorted)-1]
	x, watch := pgtest.Connect(t, url), pgtest.Connect(t, url)
	if _, err := x.Exec(ctx, `BEGIN`); err != nil {
		t.Fatal(err)
	}
	if _, err := x.Exec(ctx, `SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE`, mid); err != nil {
		t.Fatal(err)
	}
	other := make(chan error, 1)
	go func() {
		// Once the group waits for the task held, take the highest.
		deadline := time.Now().Add(10 * time.Second)
		for {
			var waiting int
			err := watch.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'transactionid'
				AND query LIKE 'WITH w AS (UPDATE tasks%'`).Scan(&waiting)
			if err != nil || waiting > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Millisecond)
		}
		_, err := x.Exec(ctx, `SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE`, high)
		if err == nil {
			_, err = x.Exec(ctx, `COMMIT`)
		}
		other <- err
	}()
	var updates []func() error
	for _, id := range slices.Backward(ids) { // queued from the highest task down
		updates = append(updates, func() error {
			return a.Update(ctx, id, func(tx store.Tx) error {
				_, err := advance(tx, "worker-a")
				return err
			})
		})
	}
	before := a.Stats()
	whileLeaderHeld(t, a, "held", 10*time.Millisecond, updates...)
	if err := <-other; err != nil {
		t.Fatalf("the other transaction: %v", err)
	}
	if d := a.Stats().Sub(before); d.Checked != int64(len(ids)) || d.Stale != 0 {
		t.Errorf("checked %d, stale %d; want %d, 0", d.Checked, d.Stale, len(ids))
	}
}

// A Create whose fn finds its execution absent and leaves it so writes
// nothing that could check that it is still absent: in a group with
// checked writes, it still gets the guard, and when the execution exists
// after all, fn runs again and sees it.
func TestCheckedGroupWithCreateThatFindsNothing(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "held")
	keptBy(t, a, "k")
	create(t, b, "c") // exists, though a has not seen it
	var found bool
	whileLeaderHeld(t, a, "held", 10*time.Millisecond,
		func() error {
			return a.Update(ctx, "k", func(tx store.Tx) error {
				_, err := advance(tx, "worker-a")
				return err
			})
		},
		func() error {
			return a.Create(ctx, "c", func(tx store.Tx) error {
				_, err := tx.Execution()
				found = err == nil
				return nil // nothing to do if absent
			})
		})
	if !found {
		t.Error("the Create's fn last saw its execution absent; it exists")
	}
}

// Checked writes check the execution's row before anything else is
// written: a step that another process recorded meanwhile, which fn takes
// for a new one (its insert would fail on the step's key), only makes the
// Update find its execution changed, and fn then runs on what is stored.
func TestCheckedWritesCheckTheRowFirst(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	keptBy(t, a, "e")
	if err := b.Update(ctx, "e", func(tx store.Tx) error {
		return tx.PutStep(&store.Step{Name: "x", Status: store.StepDone, Attempt: 1})
	}); err != nil {
		t.Fatal(err)
	}
	var attempt int
	err := a.Update(ctx, "e", func(tx store.Tx) error {
		steps, err := tx.Steps()
		if err != nil {
			return err
		}
		attempt = 1
		for _, s := range steps {
			if s.Name == "x" {
				attempt = s.Attempt + 1
			}
		}
		// The step first, as fn sees fit; then the row and the task.
		if err := tx.PutStep(&store.Step{Name: "x", Status: store.StepDone, Attempt: attempt}); err != nil {
			return err
		}
		if _, err := moveOn(tx); err != nil {
			return err
		}
		tasks, err := tx.Tasks()
		if err != nil {
			return err
		}
		tasks[0].LeaseUntil = base.Add(time.Second)
		return tx.PutTask(&tasks[0])
	})
	if err != nil {
		t.Fatalf("an Update whose kept execution had a step added: %v", err)
	}
	if st := a.Stats(); attempt != 2 || st.Stale != 1 {
		t.Errorf("fn last saw x at attempt %d, stale %d; want 2, 1", attempt-1, st.Stale)
	}
}
