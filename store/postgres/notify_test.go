package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// events collects what a listener is told.
type events chan store.Event

func listen(t *testing.T, ctx context.Context, s *postgres.Store) events {
	t.Helper()
	ch := make(events, 100)
	if err := s.Listen(ctx, func(ev store.Event) { ch <- ev }); err != nil {
		t.Fatalf("Listen: %v", err)
	}
	return ch
}

// expect waits for the next events and checks them.
func (ch events) expect(t *testing.T, what string, want ...store.Event) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-ch:
			if !reflect.DeepEqual(got, w) {
				t.Errorf("%s: got event %+v, want %+v", what, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event, want %+v", what, w)
		}
	}
}

// none checks that no event comes for a while.
func (ch events) none(t *testing.T, what string) {
	t.Helper()
	select {
	case got := <-ch:
		t.Errorf("%s: got event %+v, want none", what, got)
	case <-time.After(200 * time.Millisecond):
	}
}

func exec(id string) store.Event { return store.Event{Kind: store.EventExec, Exec: id} }
func task(id string) store.Event { return store.Event{Kind: store.EventTask, Exec: id} }

var reset = store.Event{Kind: store.EventReset}

// TestNotify: changes committed through one store reach the listeners of
// another, once per Update, and only when the Update commits writes; an
// execution's creation and end only when the other store watches it.
func TestNotify(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	ch := listen(t, t.Context(), a)
	mine := listen(t, t.Context(), b) // b hears its own changes as well

	create(t, b, "e1")
	ch.none(t, "create, watched by its creator alone")
	mine.expect(t, "create, on the writing store", exec("e1"))

	var added store.Task
	err := b.Update(t.Context(), "e1", func(tx store.Tx) error {
		if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady}); err != nil {
			return err
		}
		added = store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base}
		return tx.AddTask(&added)
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "step and task", task("e1"))

	// Steps, journals and progress of the execution record say nothing;
	// its end does.
	err = b.Update(t.Context(), "e1", func(tx store.Tx) error {
		x, err := tx.Execution()
		if err != nil {
			return err
		}
		if err := tx.PutStep(&store.Step{Name: "z", Status: store.StepDone}); err != nil {
			return err
		}
		if err := tx.PutJournal(&store.JournalEntry{Step: "z", Kind: "run", Done: true}); err != nil {
			return err
		}
		x.Seq++
		return tx.PutExecution(x)
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.none(t, "progress")
	err = b.Update(t.Context(), "e1", func(tx store.Tx) error {
		// A task parked until a signal is not news for idle workers.
		return tx.AddTask(&store.Task{Step: "p", Kind: store.TaskStep, ReadyAt: time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)})
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.none(t, "parked task")

	// Only a task, leased at once: nothing became claimable, nothing else changed.
	err = b.Update(t.Context(), "e1", func(tx store.Tx) error {
		return tx.AddTask(&store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: base, Owner: "w", LeaseUntil: base.Add(time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Reads, and a failed Update, say nothing.
	if err := b.Update(t.Context(), "e1", func(tx store.Tx) error { _, err := tx.Steps(); return err }); err != nil {
		t.Fatal(err)
	}
	_ = b.Update(t.Context(), "e1", func(tx store.Tx) error {
		_ = tx.PutStep(&store.Step{Name: "c", Status: store.StepReady})
		return context.Canceled
	})
	ch.none(t, "eager task, read, failed Update")

	// A task put back without an owner.
	got, err := b.Claim(t.Context(), "w1", "", base, time.Minute, 1)
	if err != nil || len(got) != 1 {
		t.Fatalf("Claim = %v, %v", got, err)
	}
	err = b.Update(t.Context(), "e1", func(tx store.Tx) error {
		got[0].Owner, got[0].LeaseUntil = "", time.Time{}
		return tx.PutTask(&got[0])
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "task put back", task("e1"))

	// Release.
	create(t, b, "e2")
	ch.none(t, "create e2")
	err = b.Update(t.Context(), "e2", func(tx store.Tx) error {
		return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base, Owner: "w2", LeaseUntil: base.Add(time.Hour)})
	})
	if err != nil {
		t.Fatal(err)
	}
	tasks, _ := b.Tasks(t.Context(), "e2")
	if err := b.Release(t.Context(), "w2", []int64{tasks[0].ID}); err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "release", task("e2"))
	if err := b.Release(t.Context(), "w2", []int64{tasks[0].ID}); err != nil {
		t.Fatal(err)
	}
	ch.none(t, "release of nothing")

	// The end of an execution is news for the callers of Result as well,
	// and comes with the outcome; a later change of an execution already
	// finished is not news.
	finish := func(status store.Status) error {
		return b.Update(t.Context(), "e2", func(tx store.Tx) error {
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			x.Status, x.Seq = status, x.Seq+1
			x.Result = &store.Value{Type: "string", Data: []byte(`"done ✓"`)}
			x.FinishedAt = base.Add(1500 * time.Nanosecond) // kept to the microsecond
			return tx.PutExecution(x)
		})
	}
	if err := a.Watch(t.Context(), "e2"); err != nil {
		t.Fatal(err)
	}
	if err := finish(store.Completed); err != nil {
		t.Fatal(err)
	}
	x, err := b.Execution(t.Context(), "e2")
	if err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "finish", exec("e2"), store.Event{Kind: store.EventFinished, Exec: "e2",
		Final: &store.Execution{ID: "e2", Graph: x.Graph, Status: store.Completed, Result: x.Result, FinishedAt: x.FinishedAt}})
	if err := finish(store.Completed); err != nil {
		t.Fatal(err)
	}
	ch.none(t, "finished again")
	// Drain what b heard.
	for len(mine) > 0 {
		<-mine
	}
}

// TestNotifyOtherSchema: stores on other schemas of the database are not
// told about this one's changes.
func TestNotifyOtherSchema(t *testing.T) {
	a, b := open(t, pgtest.URL(t)), open(t, pgtest.URL(t))
	ch := listen(t, t.Context(), a)
	offer(t, b, "e")
	ch.none(t, "change in another schema")
	offer(t, a, "e")
	ch.expect(t, "change in this schema", exec("e"), task("e"))
}

// offer creates execution id with a claimable task, which is news for
// every listener.
func offer(t *testing.T, s store.Store, id string) {
	t.Helper()
	err := s.Update(t.Context(), id, func(tx store.Tx) error {
		err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base})
		if err != nil {
			return err
		}
		return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base})
	})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// TestNotifyReset kills the listening connection: the listener connects
// again, says EventReset, and goes on reporting changes.
func TestNotifyReset(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	ch := listen(t, t.Context(), a)
	offer(t, b, "before")
	ch.expect(t, "before the kill", exec("before"), task("before"))

	admin := pgtest.Connect(t, pgtest.ServerURL(t))
	var killed int
	err := admin.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND query = 'LISTEN "' || $1 || '"'`, a.Channel()).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("killed %d listening connections, %v; want 1", killed, err)
	}
	ch.expect(t, "after the kill", reset)
	offer(t, b, "after")
	ch.expect(t, "after reconnecting", exec("after"), task("after"))
}

// TestListenStops: a listener ends with its context or with the store
// (TestMain checks that its goroutine is gone), and its connection closes.
func TestListenStops(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	ctx, cancel := context.WithCancel(t.Context())
	listen(t, ctx, s)
	listen(t, t.Context(), s) // stopped by Close
	admin := pgtest.Connect(t, pgtest.ServerURL(t))
	listening := func() int {
		var n int
		err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE query = 'LISTEN "' || $1 || '"'`,
			s.Channel()).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	waitFor := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for listening() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%d listening connections, want %d", listening(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(2)
	cancel()
	waitFor(1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(0)
}

// TestHandOff: the notification of a task made claimable names one worker
// whose last claim of the task's queue left slots free, while that note
// is fresh (a few seconds), so that only that worker claims; a claim that
// fills its slots takes the note back. Several tasks at once, a task
// pinned to a worker, one ready later, or no worker waiting: it names none.
func TestHandOff(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	ch := listen(t, ctx, a)
	listen(t, ctx, b) // notes its workers only while it hears notifications

	handed := func(id, worker string) store.Event {
		return store.Event{Kind: store.EventTask, Exec: id, Worker: worker}
	}
	add := func(id string, tasks ...store.Task) {
		t.Helper()
		err := b.Update(ctx, id, func(tx store.Tx) error {
			for i := range tasks {
				if err := tx.AddTask(&tasks[i]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	claim := func(worker, queue string, limit, want int) {
		t.Helper()
		c, err := b.ClaimNext(ctx, worker, queue, time.Now(), time.Minute, limit)
		if err != nil || len(c.Tasks) != want {
			t.Fatalf("ClaimNext(%s, %d) = %v, %v; want %d tasks", worker, limit, c.Tasks, err, want)
		}
	}
	ready := func(step, queue string) store.Task {
		return store.Task{Step: step, Kind: store.TaskStep, ReadyAt: time.Now(), Queue: queue}
	}

	create(t, b, "h1")
	add("h1", ready("a", ""))
	ch.expect(t, "no worker waiting", task("h1"))

	claim("w1", "", 2, 1) // takes a, leaves a slot free
	add("h1", ready("b", ""))
	ch.expect(t, "w1 waiting", handed("h1", "w1"))
	add("h1", ready("c", "gpu"))
	ch.expect(t, "another queue", task("h1"))
	add("h1", ready("d", ""), ready("e", ""))
	ch.expect(t, "two tasks", task("h1"))
	pinned := ready("f", "")
	pinned.Worker = "w9"
	add("h1", pinned)
	ch.expect(t, "a pinned task", task("h1"))
	later := ready("g", "")
	later.ReadyAt = time.Now().Add(time.Hour)
	add("h1", later)
	ch.expect(t, "a task ready later", task("h1"))

	claim("w1", "", 1, 1) // fills its slot: no longer waiting
	add("h1", ready("h", ""))
	ch.expect(t, "w1 busy", task("h1"))

	// With several waiting, each execution's task goes to one of them by
	// a hash: all are named, none twice for one task.
	claim("w1", "", 8, 4) // d, e, h and f (pinned to a worker not alive, so anyone's)
	claim("w2", "", 8, 0)
	claim("w3", "", 8, 0)
	named := map[string]int{}
	for i := range 24 {
		id := fmt.Sprintf("spread-%d", i)
		create(t, b, id)
		add(id, ready("a", ""))
		select {
		case ev := <-ch:
			if ev.Kind != store.EventTask || ev.Exec != id {
				t.Fatalf("%s: event %+v", id, ev)
			}
			named[ev.Worker]++
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no event", id)
		}
	}
	if len(named) != 3 || named[""] > 0 {
		t.Errorf("tasks named %v; want each of w1, w2, w3 some", named)
	}

	// A note lapses: a worker that died after its claim is named no more.
	time.Sleep(2100 * time.Millisecond)
	add("h1", ready("i", ""))
	ch.expect(t, "notes lapsed", task("h1"))

	// A store that closes takes its workers' notes with it.
	c := open(t, url)
	listen(t, ctx, c)
	if got, err := c.ClaimNext(ctx, "w5", "", time.Now(), time.Minute, 64); err != nil || len(got.Tasks) != 25 {
		t.Fatalf("ClaimNext(w5) = %d tasks, %v; want i and the 24 spread ones", len(got.Tasks), err)
	}
	add("h1", ready("j", ""))
	ch.expect(t, "w5 waiting", handed("h1", "w5"))
	// A claim with no slot free, as a worker sends when it stops, removes
	// its note.
	if _, err := c.ClaimNext(ctx, "w5", "", time.Now(), time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	add("h1", ready("k", ""))
	ch.expect(t, "w5 stopped", task("h1"))
	if got, err := c.ClaimNext(ctx, "w5", "", time.Now(), time.Minute, 64); err != nil || len(got.Tasks) != 2 {
		t.Fatalf("ClaimNext(w5) = %d tasks, %v; want j and k", len(got.Tasks), err)
	}
	add("h1", ready("l", ""))
	ch.expect(t, "w5 waiting again", handed("h1", "w5"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	add("h1", ready("m", ""))
	ch.expect(t, "w5's store closed", task("h1"))
}

// TestWatch: an execution's creation and end reach another store only when
// it watches the execution (by Watch or by signalling it); the writing
// store's own listeners hear them without PostgreSQL.
func TestWatch(t *testing.T) {
	ctx := t.Context()
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	ch := listen(t, ctx, a)
	mine := listen(t, ctx, b)
	finish := func(id string) *store.Execution {
		t.Helper()
		var final *store.Execution
		err := b.Update(ctx, id, func(tx store.Tx) error {
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			x.Status, x.Error, x.FinishedAt = store.Failed, "boom", base.Add(time.Second)
			final = &store.Execution{ID: id, Graph: x.Graph, Status: x.Status, Error: x.Error, FinishedAt: x.FinishedAt}
			return tx.PutExecution(x)
		})
		if err != nil {
			t.Fatal(err)
		}
		return final
	}
	ended := func(x *store.Execution) []store.Event {
		return []store.Event{exec(x.ID), {Kind: store.EventFinished, Exec: x.ID, Final: x}}
	}

	// Not watched elsewhere: only the writing store hears, from itself.
	create(t, b, "w1")
	mine.expect(t, "create, told locally", exec("w1"))
	x := finish("w1")
	mine.expect(t, "end, told locally", ended(x)...)
	ch.none(t, "w1 not watched by a")

	// Watched: the end goes through PostgreSQL, to both.
	create(t, b, "w2")
	mine.expect(t, "create w2", exec("w2"))
	if err := a.Watch(ctx, "w2"); err != nil {
		t.Fatal(err)
	}
	x = finish("w2")
	ch.expect(t, "end of a watched execution", ended(x)...)
	mine.expect(t, "end of a watched execution, on the writing store", ended(x)...)

	// Signalling an execution watches it.
	create(t, b, "w3")
	mine.expect(t, "create w3", exec("w3"))
	err := a.Update(ctx, "w3", func(tx store.Tx) error {
		return tx.AddSignal(&store.Signal{Name: "go", SentAt: base})
	})
	if err != nil {
		t.Fatal(err)
	}
	ch.expect(t, "signal", exec("w3"))
	mine.expect(t, "signal", exec("w3"))
	x = finish("w3")
	ch.expect(t, "end of a signalled execution", ended(x)...)
	mine.expect(t, "end of a signalled execution, on the writing store", ended(x)...)

	// Watching what has ended, or does not exist, changes nothing; a bad
	// ID is refused before it is sent.
	for _, id := range []string{"w1", "nothing"} {
		if err := a.Watch(ctx, id); err != nil {
			t.Errorf("Watch(%s) = %v", id, err)
		}
	}
	var watchers []string
	if err := pgtest.Connect(t, url).QueryRow(ctx, `SELECT coalesce(watchers, '{}') FROM executions WHERE id = 'w1'`).Scan(&watchers); err != nil {
		t.Fatal(err)
	}
	if len(watchers) != 1 {
		t.Errorf("w1's watchers %q, want its creator alone", watchers)
	}
	if err := a.Watch(ctx, "bad\x00id"); !errors.Is(err, postgres.ErrBadValue) {
		t.Errorf("Watch of a bad ID = %v, want ErrBadValue", err)
	}
	ch.none(t, "watching the ended")
}
