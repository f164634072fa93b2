package postgres

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// sqlOldExecution inserts execution "e" into a schema of an older version.
const sqlOldExecution = `INSERT INTO executions (id, run, graph, target, codec, inputs, status, error, cancel_requested,
	deadline, created_at, updated_at, finished_at, seq, parent, parent_step)
	VALUES ('e', 1, 'g', '', '', 'null', 'running', '', false, '0001-01-01Z', '0001-01-01Z', '0001-01-01Z', '0001-01-01Z', 0, '', '')`

// atVersion makes the schema of url one of the given version, as those
// migrations left it, and runs rows in it; Open then migrates the rest.
func atVersion(t *testing.T, url string, version int, rows ...string) *pgx.Conn {
	t.Helper()
	conn := pgtest.Connect(t, url)
	ms, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var qs []string
	for _, m := range ms[:version] {
		qs = append(qs, m.SQL)
	}
	qs = append(qs, createMigrations)
	for _, m := range ms[:version] {
		qs = append(qs, fmt.Sprintf(`INSERT INTO schema_migrations (version, name) VALUES (%d, '%s')`, m.Version, m.Name))
	}
	for _, q := range append(qs, rows...) {
		if _, err := conn.Exec(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return conn
}

// TestUpgradeTo2 migrates a schema of version 1 with signals and a task in
// it: migration 0002 keeps them, gives the task the default queue and no
// pin, and numbers the next signal after the existing ones, also when the
// last of them is deleted first.
func TestUpgradeTo2(t *testing.T) {
	url := pgtest.URL(t)
	atVersion(t, url, 1,
		sqlOldExecution,
		`INSERT INTO signals (exec, seq, name, payload_type, payload_data, sent_at, consumed_by) VALUES
			('e', 1, 'a', 'int', '\x31', '0001-01-01Z', ''), ('e', 2, 'b', 'int', '\x32', '0001-01-01Z', '')`,
		`INSERT INTO steps (exec, name, status, attempt, error, wait, wake_at, signal, seq, ready_at, started_at, finished_at,
			comp, comp_attempt, comp_error)
			VALUES ('e', 'a', 'ready', 0, '', '', '0001-01-01Z', '', 0, '0001-01-01Z', '0001-01-01Z', '0001-01-01Z', '', 0, '')`,
		`INSERT INTO tasks (exec, step, kind, ready_at, owner, lease_until, attempt, claims)
			VALUES ('e', 'a', 'step', '0001-01-01Z', '', '0001-01-01Z', 0, 0)`,
	)
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	e, err := s.Execution(t.Context(), "e")
	if err != nil || len(e.Runs) != 0 {
		t.Fatalf("execution after the upgrade: %+v, %v", e, err)
	}
	steps, err := s.Steps(t.Context(), "e")
	if err != nil || len(steps) != 1 || steps[0].Worker != "" {
		t.Fatalf("steps after the upgrade: %+v, %v", steps, err)
	}
	tasks, err := s.Claim(t.Context(), "w", "", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute, 10)
	if err != nil || len(tasks) != 1 || tasks[0].Queue != "" || tasks[0].Worker != "" {
		t.Fatalf("claim after the upgrade: %+v, %v", tasks, err)
	}
	var next store.Signal
	err = s.Update(t.Context(), "e", func(tx store.Tx) error {
		if err := tx.DeleteSignal(2); err != nil {
			return err
		}
		next = store.Signal{Name: "c", Payload: store.Value{Type: "int", Data: []byte("3")}}
		return tx.AddSignal(&next)
	})
	if err != nil || next.Seq != 3 {
		t.Fatalf("AddSignal after the upgrade: Seq %d, %v; want 3", next.Seq, err)
	}
}

// TestUpgradeTo3 migrates a schema of version 2 with a free task, a task
// leased and running and one whose lease ran out: migration 0003 drops the
// foreign keys and replaces the claim index, and a claim after it takes
// the free task and the expired one, oldest first, and not the running one.
func TestUpgradeTo3(t *testing.T) {
	url := pgtest.URL(t)
	task := func(step, ready, owner, lease string) string {
		return `INSERT INTO tasks (exec, step, kind, ready_at, owner, lease_until, attempt, claims)
			VALUES ('e', '` + step + `', 'step', '` + ready + `', '` + owner + `', '` + lease + `', 0, 0)`
	}
	conn := atVersion(t, url, 2,
		sqlOldExecution,
		task("free", "2000-01-01T00:00:02Z", "", "0001-01-01Z"),
		task("running", "2000-01-01T00:00:00Z", "w1", "2000-01-01T01:00:00Z"),
		task("expired", "2000-01-01T00:00:01Z", "w2", "2000-01-01T00:00:30Z"),
	)
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var keys int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM pg_constraint WHERE contype = 'f'
		AND connamespace = current_schema()::regnamespace`).Scan(&keys); err != nil || keys != 0 {
		t.Errorf("%d foreign keys after the upgrade, %v; want none", keys, err)
	}
	tasks, err := s.Claim(t.Context(), "w3", "", time.Date(2000, 1, 1, 0, 1, 0, 0, time.UTC), time.Minute, 10)
	if err != nil || len(tasks) != 2 || tasks[0].Step != "expired" || tasks[1].Step != "free" {
		t.Fatalf("claim after the upgrade: %+v, %v; want expired, then free", tasks, err)
	}
	// A step of an execution that does not exist is still refused.
	err = s.Update(t.Context(), "nobody", func(tx store.Tx) error {
		return tx.PutStep(&store.Step{Name: "a", Status: store.StepReady})
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a step of a missing execution: %v, want ErrNotFound", err)
	}
}

// TestWorkersPruned: ExtendLeases keeps a row per worker and deletes the
// rows of workers dead for more than a day.
func TestWorkersPruned(t *testing.T) {
	url := pgtest.URL(t)
	s, err := Open(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn := pgtest.Connect(t, url)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	extend := func(w string, until time.Time) {
		t.Helper()
		if _, err := s.ExtendLeases(t.Context(), w, nil, until); err != nil {
			t.Fatal(err)
		}
	}
	workers := func() []string {
		t.Helper()
		rows, err := conn.Query(t.Context(), `SELECT id FROM workers ORDER BY id`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			out = append(out, id)
		}
		return out
	}
	for range 3 {
		extend("a", t0)
		extend("b", t0.Add(time.Hour))
	}
	extend("c", t0.Add(24*time.Hour)) // a is dead for exactly a day: kept
	if got := workers(); len(got) != 3 {
		t.Errorf("workers = %q, want a, b, c", got)
	}
	extend("c", t0.Add(24*time.Hour+time.Microsecond))
	if got := workers(); len(got) != 2 || got[0] != "b" {
		t.Errorf("workers = %q, want b, c", got)
	}
	extend("d", t0.Add(1000*time.Hour))
	if got := workers(); len(got) != 1 || got[0] != "d" {
		t.Errorf("workers = %q, want d", got)
	}
}
