package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
	"github.com/docket-run/docket/store/storetest"
)

func open(t testing.TB, url string, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(t.Context(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestConformance runs the store suite, each subtest on a schema of its own.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, pgtest.URL(t), postgres.MaxConns(6))
	})
}

var base = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func create(t testing.TB, s store.Store, id string) {
	t.Helper()
	err := s.Update(t.Context(), id, func(tx store.Tx) error {
		return tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base})
	})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// fill writes an execution with a step, a journal entry, a signal, a task
// and a cache entry.
func fill(t *testing.T, s store.Store, id string) (task store.Task) {
	t.Helper()
	err := s.Update(t.Context(), id, func(tx store.Tx) error {
		err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running,
			Inputs: []store.Value{{Type: "int", Data: []byte("7")}}, CreatedAt: base})
		if err != nil {
			return err
		}
		if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepDone, Output: &store.Value{Type: "int", Data: []byte("8")},
			FinishedAt: base.Add(time.Second)}); err != nil {
			return err
		}
		if err := tx.PutJournal(&store.JournalEntry{Step: "a", Kind: "run", Data: []byte("x"), Done: true}); err != nil {
			return err
		}
		if err := tx.AddSignal(&store.Signal{Name: "go", Payload: store.Value{Type: "int", Data: []byte("1")}, SentAt: base}); err != nil {
			return err
		}
		task = store.Task{Step: "b", Kind: store.TaskStep, ReadyAt: base}
		return tx.AddTask(&task)
	})
	if err != nil {
		t.Fatalf("fill %s: %v", id, err)
	}
	if err := s.CacheSet(t.Context(), "key-"+id, []byte("cached"), base.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	return task
}

// verify checks what fill wrote.
func verify(t *testing.T, s store.Store, id string, task store.Task) {
	t.Helper()
	ctx := t.Context()
	e, err := s.Execution(ctx, id)
	if err != nil || e.Status != store.Running || len(e.Inputs) != 1 || string(e.Inputs[0].Data) != "7" || !e.CreatedAt.Equal(base) {
		t.Errorf("Execution = %+v, %v", e, err)
	}
	steps, err := s.Steps(ctx, id)
	if err != nil || len(steps) != 1 || steps[0].Output == nil || string(steps[0].Output.Data) != "8" {
		t.Errorf("Steps = %+v, %v", steps, err)
	}
	j, err := s.Journal(ctx, id, "a")
	if err != nil || len(j) != 1 || string(j[0].Data) != "x" {
		t.Errorf("Journal = %+v, %v", j, err)
	}
	sigs, err := s.Signals(ctx, id)
	if err != nil || len(sigs) != 1 || sigs[0].Name != "go" {
		t.Errorf("Signals = %+v, %v", sigs, err)
	}
	tasks, err := s.Tasks(ctx, id)
	if err != nil || len(tasks) != 1 || tasks[0].ID != task.ID || tasks[0].Owner != task.Owner {
		t.Errorf("Tasks = %+v, %v; want task %+v", tasks, err, task)
	}
	v, ok, err := s.CacheGet(ctx, "key-"+id, base)
	if err != nil || !ok || string(v) != "cached" {
		t.Errorf("CacheGet = %q, %v, %v", v, ok, err)
	}
}

func TestReopen(t *testing.T) {
	url := pgtest.URL(t)
	s := open(t, url)
	task := fill(t, s, "e1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, url)
	verify(t, s, "e1", task)
	task2 := fill(t, s, "e2")
	if task2.ID <= task.ID {
		t.Errorf("task ID %d after reopen, not above %d", task2.ID, task.ID)
	}
}

// TestTwoStores runs Updates of one execution and Claims from two stores
// on one schema, as two processes would: the advisory lock serializes the
// Updates, and no task is claimed twice.
func TestTwoStores(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "counter")
	const perStore, goroutines, execs, perExec = 30, 4, 10, 30
	for i := range execs {
		id := fmt.Sprint("t", i)
		create(t, a, id)
		err := a.Update(t.Context(), id, func(tx store.Tx) error {
			for j := range perExec {
				if err := tx.AddTask(&store.Task{Kind: store.TaskStep, Step: fmt.Sprint(j), ReadyAt: base.Add(time.Duration(j) * time.Millisecond)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[int64]string{}
	)
	claim := func(s *postgres.Store, owner string) int {
		got, err := s.Claim(t.Context(), owner, "", base.Add(time.Minute), time.Hour, 3)
		if err != nil {
			t.Errorf("%s Claim: %v", owner, err)
		}
		mu.Lock()
		defer mu.Unlock()
		for _, task := range got {
			if prev, dup := claimed[task.ID]; dup {
				t.Errorf("task %d claimed by %s and %s", task.ID, prev, owner)
			}
			claimed[task.ID] = owner
		}
		return len(got)
	}
	for h, s := range []*postgres.Store{a, b} {
		for g := range goroutines {
			owner := fmt.Sprintf("s%dg%d", h, g)
			wg.Go(func() {
				for i := range perStore {
					err := s.Update(t.Context(), "counter", func(tx store.Tx) error {
						e, err := tx.Execution()
						if err != nil {
							return err
						}
						e.Seq++
						return tx.PutExecution(e)
					})
					if err != nil {
						t.Errorf("%s Update %d: %v", owner, i, err)
						return
					}
					claim(s, owner)
				}
			})
		}
	}
	wg.Wait()
	for _, s := range []*postgres.Store{a, b} {
		e, err := s.Execution(t.Context(), "counter")
		if err != nil || e.Seq != 2*goroutines*perStore {
			t.Errorf("counter = %+v, %v; want Seq %d", e, err, 2*goroutines*perStore)
		}
	}
	for claim(a, "last") > 0 {
	}
	if len(claimed) != execs*perExec {
		t.Errorf("claimed %d distinct tasks, want %d", len(claimed), execs*perExec)
	}
}

// TestCreateRace: Updates from two stores of an execution that does not
// exist yet queue for it; each sees what the one before it committed.
func TestCreateRace(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	const goroutines, rounds = 8, 10
	var wg sync.WaitGroup
	for g := range goroutines {
		s := []*postgres.Store{a, b}[g%2]
		wg.Go(func() {
			for i := range rounds {
				id := fmt.Sprint("new", i)
				err := s.Update(t.Context(), id, func(tx store.Tx) error {
					e, err := tx.Execution()
					if errors.Is(err, store.ErrNotFound) {
						return tx.CreateExecution(&store.Execution{ID: id, Status: store.Running, Seq: 1})
					}
					if err != nil {
						return err
					}
					e.Seq++
					return tx.PutExecution(e)
				})
				if err != nil {
					t.Errorf("goroutine %d, %s: %v", g, id, err)
				}
			}
		})
	}
	wg.Wait()
	for i := range rounds {
		e, err := a.Execution(t.Context(), fmt.Sprint("new", i))
		if err != nil || e.Seq != goroutines {
			t.Errorf("new%d = %+v, %v; want Seq %d", i, e, err, goroutines)
		}
	}
}

// TestClaimSkipsLocked: while an Update holds an execution's tasks, Claim
// passes over them rather than waiting, and takes the next ones.
func TestClaimSkipsLocked(t *testing.T) {
	url := pgtest.URL(t)
	a, b := open(t, url), open(t, url)
	create(t, a, "busy")
	create(t, a, "free")
	var busy, free store.Task
	err := a.Update(t.Context(), "busy", func(tx store.Tx) error {
		busy = store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base}
		return tx.AddTask(&busy)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Update(t.Context(), "free", func(tx store.Tx) error {
		free = store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base.Add(time.Second)}
		return tx.AddTask(&free)
	})
	if err != nil {
		t.Fatal(err)
	}
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		// A store that has kept nothing of busy: its Update reads (and
		// locks) first, then runs the fn.
		done <- open(t, url).Update(t.Context(), "busy", func(tx store.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got, err := b.Claim(ctx, "w", "", base.Add(time.Minute), time.Minute, 10)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != free.ID {
		t.Errorf("Claim during an Update of busy = %+v, want only task %d of free", got, free.ID)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err = b.Claim(t.Context(), "w", "", base.Add(time.Minute), time.Minute, 10)
	if err != nil || len(got) != 1 || got[0].ID != busy.ID {
		t.Errorf("Claim after the Update = %+v, %v; want task %d", got, err, busy.ID)
	}
}

// TestLockTimeout: an Update that waits past lock_timeout for another
// process's Update of the same execution fails with store.ErrBusy, and a
// cancelled wait returns the context's error; the store works on.
func TestLockTimeout(t *testing.T) {
	url := pgtest.URL(t)
	a := open(t, url)
	b := open(t, pgtest.WithParam(t, url, "lock_timeout", "200ms"))
	create(t, a, "e")
	inside, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		// A store that has kept nothing of e: its Update locks first.
		done <- open(t, url).Update(t.Context(), "e", func(tx store.Tx) error {
			close(inside)
			<-release
			return nil
		})
	}()
	<-inside
	start := time.Now()
	err := b.Update(t.Context(), "e", func(tx store.Tx) error { return nil })
	if !errors.Is(err, store.ErrBusy) || !strings.Contains(err.Error(), "55P03") {
		t.Errorf("Update while another holds the execution: %v, want ErrBusy with the driver's detail", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("gave up after %v, before lock_timeout", d)
	}
	// Other executions are not held up.
	create(t, b, "other")
	// A wait that the caller gives up on keeps nothing (a has kept e, so
	// its fn may run before the lock is taken: only what it writes counts).
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = a.Update(ctx, "e", func(tx store.Tx) error {
		x, err := tx.Execution()
		if err != nil {
			return err
		}
		x.Seq = 99
		return tx.PutExecution(x)
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Update with a context that ends while waiting: %v, want DeadlineExceeded", err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if x, err := b.Execution(t.Context(), "e"); err != nil || x.Seq == 99 {
		t.Errorf("after an Update given up on: %+v, %v; want its write not kept", x, err)
	}
	for _, s := range []*postgres.Store{a, b} {
		if err := s.Update(t.Context(), "e", func(tx store.Tx) error { return nil }); err != nil {
			t.Errorf("Update after the lock is free: %v", err)
		}
	}
}

func TestMigrations(t *testing.T) {
	url := pgtest.URL(t)
	// Several processes start at once on an empty schema.
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Go(func() {
			var err error
			if i%2 == 0 {
				err = postgres.Migrate(t.Context(), url)
			} else {
				var s *postgres.Store
				if s, err = postgres.Open(t.Context(), url, postgres.MaxConns(2)); err == nil {
					id := fmt.Sprint("e", i)
					err = s.Update(t.Context(), id, func(tx store.Tx) error {
						return tx.CreateExecution(&store.Execution{ID: id, Status: store.Running})
					})
					if cerr := s.Close(); err == nil {
						err = cerr
					}
				}
			}
			if err != nil {
				t.Errorf("start %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	// And again, later: nothing to do.
	if err := postgres.Migrate(t.Context(), url); err != nil {
		t.Fatal(err)
	}
	s := open(t, url, postgres.SkipMigrate())
	create(t, s, "last")
	conn := pgtest.Connect(t, url)
	rows, err := conn.Query(t.Context(), `SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	if len(got) != postgres.SchemaVersion() || got[0] != "1 0001_init" {
		t.Errorf("schema_migrations = %q, want %d versions", got, postgres.SchemaVersion())
	}
	var execs int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM executions`).Scan(&execs); err != nil || execs != 4 {
		t.Errorf("%d executions, %v; want 4", execs, err)
	}
}

func TestSkipMigrateOnEmptySchema(t *testing.T) {
	s, err := postgres.Open(t.Context(), pgtest.URL(t), postgres.SkipMigrate())
	if err == nil {
		s.Close()
		t.Fatal("Open with SkipMigrate on an empty schema succeeded")
	}
	if !errors.Is(err, postgres.ErrSchemaTooOld) {
		t.Errorf("Open with SkipMigrate on an empty schema: %v, want ErrSchemaTooOld", err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	url := pgtest.URL(t)
	open(t, url).Close()
	next := postgres.SchemaVersion() + 1
	conn := pgtest.Connect(t, url)
	if _, err := conn.Exec(t.Context(), `INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')`, next); err != nil {
		t.Fatal(err)
	}
	for name, try := range map[string]func() error{
		"Open": func() error {
			s, err := postgres.Open(t.Context(), url)
			if err == nil {
				s.Close()
			}
			return err
		},
		"Open(SkipMigrate)": func() error {
			s, err := postgres.Open(t.Context(), url, postgres.SkipMigrate())
			if err == nil {
				s.Close()
			}
			return err
		},
		"Migrate": func() error { return postgres.Migrate(t.Context(), url) },
	} {
		err := try()
		if !errors.Is(err, postgres.ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprint(next)) {
			t.Errorf("%s of a newer schema: %v, want ErrSchemaTooNew with the version", name, err)
		}
	}
}

// TestReadOnly opens a filled schema through connections whose
// transactions are read-only: reads work, writes fail with
// store.ErrReadOnly, and the data stays as it was.
func TestReadOnly(t *testing.T) {
	url := pgtest.URL(t)
	rw := open(t, url)
	task := fill(t, rw, "e1")
	ro := open(t, pgtest.WithParam(t, url, "default_transaction_read_only", "on"))
	verify(t, ro, "e1", task)
	ctx := t.Context()
	errs := map[string]error{
		"Update": ro.Update(ctx, "e2", func(tx store.Tx) error {
			return tx.CreateExecution(&store.Execution{ID: "e2", Status: store.Running})
		}),
		"Update of an existing execution": ro.Update(ctx, "e1", func(tx store.Tx) error {
			return tx.PutStep(&store.Step{Name: "a", Status: store.StepFailed})
		}),
		"CacheSet": ro.CacheSet(ctx, "key-e1", []byte("v"), base.Add(time.Hour)),
		"Release":  ro.Release(ctx, "", []int64{task.ID}),
	}
	_, errs["Claim"] = ro.Claim(ctx, "w", "", base.Add(time.Minute), time.Minute, 10)
	_, errs["ExtendLeases"] = ro.ExtendLeases(ctx, "w", []int64{task.ID}, base.Add(time.Hour))
	_, errs["ExtendLeases without IDs"] = ro.ExtendLeases(ctx, "w", nil, base.Add(time.Hour)) // records liveness
	for name, err := range errs {
		if !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), "25006") {
			t.Errorf("%s on a read-only database: %v, want ErrReadOnly with the driver's detail", name, err)
		}
	}
	verify(t, ro, "e1", task)
	verify(t, rw, "e1", task)
	if _, err := rw.Execution(ctx, "e2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("e2 after a failed create: %v", err)
	}
}

// TestFailedWrite: a write that the server refuses fails the Update even
// when fn ignores the error, and nothing of it is kept.
func TestFailedWrite(t *testing.T) {
	s := open(t, pgtest.URL(t))
	create(t, s, "e")
	err := s.Update(t.Context(), "e", func(tx store.Tx) error {
		if err := tx.PutStep(&store.Step{Name: "ok", Status: store.StepDone}); err != nil {
			return err
		}
		// A NUL byte is not valid in a text column.
		_ = tx.PutStep(&store.Step{Name: "bad\x00name", Status: store.StepDone})
		_, _ = tx.Steps()
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "put step") {
		t.Errorf("Update with a refused write: %v, want an error naming it", err)
	}
	if steps, err := s.Steps(t.Context(), "e"); err != nil || len(steps) != 0 {
		t.Errorf("steps after the failed Update: %+v, %v", steps, err)
	}
	// Free text that the database cannot hold is made storable.
	err = s.Update(t.Context(), "e", func(tx store.Tx) error {
		e, err := tx.Execution()
		if err != nil {
			return err
		}
		e.Error = "bad \x00 and \xff bytes"
		return tx.PutExecution(e)
	})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := s.Execution(t.Context(), "e"); err != nil || e.Error != "bad \uFFFD and \uFFFD bytes" {
		t.Errorf("error message stored as %q, %v", e.Error, err)
	}
}

func TestOpenErrors(t *testing.T) {
	url := pgtest.URL(t)
	_, err := postgres.Open(t.Context(), pgtest.WithParam(t, url, "search_path", "no_such_schema_here"))
	if err == nil || !strings.Contains(err.Error(), "CREATE SCHEMA") {
		t.Errorf("Open with a search_path of no existing schema: %v", err)
	}
	if _, err := postgres.Open(t.Context(), "postgres://%zz"); err == nil {
		t.Error("Open of a bad URL succeeded")
	}
}

func TestClosed(t *testing.T) {
	s := open(t, pgtest.URL(t))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execution(t.Context(), "x"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Execution after Close: %v, want ErrClosed", err)
	}
	if err := s.Update(context.Background(), "x", func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
	if err := s.Listen(t.Context(), func(store.Event) {}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Listen after Close: %v, want ErrClosed", err)
	}
}

// fullStep is a step record with every field set, as the database gives it back.
func fullStep(i int) *store.Step {
	at := base.Add(time.Duration(i) * time.Second)
	return &store.Step{Name: "a", Status: store.StepDone, Attempt: 2, Output: &store.Value{Type: "int", Data: []byte(fmt.Sprint(i))},
		Error: "e", Wait: "w", WakeAt: at, Signal: "s1\ns2", Heartbeat: []byte{1, 2}, Worker: "w1", Seq: int64(i),
		ReadyAt: at, StartedAt: at.Add(time.Millisecond), FinishedAt: at.Add(time.Second),
		Comp: store.CompPending, CompAttempt: 1, CompError: "c"}
}

// TestGroupCommit runs many Updates of different executions at once on a
// store with one group leader, so that they share transactions: each one's
// outcome is still its own, including one refused for bad text, and the
// executions they share a transaction with are not touched by it.
func TestGroupCommit(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(2)) // one leader
	const n = 64
	for i := range n {
		create(t, s, fmt.Sprintf("g%02d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), fmt.Sprintf("g%02d", i), func(tx store.Tx) error {
				x, err := tx.Execution()
				if err != nil {
					return err
				}
				switch {
				case i%4 == 1: // progress only, merged with the others' progress
					x.Seq, x.UpdatedAt = int64(i), base.Add(time.Duration(i)*time.Second)
					if err := tx.PutExecution(x); err != nil {
						return err
					}
				case i%4 == 3: // progress, then a whole record that supersedes it
					y := *x
					y.Seq = 999
					if err := tx.PutExecution(&y); err != nil {
						return err
					}
				case i%2 == 0: // a state-only put, then a whole one that supersedes it
					y := *x
					y.Seq, y.Status = 999, store.Failed
					if err := tx.PutExecution(&y); err != nil {
						return err
					}
					x.Runs = []store.RunRecord{{Run: 1, Steps: i}}
				}
				if i%4 != 1 {
					x.Seq, x.Status, x.Result = int64(i), store.Completed, &store.Value{Type: "int", Data: []byte("1")}
					if err := tx.PutExecution(x); err != nil {
						return err
					}
				}
				if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady}); err != nil {
					return err
				}
				if err := tx.PutStep(fullStep(i)); err != nil { // replaces the first
					return err
				}
				if err := tx.PutStep(&store.Step{Name: "b", Status: store.StepReady, Heartbeat: []byte{}}); err != nil {
					return err
				}
				task := store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base}
				if err := tx.AddTask(&task); err != nil {
					return err
				}
				if i%10 == 3 {
					// Refused before it reaches the server; fn ignores it.
					_ = tx.PutStep(&store.Step{Name: "bad\x00", Status: store.StepDone})
				}
				return nil
			})
		})
	}
	wg.Wait()
	if g := s.Grouped(); g == 0 {
		t.Errorf("no Update ran in a group of more than one")
	}
	for i := range n {
		id := fmt.Sprintf("g%02d", i)
		steps, err := s.Steps(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		tasks, err := s.Tasks(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if i%10 == 3 {
			if !errors.Is(errs[i], postgres.ErrBadValue) || len(steps)+len(tasks) != 0 {
				t.Errorf("%s: %v, %d steps, %d tasks; want ErrBadValue and nothing kept", id, errs[i], len(steps), len(tasks))
			}
			continue
		}
		want := []store.Step{*fullStep(i), {Exec: id, Name: "b", Status: store.StepReady, Heartbeat: []byte{}}}
		want[0].Exec = id
		if errs[i] != nil || !reflect.DeepEqual(steps, want) || len(tasks) != 1 {
			t.Errorf("%s: %v, steps %+v, %d tasks; want its own steps %+v and task", id, errs[i], steps, len(tasks), want)
		}
		x, err := s.Execution(t.Context(), id)
		if i%4 == 1 {
			if err != nil || x.Seq != int64(i) || !x.UpdatedAt.Equal(base.Add(time.Duration(i)*time.Second)) ||
				x.Status != store.Running || x.Result != nil || x.Graph != "g" || !x.CreatedAt.Equal(base) {
				t.Errorf("%s: execution %+v, %v; want its progress recorded", id, x, err)
			}
			continue
		}
		wantRuns := 1 - i%2
		if err != nil || x.Seq != int64(i) || x.Status != store.Completed || string(x.Result.Data) != "1" || len(x.Runs) != wantRuns ||
			wantRuns == 1 && x.Runs[0].Steps != i || x.Graph != "g" || !x.CreatedAt.Equal(base) {
			t.Errorf("%s: execution %+v, %v", id, x, err)
		}
	}
	// A bad execution ID fails at once.
	if err := s.Update(t.Context(), "x\xff", func(store.Tx) error { return nil }); !errors.Is(err, postgres.ErrBadValue) {
		t.Errorf("Update with a bad ID: %v, want ErrBadValue", err)
	}
}

// TestGroupStepWrites checks that a group's merged write of steps updates
// the steps that exist and inserts the new ones in one statement, as a
// chain's commit does (the step done, its successor ready), and that
// journal entries are written over as well.
func TestGroupStepWrites(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(4)) // one leader
	const n = 32
	for i := range n {
		id := fmt.Sprint("w", i)
		create(t, s, id)
		if err := s.Update(t.Context(), id, func(tx store.Tx) error {
			if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 0, Kind: "timer", WakeAt: base}); err != nil {
				return err
			}
			return tx.PutStep(&store.Step{Name: "a", Status: store.StepReady, ReadyAt: base})
		}); err != nil {
			t.Fatal(err)
		}
	}
	// The leader is held while the Updates queue, so that they run as one
	// group and their writes merge.
	before := s.Stats()
	var updates []func() error
	for i := 1; i < n; i++ {
		updates = append(updates, func() error {
			return s.Update(t.Context(), fmt.Sprint("w", i), func(tx store.Tx) error {
				if err := tx.PutStep(fullStep(i)); err != nil { // "a" exists
					return err
				}
				if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 0, Kind: "timer", Done: true, WakeAt: base}); err != nil {
					return err
				}
				if err := tx.PutJournal(&store.JournalEntry{Step: "a", Seq: 1, Kind: "sleep", Name: fmt.Sprint(i)}); err != nil {
					return err
				}
				return tx.PutStep(&store.Step{Name: "b", Status: store.StepReady, ReadyAt: base.Add(time.Duration(i) * time.Minute)})
			})
		})
	}
	whileLeaderHeld(t, s, "w0", 0, updates...)
	if d := s.Stats().Sub(before); d.Updates != n || d.Groups != 2 {
		t.Fatalf("%d Updates in %d groups, want %d in 2", d.Updates, d.Groups, n)
	}
	for i := 1; i < n; i++ {
		id := fmt.Sprint("w", i)
		steps, err := s.Steps(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		want := []store.Step{*fullStep(i), {Name: "b", Status: store.StepReady, ReadyAt: base.Add(time.Duration(i) * time.Minute)}}
		for k := range want {
			want[k].Exec = id
		}
		if !reflect.DeepEqual(steps, want) {
			t.Errorf("%s steps:\n got %+v\nwant %+v", id, steps, want)
		}
		j, err := s.Journal(t.Context(), id, "a")
		if err != nil {
			t.Fatal(err)
		}
		if len(j) != 2 || !j[0].Done || j[1].Kind != "sleep" || j[1].Name != fmt.Sprint(i) {
			t.Errorf("%s journal: %+v", id, j)
		}
	}
}

// TestGroupTaskUpdates updates tasks in groups, where the updates merge
// into one statement: each task gets its own last update, an updated task
// that is deleted stays deleted, and a task added and updated in one
// Update keeps the update.
func TestGroupTaskUpdates(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(2)) // one leader
	const n = 48
	ids := make([]int64, n)
	for i := range n {
		id := fmt.Sprintf("t%02d", i)
		create(t, s, id)
		if err := s.Update(t.Context(), id, func(tx store.Tx) error {
			task := store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base, Attempt: 1}
			err := tx.AddTask(&task)
			ids[i] = task.ID
			return err
		}); err != nil {
			t.Fatal(err)
		}
	}
	lease := base.Add(time.Hour)
	put := func(tx store.Tx, id int64, step string, i int) error {
		return tx.PutTask(&store.Task{ID: id, Step: step, Kind: store.TaskStep, ReadyAt: base, Owner: fmt.Sprint("w", i),
			LeaseUntil: lease, Attempt: i, Claims: 1, Queue: "q", Worker: fmt.Sprint("p", i)})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), fmt.Sprintf("t%02d", i), func(tx store.Tx) error {
				switch i % 4 {
				case 1: // two updates: the later wins
					if err := put(tx, ids[i], "first", i); err != nil {
						return err
					}
				case 2: // updated, then deleted
					if err := put(tx, ids[i], "b", i); err != nil {
						return err
					}
					return tx.DeleteTask(ids[i])
				case 3: // a new task, updated
					task := store.Task{Step: "new", Kind: store.TaskStep, ReadyAt: base, Attempt: 1}
					if err := tx.AddTask(&task); err != nil {
						return err
					}
					if err := put(tx, task.ID, "new-b", i); err != nil {
						return err
					}
				}
				return put(tx, ids[i], "b", i)
			})
		})
	}
	wg.Wait()
	if g := s.Grouped(); g == 0 {
		t.Errorf("no Update ran in a group of more than one")
	}
	for i := range n {
		id := fmt.Sprintf("t%02d", i)
		tasks, err := s.Tasks(t.Context(), id)
		if err != nil || errs[i] != nil {
			t.Fatal(err, errs[i])
		}
		var steps []string
		for _, task := range tasks {
			steps = append(steps, task.Step)
			if task.Owner != fmt.Sprint("w", i) || !task.LeaseUntil.Equal(lease) || task.Attempt != i || task.Claims != 1 ||
				task.Queue != "q" || task.Worker != fmt.Sprint("p", i) {
				t.Errorf("%s: task %+v, want the update's values", id, task)
			}
		}
		want := map[int]string{0: "b", 1: "b", 2: "", 3: "b,new-b"}[i%4]
		if strings.Join(steps, ",") != want {
			t.Errorf("%s: tasks of steps %v, want %q", id, steps, want)
		}
	}
}

// TestSharedReads reads many executions at once on a store with one
// reading leader, so that reads share round trips: each still gets its own
// answer, and one that the server refuses fails alone.
func TestSharedReads(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(2))
	const n = 48
	for i := range n {
		create(t, s, fmt.Sprintf("r%02d", i))
	}
	var wg sync.WaitGroup
	errs := make([]error, n+1)
	got := make([]string, n+1)
	for i := range n + 1 {
		wg.Go(func() {
			id := fmt.Sprintf("r%02d", i)
			if i == n {
				id = "bad\x00id" // the server refuses it
			}
			if i%2 == 0 {
				x, err := s.Execution(t.Context(), id)
				if err == nil {
					got[i] = x.ID
				}
				errs[i] = err
				return
			}
			snap, err := s.Snapshot(t.Context(), id, "a")
			if err == nil {
				got[i] = snap.Execution.ID
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i := range n {
		if want := fmt.Sprintf("r%02d", i); errs[i] != nil || got[i] != want {
			t.Errorf("read %d: %q, %v; want %s", i, got[i], errs[i], want)
		}
	}
	if errs[n] == nil {
		t.Errorf("a read of an ID with a NUL byte succeeded")
	}
	if s.SharedReads() == 0 {
		t.Errorf("no read shared a round trip")
	}
	if _, err := s.Execution(t.Context(), "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Execution(missing) = %v, want ErrNotFound", err)
	}
}

// TestGroupFailure loses the transaction of a group (its connection is
// terminated while the first member's fn runs): that member fails, the
// members whose fns had not run are run again in later groups and
// succeed, and each Update's writes are kept exactly when it returns nil.
// A value the server would refuse fails only its own Update.
func TestGroupFailure(t *testing.T) {
	app := fmt.Sprintf("docket-groupfail-%d", time.Now().UnixNano())
	u := pgtest.WithParam(t, pgtest.URL(t), "application_name", app)
	s := open(t, u, postgres.MaxConns(2)) // one leader
	const n = 40
	for i := range n + 2 {
		create(t, s, fmt.Sprintf("f%02d", i))
	}
	step := func(tx store.Tx) error { return tx.PutStep(&store.Step{Name: "a", Status: store.StepDone}) }
	blockA, blockB := make(chan struct{}), make(chan struct{})
	inA, inB := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	errs := make([]error, n+2)
	// A leads a group of its own and holds it until the others queue up.
	wg.Go(func() {
		errs[0] = s.Update(t.Context(), "f00", func(tx store.Tx) error {
			close(inA)
			<-blockA
			return step(tx)
		})
	})
	<-inA
	// B queues first, so it leads the next group, with all the others.
	wg.Go(func() {
		errs[1] = s.Update(t.Context(), "f01", func(tx store.Tx) error {
			close(inB)
			<-blockB
			if err := step(tx); err != nil {
				return err
			}
			_, err := tx.Journal("a") // a round trip on the lost connection
			return err
		})
	})
	time.Sleep(100 * time.Millisecond)
	for i := 2; i < n+2; i++ {
		wg.Go(func() {
			errs[i] = s.Update(t.Context(), fmt.Sprintf("f%02d", i), func(tx store.Tx) error {
				if i == 7 { // refused before it is sent: fails alone
					return tx.PutStep(&store.Step{Name: "a", WakeAt: time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC)})
				}
				return step(tx)
			})
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(blockA)
	<-inB
	conn, err := pgx.Connect(t.Context(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var killed int
	err = conn.QueryRow(t.Context(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND state = 'idle in transaction'`, app).Scan(&killed)
	if err != nil || killed != 1 {
		t.Fatalf("terminated %d backends (%v), want the group's one", killed, err)
	}
	close(blockB)
	wg.Wait()
	for i := range n + 2 {
		id := fmt.Sprintf("f%02d", i)
		steps, err := s.Steps(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if (errs[i] == nil) != (len(steps) == 1) {
			t.Errorf("%s: Update returned %v, but %d steps were kept", id, errs[i], len(steps))
		}
		switch {
		case i == 1 && errs[i] == nil:
			t.Errorf("%s: succeeded on a terminated connection", id)
		case i == 7 && !errors.Is(errs[i], postgres.ErrBadValue):
			t.Errorf("%s: %v, want ErrBadValue", id, errs[i])
		case i != 1 && i != 7 && errs[i] != nil:
			t.Errorf("%s: %v; an Update whose fn had not run when the group failed must run again", id, errs[i])
		}
	}
}

// The store's connections make each statement's plan once, unless the URL
// chooses otherwise, as a parameter or in options.
func TestPlanCacheMode(t *testing.T) {
	url := pgtest.URL(t)
	withOptions := url + " options='-c plan_cache_mode=force_custom_plan'" // a key=value string
	if strings.Contains(url, "://") {
		withOptions = url + "&options=-c%20plan_cache_mode%3Dforce_custom_plan" // pgtest.URL has a query
	}
	for _, c := range []struct{ url, want string }{
		{url, "force_generic_plan"},
		{pgtest.WithParam(t, url, "plan_cache_mode", "auto"), "auto"},
		{withOptions, "force_custom_plan"},
	} {
		got, err := open(t, c.url).Setting(t.Context(), "plan_cache_mode")
		if err != nil || got != c.want {
			t.Errorf("plan_cache_mode %q, %v; want %q", got, err, c.want)
		}
	}
}

// TestGroupEnds: executions ended in one group (their status, outcome and
// end time written by one merged statement, their inputs and runs left
// alone) read back as they were written; so does one ended alone.
func TestGroupEnds(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(4)) // one leader
	const n = 8
	ctx := t.Context()
	for i := range n {
		err := s.Update(ctx, fmt.Sprint("e", i), func(tx store.Tx) error {
			return tx.CreateExecution(&store.Execution{ID: fmt.Sprint("e", i), Run: 1, Graph: "g", Status: store.Running,
				Inputs: []store.Value{{Type: "int", Data: []byte(fmt.Sprint(i))}}, CreatedAt: base,
				Runs: []store.RunRecord{{Run: 1, StartedAt: base}}})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	end := func(i int) (*store.Execution, error) {
		var want *store.Execution
		err := s.Update(ctx, fmt.Sprint("e", i), func(tx store.Tx) error {
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			x.Seq, x.UpdatedAt, x.FinishedAt = x.Seq+3, base.Add(time.Hour), base.Add(time.Hour)
			if i%2 == 0 {
				x.Status, x.Result = store.Completed, &store.Value{Type: "string", Data: []byte(fmt.Sprintf(`"r%d"`, i))}
			} else {
				x.Status, x.Error = store.Failed, fmt.Sprint("boom ", i)
			}
			want = x
			return tx.PutExecution(x)
		})
		return want, err
	}
	wants := make([]*store.Execution, n)
	var updates []func() error
	for i := 1; i < n; i++ {
		updates = append(updates, func() (err error) { wants[i], err = end(i); return err })
	}
	before := s.Stats()
	whileLeaderHeld(t, s, "e0", 0, updates...)
	if d := s.Stats().Sub(before); d.Groups != 2 {
		t.Fatalf("%d Updates in %d groups, want 2 groups", d.Updates, d.Groups)
	}
	var err error
	if wants[0], err = end(0); err != nil {
		t.Fatal(err)
	}
	for i, want := range wants {
		got, err := s.Execution(ctx, fmt.Sprint("e", i))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("e%d:\n got %+v\nwant %+v", i, got, want)
		}
	}
}
