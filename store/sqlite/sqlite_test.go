package sqlite_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/sqlite"
	"github.com/docket-run/docket/store/storetest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, filepath.Join(t.TempDir(), "docket.db"))
	})
}

var base = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func create(t *testing.T, s store.Store, id string) {
	t.Helper()
	err := s.Update(t.Context(), id, func(tx store.Tx) error {
		return tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base})
	})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
}

// fill writes an execution with a step, a journal entry, a task and a cache entry.
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
	tasks, err := s.Tasks(ctx, id)
	if err != nil || len(tasks) != 1 || tasks[0].ID != task.ID {
		t.Errorf("Tasks = %+v, %v; want task %d", tasks, err, task.ID)
	}
	v, ok, err := s.CacheGet(ctx, "key-"+id, base)
	if err != nil || !ok || string(v) != "cached" {
		t.Errorf("CacheGet = %q, %v, %v", v, ok, err)
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	task := fill(t, s, "e1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	verify(t, s, "e1", task)
	// Task IDs go on increasing after a reopen.
	task2 := fill(t, s, "e2")
	if task2.ID <= task.ID {
		t.Errorf("task ID %d after reopen, not above %d", task2.ID, task.ID)
	}
	list, _, err := s.List(t.Context(), store.ListQuery{})
	if err != nil || len(list) != 2 || list[0].ID != "e2" {
		t.Errorf("List = %v, %v", list, err)
	}
}

// TestCrash writes from a child process that exits without closing the
// store; every Update that returned must be there when the file is opened
// again.
func TestCrash(t *testing.T) {
	if path := os.Getenv("DOCKET_SQLITE_CRASH"); path != "" {
		s, err := sqlite.Open(context.Background(), path)
		if err != nil {
			fmt.Println(err)
			os.Exit(2)
		}
		for i := range 20 {
			fill(t, s, fmt.Sprintf("e%d", i))
		}
		os.Exit(0) // no Close, no checkpoint
	}
	path := filepath.Join(t.TempDir(), "docket.db")
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), "DOCKET_SQLITE_CRASH="+path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	if _, err := os.Stat(path + "-wal"); err != nil {
		t.Logf("no WAL left behind: %v", err)
	}
	s := open(t, path)
	for i := range 20 {
		id := fmt.Sprintf("e%d", i)
		tasks, err := s.Tasks(t.Context(), id)
		if err != nil || len(tasks) != 1 {
			t.Fatalf("%s: tasks %v, %v", id, tasks, err)
		}
		verify(t, s, id, tasks[0])
	}
}

// TestReadOnlyURI opens an existing database with mode=ro, which is how
// these tests see a read-only database when they run as root (root writes
// to files whatever their permission bits say; TestReadOnlyFile covers
// those for other users).
func TestReadOnlyURI(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s := open(t, path)
	task := fill(t, s, "e1")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ro := open(t, "file:"+path+"?mode=ro")
	verify(t, ro, "e1", task)
	checkReadOnly(t, ro, path)
}

// checkReadOnly checks that every write fails with store.ErrReadOnly.
func checkReadOnly(t *testing.T, s store.Store, path string) {
	t.Helper()
	ctx := t.Context()
	errs := map[string]error{
		"Update": s.Update(ctx, "e2", func(tx store.Tx) error {
			return tx.CreateExecution(&store.Execution{ID: "e2", Status: store.Running})
		}),
		"CacheSet": s.CacheSet(ctx, "k", []byte("v"), base.Add(time.Hour)),
	}
	_, errs["Claim"] = s.Claim(ctx, "w", "", base.Add(time.Minute), time.Minute, 10)
	_, errs["ExtendLeases"] = s.ExtendLeases(ctx, "w", nil, base.Add(time.Minute)) // records liveness
	for name, err := range errs {
		if !errors.Is(err, store.ErrReadOnly) {
			t.Errorf("%s on a read-only database: got %v, want ErrReadOnly", name, err)
		} else if !strings.Contains(err.Error(), path) {
			t.Errorf("%s: error %q does not name the database", name, err)
		}
	}
	// The store still reads.
	if _, err := s.Execution(ctx, "e1"); err != nil {
		t.Errorf("read after failed writes: %v", err)
	}
}

// TestReadOnlyFile makes the database file and its directory read-only.
// Root ignores permission bits, so as root it only checks that the store
// keeps working; TestReadOnlyURI covers read-only databases there.
func TestReadOnlyFile(t *testing.T) {
	for _, dirToo := range []bool{false, true} {
		t.Run(fmt.Sprintf("dir=%v", dirToo), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "docket.db")
			s := open(t, path)
			task := fill(t, s, "e1")
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, 0o444); err != nil {
				t.Fatal(err)
			}
			if dirToo {
				if err := os.Chmod(dir, 0o555); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { _ = os.Chmod(dir, 0o755); _ = os.Chmod(path, 0o644) })
			if os.Geteuid() == 0 {
				t.Log("running as root, which can write read-only files: the read-only case is covered by TestReadOnlyURI")
				return
			}
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				// Refusing to open is fine, if it says why.
				if !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), path) {
					t.Fatalf("Open of a read-only database: %v, want ErrReadOnly naming the file", err)
				}
				t.Logf("Open refused: %v", err)
				return
			}
			defer s.Close()
			t.Log("Open succeeded; checking that reads work and writes fail")
			verify(t, s, "e1", task)
			checkReadOnly(t, s, path)
		})
	}
}

// TestReadOnlyDir creates a database in a directory that refuses writes.
func TestReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root can write to read-only directories")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o755) })
	path := filepath.Join(dir, "docket.db")
	s, err := sqlite.Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open in a read-only directory succeeded")
	}
	if !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open in a read-only directory: %v, want ErrReadOnly naming the file", err)
	}
}

func TestNotADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("this is not an SQLite database\n"), 200), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sqlite.Open(t.Context(), path)
	if err == nil {
		s.Close()
		t.Fatal("Open of a garbage file succeeded")
	}
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a garbage file: %v, want ErrCorrupt naming the file", err)
	}
	// The file is untouched.
	b, _ := os.ReadFile(path)
	if !bytes.HasPrefix(b, []byte("this is not")) || len(b) != 200*31 {
		t.Errorf("Open changed the garbage file")
	}
}

func TestCorruptPages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s := open(t, path)
	for i := range 50 {
		fill(t, s, fmt.Sprintf("e%02d", i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Keep the header page, smash the rest.
	for i := 4096; i < len(b); i++ {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err = sqlite.Open(t.Context(), path)
	if err == nil {
		defer s.Close()
		_, _, err = s.List(t.Context(), store.ListQuery{})
	}
	if !errors.Is(err, store.ErrCorrupt) {
		t.Errorf("corrupt database: got %v, want ErrCorrupt", err)
	}
}

// TestFull limits the database's size to provoke SQLITE_FULL.
func TestFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s := open(t, path)
	s.Close()
	s = open(t, "file:"+path+"?_pragma=max_page_count(40)")
	create(t, s, "e")
	err := s.Update(t.Context(), "e", func(tx store.Tx) error {
		return tx.PutStep(&store.Step{Name: "big", Status: store.StepDone, Heartbeat: make([]byte, 1<<20)})
	})
	if !errors.Is(err, store.ErrFull) {
		t.Errorf("writing past max_page_count: %v, want ErrFull", err)
	}
	// The store goes on working for what fits.
	create(t, s, "e2")
}

func TestBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s := open(t, path)
	create(t, s, "e")
	s.Close()
	s = open(t, "file:"+path+"?_busy_timeout=100")

	// Another process holds the write lock.
	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	conn, err := other.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.Update(t.Context(), "e", func(tx store.Tx) error { return nil })
	if !errors.Is(err, store.ErrBusy) || !strings.Contains(err.Error(), path) {
		t.Errorf("Update while another connection holds the write lock: %v, want ErrBusy naming the file", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Errorf("gave up after %v, before the busy timeout", d)
	}
	// Reads go on meanwhile.
	if _, err := s.Execution(t.Context(), "e"); err != nil {
		t.Errorf("read while the write lock is held: %v", err)
	}
	if _, err := conn.ExecContext(t.Context(), "ROLLBACK"); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(t.Context(), "e", func(tx store.Tx) error { return nil }); err != nil {
		t.Errorf("Update after the lock is released: %v", err)
	}
}

// TestConcurrentWriters runs many goroutines writing and reading through one
// Store: the single writer connection queues them, so none sees ErrBusy.
func TestConcurrentWriters(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "docket.db"))
	const goroutines, rounds = 16, 25
	var wg sync.WaitGroup
	errs := make(chan error, goroutines*4)
	for g := range goroutines {
		id := fmt.Sprintf("e%d", g)
		wg.Go(func() {
			create(t, s, id)
			for i := range rounds {
				err := s.Update(t.Context(), id, func(tx store.Tx) error {
					if err := tx.PutStep(&store.Step{Name: fmt.Sprint(i), Status: store.StepDone}); err != nil {
						return err
					}
					return tx.AddTask(&store.Task{Step: fmt.Sprint(i), Kind: store.TaskStep, ReadyAt: base})
				})
				if err != nil {
					errs <- fmt.Errorf("%s Update %d: %w", id, i, err)
					return
				}
				if _, err := s.Claim(t.Context(), id, "", base, time.Minute, 2); err != nil {
					errs <- fmt.Errorf("%s Claim: %w", id, err)
					return
				}
				if err := s.CacheSet(t.Context(), id, []byte{byte(i)}, base.Add(time.Hour)); err != nil {
					errs <- fmt.Errorf("%s CacheSet: %w", id, err)
					return
				}
				if _, err := s.Steps(t.Context(), id); err != nil {
					errs <- fmt.Errorf("%s Steps: %w", id, err)
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
	for g := range goroutines {
		steps, err := s.Steps(t.Context(), fmt.Sprintf("e%d", g))
		if err != nil || len(steps) != rounds {
			t.Errorf("e%d: %d steps, %v", g, len(steps), err)
		}
	}
}

// TestTwoHandles opens the file twice, as two processes would: writes
// interleave through SQLite's file locks, waiting under busy_timeout.
func TestTwoHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	a, b := open(t, path), open(t, path)
	create(t, a, "counter")
	const perHandle, goroutines, tasks = 40, 3, 60
	err := a.Update(t.Context(), "counter", func(tx store.Tx) error {
		for range tasks {
			if err := tx.AddTask(&store.Task{Kind: store.TaskStep, ReadyAt: base}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		claimed = map[int64]int{}
	)
	for h, s := range []*sqlite.Store{a, b} {
		for g := range goroutines {
			wg.Go(func() {
				for i := range perHandle {
					err := s.Update(t.Context(), "counter", func(tx store.Tx) error {
						e, err := tx.Execution()
						if err != nil {
							return err
						}
						e.Seq++
						return tx.PutExecution(e)
					})
					if err != nil {
						t.Errorf("handle %d goroutine %d Update %d: %v", h, g, i, err)
						return
					}
					got, err := s.Claim(t.Context(), fmt.Sprintf("h%dg%d", h, g), "", base, time.Hour, 1)
					if err != nil {
						t.Errorf("handle %d Claim: %v", h, err)
						return
					}
					mu.Lock()
					for _, task := range got {
						claimed[task.ID]++
					}
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	for _, s := range []*sqlite.Store{a, b} {
		e, err := s.Execution(t.Context(), "counter")
		if err != nil || e.Seq != 2*goroutines*perHandle {
			t.Errorf("counter = %+v, %v; want Seq %d", e, err, 2*goroutines*perHandle)
		}
	}
	if len(claimed) != tasks {
		t.Errorf("claimed %d distinct tasks, want %d", len(claimed), tasks)
	}
	for id, n := range claimed {
		if n != 1 {
			t.Errorf("task %d claimed %d times", id, n)
		}
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	s := open(t, path)
	s.Close()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var n int
	if err := raw.QueryRow(`SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil || n != sqlite.SchemaVersion() {
		t.Fatalf("schema_migrations has %d rows (%v), want %d", n, err, sqlite.SchemaVersion())
	}
	next := sqlite.SchemaVersion() + 1
	if _, err := raw.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'future', 0)`, next); err != nil {
		t.Fatal(err)
	}
	_, err = sqlite.Open(t.Context(), path)
	if !errors.Is(err, sqlite.ErrSchemaTooNew) || !strings.Contains(err.Error(), fmt.Sprint(next)) || !strings.Contains(err.Error(), path) {
		t.Errorf("Open of a newer schema: %v, want ErrSchemaTooNew with the version and the path", err)
	}
}

func TestMigrationsApplyOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	for range 3 {
		s := open(t, path)
		create(t, s, fmt.Sprint(time.Now().UnixNano()))
		s.Close()
	}
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.Query(`SELECT version, name FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []string
	for rows.Next() {
		var v int
		var name string
		if err := rows.Scan(&v, &name); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s", v, name))
	}
	if len(got) != sqlite.SchemaVersion() || got[0] != "1 0001_init" {
		t.Errorf("schema_migrations = %q", got)
	}
	var execs int
	if err := raw.QueryRow(`SELECT count(*) FROM executions`).Scan(&execs); err != nil || execs != 3 {
		t.Errorf("%d executions after three opens, %v", execs, err)
	}
}

func TestConcurrentOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "docket.db")
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			s, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Errorf("Open %d: %v", i, err)
				return
			}
			defer s.Close()
			create(t, s, fmt.Sprint(i))
		})
	}
	wg.Wait()
}

func TestPaths(t *testing.T) {
	dir := t.TempDir()
	name := "odd name?x=1#frag%41.db"
	s := open(t, filepath.Join(dir, name))
	create(t, s, "e")
	if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
		t.Errorf("database not at the path given: %v", err)
	}
	for _, bad := range []string{"", ":memory:", "file::memory:?cache=shared", "file:" + filepath.Join(dir, "x.db") + "?_txlock=deferred",
		"file:" + filepath.Join(dir, "x.db") + "?_synchronous=OFF"} {
		if s, err := sqlite.Open(t.Context(), bad); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", bad)
		}
	}
	if _, err := sqlite.Open(t.Context(), filepath.Join(dir, "no", "such", "dir.db")); err == nil {
		t.Error("Open in a missing directory succeeded")
	}
}

func TestClosed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "docket.db"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execution(t.Context(), "x"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Execution after Close: %v, want ErrClosed", err)
	}
	if err := s.Update(context.Background(), "x", func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
}
