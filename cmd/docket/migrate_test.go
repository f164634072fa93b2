package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

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
