package storetest

import (
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

// claim claims from the default queue.
func claim(t *testing.T, s store.Store, owner string, now time.Time, lease time.Duration, limit int) []store.Task {
	t.Helper()
	return claimQ(t, s, owner, "", now, lease, limit)
}

func claimQ(t *testing.T, s store.Store, owner, queue string, now time.Time, lease time.Duration, limit int) []store.Task {
	t.Helper()
	got, err := s.Claim(t.Context(), owner, queue, now, lease, limit)
	if err != nil {
		t.Fatalf("Claim(%s, queue %q, %v): %v", owner, queue, now, err)
	}
	return got
}

// leased returns tasks as a Claim returns them: leased, and counted.
func leased(owner string, until time.Time, tasks ...store.Task) []store.Task {
	out := make([]store.Task, len(tasks))
	for i, t := range tasks {
		t.Owner, t.LeaseUntil = owner, until
		t.Claims++
		out[i] = t
	}
	return out
}

// reclaimed returns task as claimed n times before, optionally made ready at a new time.
func reclaimed(task store.Task, n int, readyAt ...time.Time) store.Task {
	task.Claims = n
	if len(readyAt) > 0 {
		task.ReadyAt = readyAt[0]
	}
	return task
}

func testClaimOrder(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	// By ID: t1..t3 in e1, t4..t6 in e2.
	t1 := addTasks(t, s, "e1", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(3)})[0]
	t2 := addTasks(t, s, "e1", store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: at(1)})[0]
	t3 := addTasks(t, s, "e1", store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: at(10)})[0]
	t4 := addTasks(t, s, "e2", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(1)})[0]
	t5 := addTasks(t, s, "e2", store.Task{Kind: store.TaskCompensate, ReadyAt: at(5)})[0]
	t6 := addTasks(t, s, "e2", store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: at(-10)})[0]

	if got := claim(t, s, "w1", at(0), time.Minute, 10); len(got) != 1 || got[0].ID != t6.ID {
		t.Fatalf("Claim at 0 = %v, want only task %d (ready at -10)", ids(got), t6.ID)
	}
	// At 5: t2 and t4 tie at 1 (t2 has the lower ID), then t1 at 3, then t5 at 5 (ReadyAt == now).
	got := claim(t, s, "w2", at(5), 30*time.Second, 3)
	check(t, "Claim at 5, limit 3", got, leased("w2", at(35), t2, t4, t1))
	got = claim(t, s, "w3", at(5), 30*time.Second, 3)
	check(t, "second Claim at 5", got, leased("w3", at(35), t5))
	if got := claim(t, s, "w3", at(9), time.Minute, 10); len(got) != 0 {
		t.Errorf("Claim at 9 = %v, want nothing (all ready tasks leased)", ids(got))
	}
	// The leases are visible in the executions' tasks.
	check(t, "Tasks(e1)", txTasks(t, s, "e1"), append(leased("w2", at(35), t1, t2), t3))
	check(t, "Tasks(e2)", txTasks(t, s, "e2"), append(append(leased("w2", at(35), t4), leased("w3", at(35), t5)...), leased("w1", at(60), t6)...))
	// Limit 0 claims nothing.
	if got := claim(t, s, "w4", at(100), time.Minute, 0); len(got) != 0 {
		t.Errorf("Claim with limit 0 = %v, want nothing", ids(got))
	}
}

func testClaimLeases(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	task := addTasks(t, s, "e", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(0)})[0]
	if got := claim(t, s, "w1", at(-1), time.Minute, 1); len(got) != 0 {
		t.Fatalf("claimed a task before its ReadyAt: %v", got)
	}
	check(t, "first claim", claim(t, s, "w1", at(0), 10*time.Second, 1), leased("w1", at(10), task))
	for _, now := range []int{0, 5, 9} {
		if got := claim(t, s, "w2", at(now), 10*time.Second, 1); len(got) != 0 {
			t.Errorf("at %d, w2 claimed %v leased by w1 until 10", now, got)
		}
	}
	// The lease expires at LeaseUntil.
	check(t, "claim at expiry", claim(t, s, "w2", at(10), 10*time.Second, 1), leased("w2", at(20), reclaimed(task, 1)))
	check(t, "task after takeover", txTasks(t, s, "e"), leased("w2", at(20), reclaimed(task, 1)))
	if got := claim(t, s, "w1", at(15), 10*time.Second, 1); len(got) != 0 {
		t.Errorf("w1 claimed %v back from w2 before its lease expired", got)
	}
	check(t, "claim long after expiry", claim(t, s, "w1", at(100), time.Hour, 5), leased("w1", at(3700), reclaimed(task, 2)))
	// Putting a task resets its count.
	update(t, s, "e", func(tx store.Tx) error {
		cur := reclaimed(task, 0)
		cur.ReadyAt = at(200)
		return tx.PutTask(&cur)
	})
	check(t, "claim after put", claim(t, s, "w1", at(200), time.Second, 1), leased("w1", at(201), reclaimed(task, 0, at(200))))
}

func testClaimEager(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	task := addTasks(t, s, "e", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(0), Owner: "w0", LeaseUntil: at(10)})[0]
	check(t, "eagerly leased task", txTasks(t, s, "e"), []store.Task{task})
	if got := claim(t, s, "w1", at(5), time.Minute, 10); len(got) != 0 {
		t.Errorf("claimed eagerly leased task before its lease expired: %v", got)
	}
	if lost, err := s.ExtendLeases(t.Context(), "w0", []int64{task.ID}, at(20)); err != nil || len(lost) != 0 {
		t.Errorf("the eager owner cannot extend its lease: lost %v, %v", lost, err)
	}
	if got := claim(t, s, "w1", at(15), time.Minute, 10); len(got) != 0 {
		t.Errorf("claimed eagerly leased task before its extended lease expired: %v", got)
	}
	check(t, "claim after expiry", claim(t, s, "w1", at(20), time.Minute, 10), leased("w1", at(80), task))
}

func testClaimConcurrent(t *testing.T, s store.Store) {
	const n, workers = 200, 4
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	var want []int64
	for _, exec := range []string{"e1", "e2"} {
		tasks := make([]store.Task, n/2)
		for i := range tasks {
			tasks[i] = store.Task{Step: fmt.Sprintf("s%d", i), Kind: store.TaskStep, ReadyAt: at(i % 7)}
		}
		want = append(want, ids(addTasks(t, s, exec, tasks...))...)
	}
	var (
		mu   sync.Mutex
		got  = map[int64]string{}
		dups []string
		wg   sync.WaitGroup
	)
	for w := range workers {
		owner := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for {
				tasks, err := s.Claim(t.Context(), owner, "", at(100), time.Hour, 1)
				if err != nil {
					t.Errorf("%s: Claim: %v", owner, err)
					return
				}
				if len(tasks) == 0 {
					return
				}
				mu.Lock()
				for _, task := range tasks {
					if prev, ok := got[task.ID]; ok {
						dups = append(dups, fmt.Sprintf("task %d claimed by %s and %s", task.ID, prev, owner))
					}
					got[task.ID] = owner
					if task.Owner != owner {
						t.Errorf("%s claimed task %d with Owner %q", owner, task.ID, task.Owner)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, d := range dups {
		t.Error(d)
	}
	var gotIDs []int64
	for id := range got {
		gotIDs = append(gotIDs, id)
	}
	slices.Sort(gotIDs)
	check(t, "claimed task IDs", gotIDs, want)
}

func testExtendLeases(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	tasks := addTasks(t, s, "e",
		store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(0)},
		store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: at(1)},
		store.Task{Step: "c", Kind: store.TaskStep, ReadyAt: at(2)},
		store.Task{Step: "d", Kind: store.TaskStep, ReadyAt: at(3)},
	)
	a, b, c, d := tasks[0], tasks[1], tasks[2], tasks[3]
	check(t, "claim", claim(t, s, "w1", at(5), 10*time.Second, 3), leased("w1", at(15), a, b, c))
	check(t, "claim d", claim(t, s, "w2", at(5), 100*time.Second, 3), leased("w2", at(105), d))
	// b is deleted; a is extended; c expires and is taken over by w2.
	update(t, s, "e", func(tx store.Tx) error { return tx.DeleteTask(b.ID) })
	lost, err := s.ExtendLeases(t.Context(), "w1", []int64{a.ID}, at(40))
	if err != nil || len(lost) != 0 {
		t.Fatalf("ExtendLeases while held: lost %v, %v", lost, err)
	}
	check(t, "takeover of c", claim(t, s, "w2", at(20), 10*time.Second, 5), leased("w2", at(30), reclaimed(c, 1)))
	const missing = 1 << 50
	lost, err = s.ExtendLeases(t.Context(), "w1", []int64{a.ID, b.ID, c.ID, d.ID, missing}, at(50))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(lost)
	check(t, "lost", lost, []int64{b.ID, c.ID, d.ID, missing})
	check(t, "tasks", txTasks(t, s, "e"),
		append(append(leased("w1", at(50), a), leased("w2", at(30), reclaimed(c, 1))...), leased("w2", at(105), d)...))
	if got := claim(t, s, "w3", at(35), time.Second, 5); len(got) != 1 || got[0].ID != c.ID {
		t.Errorf("Claim at 35 = %v, want only c (%d): a was extended to 50, d is leased to 105", ids(got), c.ID)
	}
	if lost, err := s.ExtendLeases(t.Context(), "w1", nil, at(50)); err != nil || len(lost) != 0 {
		t.Errorf("ExtendLeases(nil) = %v, %v", lost, err)
	}
}

func testRelease(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	tasks := addTasks(t, s, "e",
		store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: at(0)},
		store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: at(1)},
	)
	a, b := tasks[0], tasks[1]
	claim(t, s, "w1", at(5), time.Hour, 1)
	claim(t, s, "w2", at(5), time.Hour, 1)
	// Releasing someone else's lease, an unknown ID or nothing changes nothing.
	if err := s.Release(t.Context(), "w1", []int64{b.ID, 1 << 50}); err != nil {
		t.Fatal(err)
	}
	if err := s.Release(t.Context(), "w1", nil); err != nil {
		t.Fatal(err)
	}
	if got := claim(t, s, "w3", at(6), time.Hour, 5); len(got) != 0 {
		t.Errorf("claimed %v after releasing another owner's lease", ids(got))
	}
	if err := s.Release(t.Context(), "w1", []int64{a.ID}); err != nil {
		t.Fatal(err)
	}
	check(t, "tasks after release", txTasks(t, s, "e"), append([]store.Task{reclaimed(a, 1)}, leased("w2", at(3605), b)...))
	check(t, "claim after release", claim(t, s, "w3", at(6), time.Minute, 5), leased("w3", at(66), reclaimed(a, 1)))
	if lost, err := s.ExtendLeases(t.Context(), "w1", []int64{a.ID}, at(100)); err != nil || !slices.Equal(lost, []int64{a.ID}) {
		t.Errorf("ExtendLeases after release = %v, %v; want a lost", lost, err)
	}
}

func testNextReadyAt(t *testing.T, s store.Store) {
	next := func(now time.Time) (time.Time, bool) {
		t.Helper()
		when, ok, err := s.NextReadyAt(t.Context(), now)
		if err != nil {
			t.Fatalf("NextReadyAt: %v", err)
		}
		return when, ok
	}
	want := func(what string, now time.Time, wantAt time.Time, wantOK bool) {
		t.Helper()
		got, ok := next(now)
		if ok != wantOK || (ok && !got.Equal(wantAt)) {
			t.Errorf("%s: NextReadyAt(%v) = %v, %v; want %v, %v", what, now, got, ok, wantAt, wantOK)
		}
		if ok && got.Location() != time.UTC {
			t.Errorf("%s: NextReadyAt in %v, want UTC", what, got.Location())
		}
	}
	want("empty store", base, time.Time{}, false)
	create(t, s, minimal("e"))
	tasks := addTasks(t, s, "e",
		store.Task{Step: "past", Kind: store.TaskStep, ReadyAt: at(-1)},
		store.Task{Step: "later", Kind: store.TaskStep, ReadyAt: at(10)},
	)
	want("ready now and at 10", at(1), at(10), true)
	want("at exactly 10", at(10), time.Time{}, false)
	want("before all", at(-5), at(-1), true)
	// A lease that ends at 5 makes the past task claimable again at 5.
	claim(t, s, "w1", at(1), 4*time.Second, 1)
	want("lease until 5", at(1), at(5), true)
	want("lease expired", at(6), at(10), true)
	// A lease past a later ReadyAt counts from its end.
	update(t, s, "e", func(tx store.Tx) error {
		task := tasks[1]
		task.Owner, task.LeaseUntil = "w2", at(30)
		return tx.PutTask(&task)
	})
	want("leased later task", at(6), at(30), true)
	// A leased task whose ReadyAt is after its lease counts from ReadyAt.
	addTasks(t, s, "e", store.Task{Step: "eager", Kind: store.TaskStep, ReadyAt: at(20), Owner: "w3", LeaseUntil: at(12)})
	want("eager task", at(6), at(20), true)
	if err := s.Release(t.Context(), "w2", []int64{tasks[1].ID}); err != nil {
		t.Fatal(err)
	}
	want("released", at(6), at(10), true)
	want("after everything", at(30), time.Time{}, false)
}

// testClaimNext checks store.NextClaimer, in stores that implement it:
// the claim, the snapshots of the claimed tasks as Snapshot reads them
// after the claim, and the next wake-up as NextReadyAt tells it then.
func testClaimNext(t *testing.T, s store.Store) {
	nc, ok := s.(store.NextClaimer)
	if !ok {
		t.Skip("the store does not implement store.NextClaimer")
	}
	claimNext := func(what, owner string, now time.Time, lease time.Duration, limit int, wantSteps []string, wantAt time.Time, wantOK bool) {
		t.Helper()
		c, err := nc.ClaimNext(t.Context(), owner, "", now, lease, limit)
		if err != nil {
			t.Fatalf("%s: ClaimNext: %v", what, err)
		}
		got, next, ok := c.Tasks, c.Next, c.HasNext
		var steps []string
		for _, task := range got {
			steps = append(steps, task.Step)
			if task.Owner != owner || !task.LeaseUntil.Equal(now.Add(lease)) {
				t.Errorf("%s: claimed %s leased to %q until %v, want %q until %v", what, task.Step, task.Owner, task.LeaseUntil, owner, now.Add(lease))
			}
			want, err := s.Snapshot(t.Context(), task.Exec, task.Step)
			if err != nil {
				t.Fatal(err)
			}
			if snap := c.Snapshots[task.ID]; !sameSnapshot(snap, want) {
				t.Errorf("%s: snapshot of %s/%s\n%+v\nwant what Snapshot reads\n%+v", what, task.Exec, task.Step, snap, want)
			}
		}
		if len(c.Snapshots) > len(got) {
			t.Errorf("%s: %d snapshots for %d tasks", what, len(c.Snapshots), len(got))
		}
		if !slices.Equal(steps, wantSteps) {
			t.Errorf("%s: claimed %v, want %v", what, steps, wantSteps)
		}
		if ok != wantOK || (ok && !next.Equal(wantAt)) {
			t.Errorf("%s: next = %v, %v; want %v, %v", what, next, ok, wantAt, wantOK)
		}
		if ok && next.Location() != time.UTC {
			t.Errorf("%s: next in %v, want UTC", what, next.Location())
		}
		if at, ok2, err := s.NextReadyAt(t.Context(), now); err != nil || ok2 != ok || !at.Equal(next) {
			t.Errorf("%s: NextReadyAt after ClaimNext = %v, %v, %v; want what ClaimNext said", what, at, ok2, err)
		}
	}
	claimNext("empty store", "w1", base, time.Minute, 5, nil, time.Time{}, false)
	create(t, s, minimal("e"))
	addTasks(t, s, "e",
		store.Task{Step: "past", Kind: store.TaskStep, ReadyAt: at(-1)},
		store.Task{Step: "later", Kind: store.TaskStep, ReadyAt: at(10)},
	)
	claimNext("the claimed task's lease ends first", "w1", at(1), 4*time.Second, 1, []string{"past"}, at(5), true)
	claimNext("nothing claimable", "w2", at(2), time.Minute, 5, nil, at(5), true)
	claimNext("no room", "w2", at(6), time.Minute, 0, nil, at(10), true)
	claimNext("lease expired", "w2", at(6), time.Minute, 5, []string{"past"}, at(10), true)
	claimNext("after everything", "w3", at(100), time.Second, 5, []string{"past", "later"}, at(101), true)

	// Executions with steps and journals, two tasks of one claimed at
	// once, and names that need quoting in an array's text.
	odd := minimal(`x,"{odd} é`)
	odd.Inputs = []store.Value{{Type: "int", Data: []byte("7")}}
	create(t, s, odd)
	update(t, s, odd.ID, func(tx store.Tx) error {
		for _, st := range []store.Step{
			{Name: `a,"b"`, Status: store.StepDone, Output: &store.Value{Type: "int", Data: []byte("1")}, Seq: 1},
			{Name: "Zé", Status: store.StepReady},
			{Name: "b", Status: store.StepSuspended, Wait: "sleep"},
		} {
			if err := tx.PutStep(&st); err != nil {
				return err
			}
		}
		for _, e := range []store.JournalEntry{
			{Step: "b", Seq: 0, Kind: "run", Name: "one", Data: []byte("1"), Done: true},
			{Step: "b", Seq: 1, Kind: "sleep", Name: "nap", WakeAt: at(200)},
			{Step: `a,"b"`, Seq: 0, Kind: "run", Name: "other step's", Done: true},
		} {
			if err := tx.PutJournal(&e); err != nil {
				return err
			}
		}
		return nil
	})
	create(t, s, minimal("plain"))
	addTasks(t, s, "plain", store.Task{Step: "p", Kind: store.TaskStep, ReadyAt: at(-10)})
	addTasks(t, s, odd.ID,
		store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: at(-9)},
		store.Task{Step: "Zé", Kind: store.TaskStep, ReadyAt: at(-8)},
	)
	claimNext("executions with steps and journals", "w4", at(400), time.Second, 3, []string{"p", "b", "Zé"}, at(401), true)
}

// sameSnapshot reports whether two snapshots hold the same records, an
// empty list being the same as none.
func sameSnapshot(a, b *store.Snapshot) bool {
	if a == nil || b == nil {
		return a == b
	}
	if !reflect.DeepEqual(a.Execution, b.Execution) || len(a.Steps) != len(b.Steps) || len(a.Journal) != len(b.Journal) {
		return false
	}
	for i := range a.Steps {
		if !reflect.DeepEqual(a.Steps[i], b.Steps[i]) {
			return false
		}
	}
	for i := range a.Journal {
		if !reflect.DeepEqual(a.Journal[i], b.Journal[i]) {
			return false
		}
	}
	return true
}
