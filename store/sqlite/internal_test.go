package sqlite

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

func openT(t testing.TB) *Store {
	t.Helper()
	s, err := Open(t.Context(), filepath.Join(t.TempDir(), "docket.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestPragmas(t *testing.T) {
	s := openT(t)
	for _, c := range []struct {
		db         *sql.DB
		name, want string
	}{
		{s.w, "journal_mode", "wal"},
		{s.w, "synchronous", "2"}, // FULL
		{s.w, "foreign_keys", "1"},
		{s.w, "busy_timeout", "5000"},
		{s.w, "query_only", "0"},
		{s.r, "journal_mode", "wal"},
		{s.r, "busy_timeout", "5000"},
		{s.r, "query_only", "1"},
		{s.r, "foreign_keys", "1"},
	} {
		if got := pragma(t, c.db, c.name); got != c.want {
			which := "writer"
			if c.db == s.r {
				which = "reader"
			}
			t.Errorf("%s: PRAGMA %s = %s, want %s", which, c.name, got, c.want)
		}
	}
}

// TestQueryPlans checks that the hot queries use their indexes.
func TestQueryPlans(t *testing.T) {
	s := openT(t)
	for _, c := range []struct {
		query, want string
		args        []any
	}{
		{sqlClaim, "USING INDEX tasks_queue_ready (queue=? AND ready_at<?)", []any{"w", 10, 1, 4, "q"}},
		{sqlClaim, "SEARCH workers USING PRIMARY KEY (id=?)", []any{"w", 10, 1, 4, "q"}},
		{`DELETE FROM workers WHERE alive_until < 5`, "INDEX workers_alive", nil},
		{`SELECT MIN(wake_at) FROM tasks WHERE wake_at > 5`, "INDEX tasks_wake", nil},
		{`SELECT id FROM tasks WHERE exec = 'x' ORDER BY id`, "INDEX tasks_exec", nil},
		{`SELECT id FROM executions WHERE graph = 'x' AND ord < 5 ORDER BY ord DESC LIMIT 10`, "INDEX executions_graph", nil},
		{`SELECT id FROM executions WHERE status = 'x' ORDER BY ord DESC LIMIT 10`, "INDEX executions_status", nil},
		{`SELECT id FROM executions WHERE id = 'x'`, "INDEX sqlite_autoindex_executions", nil},
		{`SELECT name FROM steps WHERE exec = 'x' ORDER BY name`, "INDEX sqlite_autoindex_steps", nil},
		{`SELECT seq FROM journal WHERE exec = 'x' AND step = 'a' ORDER BY seq`, "INDEX sqlite_autoindex_journal", nil},
	} {
		rows, err := s.w.Query("EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		got := strings.Join(plan, "; ")
		if !strings.Contains(got, c.want) || strings.Contains(got, "TEMP B-TREE") {
			t.Errorf("%s\nplan: %s\nwant: %s, no temp b-tree", c.query, got, c.want)
		}
	}
}

// BenchmarkUpdate measures a typical Update (read the execution, write it
// and a step, replace a task) with synchronous=FULL, the default, against
// NORMAL.
func BenchmarkUpdate(b *testing.B) {
	for _, mode := range []string{"FULL", "NORMAL"} {
		b.Run(mode, func(b *testing.B) {
			defer func(old string) { synchronous = old }(synchronous)
			synchronous = mode
			s := openT(b)
			ctx := b.Context()
			err := s.Update(ctx, "e", func(tx store.Tx) error {
				return tx.CreateExecution(&store.Execution{ID: "e", Status: store.Running})
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				err := s.Update(ctx, "e", func(tx store.Tx) error {
					e, err := tx.Execution()
					if err != nil {
						return err
					}
					e.Seq++
					e.UpdatedAt = time.Now()
					if err := tx.PutExecution(e); err != nil {
						return err
					}
					if err := tx.PutStep(&store.Step{Name: fmt.Sprint(i % 100), Status: store.StepDone, Output: &store.Value{Type: "int", Data: []byte("42")}}); err != nil {
						return err
					}
					return tx.AddTask(&store.Task{Kind: store.TaskStep, Step: "x", ReadyAt: time.Now()})
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
