// Package pgtest gives tests a PostgreSQL database of their own: a fresh,
// empty schema on the test server, dropped when the test ends.
//
// The server is named by the environment variable DOCKET_TEST_POSTGRES (a
// postgres:// URL, by default DefaultURL); scripts/postgres.sh finds or
// starts one and sets it. When the server cannot be reached, tests that ask
// for it are skipped, or fail when the environment variable CI is "true",
// so that CI never passes by skipping them.
//
//	func TestSomething(t *testing.T) {
//		s, err := postgres.Open(t.Context(), pgtest.URL(t))
//		...
//	}
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL is the environment variable that names the test server.
const EnvURL = "DOCKET_TEST_POSTGRES"

// DefaultURL is the test server when EnvURL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

var (
	mu     sync.Mutex
	probed = map[string]error{} // server URL → the outcome of connecting to it
)

// ServerURL returns the URL of the test server. It skips t when the server
// cannot be reached, or fails it when CI is "true".
func ServerURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		u = DefaultURL
	}
	mu.Lock()
	err, done := probed[u]
	if !done {
		err = probe(u)
		probed[u] = err
	}
	mu.Unlock()
	if err != nil {
		msg := fmt.Sprintf("PostgreSQL test server %s unreachable (set %s, or run scripts/postgres.sh): %v", redact(u), EnvURL, err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return u
}

func probe(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx)
}

// redact hides the password of a URL.
func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.User == nil {
		return u
	}
	return p.Redacted()
}

// URL creates an empty schema on the test server and returns the server's
// URL with search_path set to it, so that whatever connects through it
// creates and finds its tables there. The schema and everything in it is
// dropped when t ends (after the cleanups registered later, such as closing
// the stores opened on it).
func URL(t testing.TB) string {
	t.Helper()
	server := ServerURL(t)
	schema := schemaName(t.Name())
	if err := exec(server, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("pgtest: creating schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		// A process of the test's that is still going (a benchmark's
		// worker, exiting) can make the drop deadlock: try again.
		var err error
		for try := range 3 {
			if err = exec(server, "DROP SCHEMA "+schema+" CASCADE"); err == nil {
				return
			}
			time.Sleep(time.Duration(try+1) * 200 * time.Millisecond)
		}
		t.Logf("pgtest: dropping schema %s: %v", schema, err)
	})
	return WithParam(t, server, "search_path", schema)
}

// Database is URL for a database of the test's own, created with the
// given options of CREATE DATABASE (a collation, say) and dropped when the
// test ends: for behaviour that depends on what a database is created
// with. It fails t if the server cannot create it.
func Database(t testing.TB, options string) string {
	t.Helper()
	server := ServerURL(t)
	name := schemaName(t.Name())
	if err := exec(server, "CREATE DATABASE "+name+" "+options); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := exec(server, "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			t.Logf("pgtest: dropping database %s: %v", name, err)
		}
	})
	if !strings.HasPrefix(server, "postgres://") && !strings.HasPrefix(server, "postgresql://") {
		return server + " dbname=" + name
	}
	p, err := url.Parse(server)
	if err != nil {
		t.Fatalf("pgtest: bad URL %s: %v", redact(server), err)
	}
	p.Path = "/" + name
	return p.String()
}

// exec runs one statement on a connection of its own.
func exec(server, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// schemaName makes a schema name out of a test name and a random suffix.
func schemaName(test string) string {
	var b strings.Builder
	b.WriteString("dt_")
	for _, r := range strings.ToLower(test) {
		if b.Len() >= 40 {
			break
		}
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	var suffix [5]byte
	_, _ = rand.Read(suffix[:])
	return b.String() + "_" + hex.EncodeToString(suffix[:])
}

// WithParam returns the connection URL u with a parameter set, e.g. a
// server setting such as default_transaction_read_only=on. u may also be a
// key=value connection string.
func WithParam(t testing.TB, u, key, value string) string {
	t.Helper()
	if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") {
		return u + " " + key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'"
	}
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("pgtest: bad URL %s: %v", redact(u), err)
	}
	q := p.Query()
	q.Set(key, value)
	p.RawQuery = q.Encode()
	return p.String()
}

// Connect opens a connection for the test itself (to look at the database
// or to kill other connections), closed when t ends.
func Connect(t testing.TB, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: connecting to %s: %v", redact(u), err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}
