package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/demo"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

func TestMigrate(t *testing.T) {
	if code, _, e := cli(t, nil, "migrate"); code != 2 || !strings.Contains(e, "--store is required") {
		t.Fatalf("no store: %d %s", code, e)
	}
	db := "sqlite:" + filepath.Join(t.TempDir(), "m.db")
	if code, o, e := cli(t, nil, "migrate", "--store", db); code != 0 || !strings.Contains(o, "up to date") {
		t.Fatalf("sqlite: %d %s %s", code, o, e)
	}
	u := pgtest.URL(t)
	if code, o, e := cli(t, map[string]string{"DOCKET_STORE": u}, "migrate"); code != 0 || !strings.Contains(o, "version") {
		t.Fatalf("postgres: %d %s %s", code, o, e)
	}
	// The schema is there: the migrations table says the latest version.
	conn, err := pgx.Connect(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v int
	if err := conn.QueryRow(context.Background(), "SELECT max(version) FROM schema_migrations").Scan(&v); err != nil || v != postgres.SchemaVersion() {
		t.Fatalf("schema version %d %v, want %d", v, err, postgres.SchemaVersion())
	}
	if code, _, e := cli(t, nil, "migrate", "--store", "postgres://nobody@127.0.0.1:1/x?connect_timeout=2"); code != 1 || !strings.Contains(e, "migrating") {
		t.Fatalf("unreachable: %d %s", code, e)
	}
}

// docket server over a PostgreSQL database whose graphs run in another
// process (here an engine of the test's): it describes, lists and signals
// their executions.
func TestServerOverPostgres(t *testing.T) {
	u := pgtest.URL(t)
	set := demo.New(demo.Options{Pause: 0.01})
	ctx := context.Background()
	workers, err := docket.Open(ctx, docket.Config{Store: u, Graphs: set.Graphs(), Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer workers.Close()
	id, err := workers.StartEncoded(ctx, docket.StartRequest{Graph: demo.Approval, ID: "pg-approval",
		Inputs: map[string]json.RawMessage{"demo.Expense": json.RawMessage(`{"employee": "ada", "amount": 99, "reason": "books"}`)}})
	if err != nil {
		t.Fatal(err)
	}
	url, _, _, stop := startCommand(t, "server", "--store", u, "--addr", "127.0.0.1:0")
	defer stop()
	vars := map[string]string{"DOCKET_SERVER": url}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, o, _ := cli(t, vars, "describe", id)
		if code == 0 && strings.Contains(o, "suspended") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("describe over PostgreSQL: %d %s", code, o)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, o, e := cli(t, vars, "signal", id, demo.DecisionSignal, `{"approved": true, "by": "pg"}`); code != 0 {
		t.Fatalf("signal: %d %s %s", code, o, e)
	}
	for {
		code, o, _ := cli(t, vars, "list", "--graph", demo.Approval, "--status", "completed")
		if code == 0 && strings.Contains(o, id) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the signal sent through docket server did not complete %s: %s", id, o)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
