package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

// testExecutionRuns: an execution's earlier runs round-trip, times
// normalized; nil and empty lists come back empty, and PutExecution
// replaces or clears them.
func testExecutionRuns(t *testing.T, s store.Store) {
	zone := time.FixedZone("R", -(2*3600 + 30*60))
	t0 := time.Date(2031, 1, 2, 3, 4, 5, 678901234, zone)
	runs := []store.RunRecord{
		{Run: 1, StartedAt: t0, EndedAt: t0.Add(time.Hour + 1), Steps: 12},
		{Run: 2, StartedAt: t0.Add(2 * time.Hour), EndedAt: t0.Add(3 * time.Hour), Steps: 0},
		{Run: 3}, // zero times
	}
	for _, c := range []struct {
		id   string
		runs []store.RunRecord
	}{
		{"nil", nil},
		{"empty", []store.RunRecord{}},
		{"some", runs},
	} {
		want := minimal(c.id)
		want.Run = len(c.runs) + 1
		want.Runs = c.runs
		update(t, s, c.id, func(tx store.Tx) error {
			e := want
			if err := tx.CreateExecution(&e); err != nil {
				return err
			}
			got, err := tx.Execution()
			if err != nil {
				return err
			}
			check(t, c.id+": Tx.Execution in the creating Update", got, &want)
			return nil
		})
		got, err := s.Execution(t.Context(), c.id)
		if err != nil {
			t.Fatalf("Execution(%s): %v", c.id, err)
		}
		check(t, c.id+": Store.Execution", got, &want)
		for i, r := range got.Runs {
			if !r.StartedAt.IsZero() && r.StartedAt.Location() != time.UTC || !r.EndedAt.IsZero() && r.EndedAt.Location() != time.UTC {
				t.Errorf("%s: Runs[%d] times not in UTC: %v, %v", c.id, i, r.StartedAt, r.EndedAt)
			}
		}
		if len(c.runs) == 0 && len(got.Runs) != 0 {
			t.Errorf("%s: Runs = %+v, want none", c.id, got.Runs)
		}
	}

	// PutExecution adds a run, then clears the list.
	e, err := s.Execution(t.Context(), "some")
	if err != nil {
		t.Fatal(err)
	}
	e.Runs = append(e.Runs, store.RunRecord{Run: 4, StartedAt: t0.Add(4 * time.Hour), EndedAt: t0.Add(5 * time.Hour), Steps: 3})
	e.Run = 5
	want := *e
	update(t, s, "some", func(tx store.Tx) error {
		put := want
		if err := tx.PutExecution(&put); err != nil {
			return err
		}
		got, err := tx.Execution()
		if err != nil {
			return err
		}
		check(t, "Tx.Execution after adding a run", got, &want)
		return nil
	})
	update(t, s, "some", func(tx store.Tx) error {
		got, err := tx.Execution()
		if err != nil {
			return err
		}
		check(t, "Tx.Execution in a later Update", got, &want)
		return nil
	})
	got, err := s.Execution(t.Context(), "some")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Store.Execution after adding a run", got, &want)
	want.Runs = nil
	update(t, s, "some", func(tx store.Tx) error { e := want; return tx.PutExecution(&e) })
	got, err = s.Execution(t.Context(), "some")
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Runs) != 0 {
		t.Errorf("Runs = %+v after clearing them", got.Runs)
	}
	check(t, "Store.Execution after clearing runs", got, &want)
	// List returns them too.
	list, _, err := s.List(t.Context(), store.ListQuery{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list {
		if e.ID == "nil" || e.ID == "empty" || e.ID == "some" {
			if len(e.Runs) != 0 {
				t.Errorf("List: %s has Runs %+v, want none", e.ID, e.Runs)
			}
		}
	}
}

// testStepWorker: the worker of a step's last attempt round-trips, and
// replacing the step with one without a worker clears it.
func testStepWorker(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	a := store.Step{Name: "a", Status: store.StepRunning, Attempt: 1, Worker: "host-1/42"}
	b := store.Step{Name: "b", Status: store.StepReady}
	update(t, s, "e", func(tx store.Tx) error {
		for _, st := range []store.Step{a, b} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		got, err := tx.Steps()
		if err != nil {
			return err
		}
		check(t, "Tx.Steps in the writing Update", got, withExec("e", a, b))
		return nil
	})
	got, err := s.Steps(t.Context(), "e")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Store.Steps", got, withExec("e", a, b))

	a.Attempt, a.Worker = 2, "host-2/7"
	b.Worker = "host-1/42"
	update(t, s, "e", func(tx store.Tx) error {
		for _, st := range []store.Step{a, b} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		return nil
	})
	got, _ = s.Steps(t.Context(), "e")
	check(t, "Store.Steps after a new attempt", got, withExec("e", a, b))

	a.Worker = ""
	update(t, s, "e", func(tx store.Tx) error { return tx.PutStep(&a) })
	got, _ = s.Steps(t.Context(), "e")
	check(t, "Store.Steps after clearing the worker", got, withExec("e", a, b))
	if got[0].Worker != "" {
		t.Errorf("Worker = %q after clearing it", got[0].Worker)
	}
}

// testTaskQueueAndPin: a task's queue and pin round-trip through AddTask,
// PutTask, Tx.Tasks, Store.Tasks and Claim, "" (the default queue, no pin)
// included.
func testTaskQueueAndPin(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	tasks := addTasks(t, s, "e",
		store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(0)},
		store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: at(1), Queue: "gpu"},
		store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: at(2), Queue: "gpu", Worker: "w1"},
		store.Task{Kind: store.TaskCompensate, ReadyAt: at(3), Worker: "w1", Owner: "w1", LeaseUntil: at(60)},
	)
	check(t, "Tasks after AddTask", txTasks(t, s, "e"), tasks)

	// PutTask moves a task to another queue and pins it, or unpins it.
	a, c := tasks[0], tasks[2]
	a.Queue, a.Worker = "io", "w2"
	c.Queue, c.Worker = "", ""
	update(t, s, "e", func(tx store.Tx) error {
		if err := tx.PutTask(&a); err != nil {
			return err
		}
		return tx.PutTask(&c)
	})
	tasks[0], tasks[2] = a, c
	check(t, "Tasks after PutTask", txTasks(t, s, "e"), tasks)

	// Claim hands them out with their queue and pin.
	check(t, "Claim of queue io", claimQ(t, s, "w2", "io", at(10), time.Minute, 10), leased("w2", at(70), a))
	check(t, "Claim of queue gpu", claimQ(t, s, "w3", "gpu", at(10), time.Minute, 10), leased("w3", at(70), tasks[1]))
	check(t, "Claim of the default queue", claimQ(t, s, "w3", "", at(10), time.Minute, 10), leased("w3", at(70), c))
	check(t, "Tasks after the claims", txTasks(t, s, "e"), append(append(append(
		leased("w2", at(70), a), leased("w3", at(70), tasks[1])...), leased("w3", at(70), c)...), tasks[3]))
}

// testClaimQueues: Claim only hands out tasks of the queue it is asked
// for, in the usual order, and leaves the others claimable.
func testClaimQueues(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	d1 := addTasks(t, s, "e1", store.Task{Step: "d1", Kind: store.TaskStep, ReadyAt: at(3)})[0]
	a1 := addTasks(t, s, "e1", store.Task{Step: "a1", Kind: store.TaskStep, ReadyAt: at(2), Queue: "a"})[0]
	b1 := addTasks(t, s, "e2", store.Task{Step: "b1", Kind: store.TaskStep, ReadyAt: at(0), Queue: "b"})[0]
	a2 := addTasks(t, s, "e2", store.Task{Step: "a2", Kind: store.TaskStep, ReadyAt: at(1), Queue: "a"})[0]
	d2 := addTasks(t, s, "e2", store.Task{Step: "d2", Kind: store.TaskStep, ReadyAt: at(1)})[0]
	a3 := addTasks(t, s, "e1", store.Task{Step: "a3", Kind: store.TaskStep, ReadyAt: at(20), Queue: "a"})[0]
	// Queue names are exact.
	addTasks(t, s, "e1", store.Task{Step: "A", Kind: store.TaskStep, ReadyAt: at(0), Queue: "A"})
	addTasks(t, s, "e1", store.Task{Step: "a ", Kind: store.TaskStep, ReadyAt: at(0), Queue: "a "})

	if got := claimQ(t, s, "w", "nope", at(100), time.Minute, 10); len(got) != 0 {
		t.Errorf("Claim of an unknown queue = %v, want nothing", ids(got))
	}
	check(t, "Claim of queue a", claimQ(t, s, "w", "a", at(5), time.Minute, 10), leased("w", at(65), a2, a1))
	if got := claimQ(t, s, "w", "a", at(5), time.Minute, 10); len(got) != 0 {
		t.Errorf("second Claim of queue a = %v, want nothing (a3 is not ready)", ids(got))
	}
	check(t, "Claim of the default queue, limit 1", claimQ(t, s, "w", "", at(5), time.Minute, 1), leased("w", at(65), d2))
	check(t, "Claim of the default queue", claimQ(t, s, "w", "", at(5), time.Minute, 10), leased("w", at(65), d1))
	check(t, "Claim of queue b", claimQ(t, s, "w", "b", at(5), time.Minute, 10), leased("w", at(65), b1))
	check(t, "Claim of queue a later", claimQ(t, s, "w", "a", at(20), time.Minute, 10), leased("w", at(80), a3))
	// Expired leases are taken over within the queue only.
	check(t, "takeover in queue b", claimQ(t, s, "v", "b", at(65), time.Minute, 10), leased("v", at(125), reclaimed(b1, 1)))
	if got := claimQ(t, s, "v", "", at(64), time.Minute, 10); len(got) != 0 {
		t.Errorf("Claim of the default queue before its leases expire = %v, want nothing", ids(got))
	}
	got := claimQ(t, s, "v", "A", at(100), time.Minute, 10)
	if len(got) != 1 || got[0].Step != "A" || got[0].Queue != "A" {
		t.Errorf("Claim of queue A = %+v, want only its task", got)
	}
}

// alive records that worker is alive until until, with no leases to extend.
func alive(t *testing.T, s store.Store, worker string, until time.Time) {
	t.Helper()
	lost, err := s.ExtendLeases(t.Context(), worker, nil, until)
	if err != nil || len(lost) != 0 {
		t.Fatalf("ExtendLeases(%s, nil, %v) = %v, %v", worker, until, lost, err)
	}
}

// testClaimPinned: a task pinned to a worker goes only to that worker
// while it is alive, and to any worker once it is not, or when it never
// said it was alive.
func testClaimPinned(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	pin := func(step, worker string, readyAt int) store.Task {
		t.Helper()
		return addTasks(t, s, "e", store.Task{Step: step, Kind: store.TaskStep, ReadyAt: at(readyAt), Worker: worker})[0]
	}
	// Claims lease for an hour, so that no task claimed earlier comes back
	// in a later claim.
	const hour = time.Hour
	until := func(n int) time.Time { return at(n).Add(hour) }

	// A pin to a worker that never registered does not hold.
	ghost := pin("ghost", "w0", 0)
	check(t, "task pinned to an unknown worker", claim(t, s, "w2", at(1), hour, 10), leased("w2", until(1), ghost))

	alive(t, s, "w1", at(100))
	mine := pin("mine", "w1", 0)
	free := pin("free", "", 1)
	theirs := pin("theirs", "w1", 2)
	// w2 passes over w1's tasks and takes the unpinned one.
	check(t, "w2 claims while w1 is alive", claim(t, s, "w2", at(10), hour, 10), leased("w2", until(10), free))
	for _, now := range []int{10, 50, 99} {
		if got := claim(t, s, "w2", at(now), hour, 10); len(got) != 0 {
			t.Errorf("at %d, w2 claimed %v pinned to w1, alive until 100", now, ids(got))
		}
	}
	// w1 gets its own.
	check(t, "w1 claims its task", claim(t, s, "w1", at(10), time.Minute, 1), leased("w1", at(70), mine))
	// Leases still count for the pinned worker: once w1's lease on mine
	// expires, w2 may not take it over while w1 is alive.
	if got := claim(t, s, "w2", at(80), hour, 10); len(got) != 0 {
		t.Errorf("at 80, w2 claimed %v pinned to w1, alive until 100", ids(got))
	}
	// At w1's alive-until, it no longer counts as alive.
	check(t, "w2 claims once w1 is not alive", claim(t, s, "w2", at(100), hour, 10),
		leased("w2", until(100), reclaimed(mine, 1), theirs))

	// A later ExtendLeases moves the alive-until on; an earlier one moves
	// it back (the last one says).
	late := pin("late", "w1", 200)
	alive(t, s, "w1", at(300))
	if got := claim(t, s, "w2", at(250), hour, 10); len(got) != 0 {
		t.Errorf("at 250, w2 claimed %v pinned to w1, alive until 300", ids(got))
	}
	alive(t, s, "w1", at(260))
	check(t, "w2 claims after w1 said it stops at 260", claim(t, s, "w2", at(260), hour, 10), leased("w2", until(260), late))

	// The pinned worker claims its task also when it is not alive (anyone may).
	gone := pin("gone", "w1", 400)
	check(t, "w1 claims its task when not alive", claim(t, s, "w1", at(400), hour, 10), leased("w1", until(400), gone))

	// Another worker's liveness does not hold a pin.
	alive(t, s, "w3", at(1000))
	other := pin("other", "w4", 500)
	check(t, "task pinned to w4 while w3 is alive", claim(t, s, "w2", at(500), hour, 10), leased("w2", until(500), other))

	// Pins hold per queue too.
	queued := addTasks(t, s, "e", store.Task{Step: "queued", Kind: store.TaskStep, ReadyAt: at(600), Queue: "q", Worker: "w3"})[0]
	if got := claimQ(t, s, "w2", "q", at(600), hour, 10); len(got) != 0 {
		t.Errorf("w2 claimed %v of queue q pinned to w3, alive until 1000", ids(got))
	}
	if got := claim(t, s, "w3", at(600), hour, 10); len(got) != 0 {
		t.Errorf("w3 claimed %v from the default queue, where nothing is claimable", ids(got))
	}
	check(t, "w3 claims its task of queue q", claimQ(t, s, "w3", "q", at(600), hour, 10), leased("w3", until(600), queued))
}

// testExtendLeasesLiveness: ExtendLeases records the owner's liveness with
// or without leases to extend, and keeping the workers table small never
// forgets a worker that is still alive.
func testExtendLeasesLiveness(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	// Empty ids, nil or not: nothing lost, liveness recorded.
	if lost, err := s.ExtendLeases(t.Context(), "w1", []int64{}, at(100)); err != nil || len(lost) != 0 {
		t.Fatalf("ExtendLeases(w1, [], 100) = %v, %v", lost, err)
	}
	// w2 says it is alive until later than w1: w1 is still alive before 100.
	alive(t, s, "w2", at(130))
	p1 := addTasks(t, s, "e", store.Task{Step: "p1", Kind: store.TaskStep, ReadyAt: at(0), Worker: "w1"})[0]
	p2 := addTasks(t, s, "e", store.Task{Step: "p2", Kind: store.TaskStep, ReadyAt: at(0), Worker: "w2"})[0]
	if got := claim(t, s, "w3", at(50), time.Second, 10); len(got) != 0 {
		t.Errorf("claimed %v pinned to workers alive until 100 and 130", ids(got))
	}
	if got := claim(t, s, "w3", at(100), time.Second, 10); len(got) != 1 || got[0].ID != p1.ID {
		t.Errorf("claim at 100 = %v, want only %d, pinned to w1 (alive until 100)", ids(got), p1.ID)
	}
	p1 = leased("w3", at(101), p1)[0]

	// ExtendLeases with leases records liveness as well, also when it
	// lost them all.
	held := addTasks(t, s, "e", store.Task{Step: "held", Kind: store.TaskStep, ReadyAt: at(0), Owner: "w1", LeaseUntil: at(100)})[0]
	if lost, err := s.ExtendLeases(t.Context(), "w1", []int64{held.ID}, at(200)); err != nil || len(lost) != 0 {
		t.Fatalf("ExtendLeases(w1, held) = %v, %v", lost, err)
	}
	if lost, err := s.ExtendLeases(t.Context(), "w2", []int64{held.ID}, at(200)); err != nil || !slices.Equal(lost, []int64{held.ID}) {
		t.Fatalf("ExtendLeases(w2, w1's task) = %v, %v; want it lost", lost, err)
	}
	if got := claim(t, s, "w3", at(150), time.Second, 10); len(got) != 0 {
		t.Errorf("claimed %v pinned to workers alive until 200", ids(got))
	}
	held.LeaseUntil = at(200)
	check(t, "tasks", txTasks(t, s, "e"), []store.Task{p1, p2, held})

	// Workers dead for days may be forgotten; that changes nothing, and a
	// worker alive further on is kept.
	day := 24 * time.Hour
	alive(t, s, "w2", at(0).Add(5*day))
	alive(t, s, "w4", at(0).Add(3*day))
	later := at(0).Add(4 * day)
	// p1 is pinned to w1, dead for days; held's lease expired; p2 is
	// pinned to w2, alive.
	check(t, "claim of tasks pinned to a dead and a live worker", claim(t, s, "w4", later, time.Minute, 10),
		leased("w4", later.Add(time.Minute), p1, held))
	check(t, "w2 claims its task", claim(t, s, "w2", later, time.Minute, 10), leased("w2", later.Add(time.Minute), p2))
}
