// Package sqlite is docket's embedded default store: one SQLite database file,
// through the pure-Go driver modernc.org/sqlite (no cgo).
//
// # Design
//
// SQLite allows one writer at a time per database file. Rather than let
// goroutines race for that lock and see SQLITE_BUSY, a Store is built around
// a single writer:
//
//   - All writes (Update, Claim, ExtendLeases, Release, CacheSet, migrations)
//     go through one connection (a database/sql pool capped at one open
//     connection). Goroutines queue for it in Go, where waiting honours their
//     contexts, instead of spinning in SQLite's busy handler.
//   - Every write transaction starts with BEGIN IMMEDIATE, so it takes the
//     write lock up front. A deferred transaction that reads and then writes
//     can fail with SQLITE_BUSY when another connection committed in between,
//     and the busy timeout cannot help it; an immediate one only ever waits.
//   - Reads (Execution, Steps, Journal, List, NextReadyAt, CacheGet) use a
//     separate pool of query-only connections. In WAL mode readers never
//     block the writer nor wait for it.
//   - busy_timeout (5s) covers the remaining waits: another process (or
//     another Store on the same file) holding the write lock, and WAL
//     recovery. Only a lock held longer than that reaches callers, as
//     store.ErrBusy.
//
// The database is in WAL mode with synchronous=FULL: every commit is fsynced
// to the WAL before Update returns, so a step the engine recorded as done
// survives a power loss. (synchronous=NORMAL would only fsync at
// checkpoints; a crash could then roll back the last commits, and the engine
// would run completed steps, with their side effects, again.) Foreign keys are
// enforced.
//
// Claim is one UPDATE ... RETURNING that leases the oldest claimable tasks
// of one queue, walking the index on (queue, ready_at, id). A task pinned to
// a worker other than the claimer is passed over while that worker's row in
// the workers table says it is alive; the lookup (by primary key) is only
// made for such tasks. ExtendLeases, with or without leases to extend,
// records the owner's alive-until in that table (one row per worker) and
// deletes the rows of workers that had been dead for more than a day. An
// execution's signal counter (executions.signal_seq) numbers its signals,
// so that the Seqs of deleted ones are never given again.
//
// Times are stored as INTEGER microseconds since the Unix epoch (UTC) and
// come back in UTC. The schema is created and upgraded by numbered SQL files
// embedded in the binary (migrations/0001_init.sql, ...), each applied in its
// own transaction and recorded in the schema_migrations table. Opening a
// database whose schema is newer than this build knows fails with
// ErrSchemaTooNew rather than risk misreading it.
//
// Driver failures are reported as the typed errors of package store
// (store.ErrBusy, store.ErrReadOnly, store.ErrFull, store.ErrCorrupt), with
// the path and the driver's message kept in the text.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/docket-run/docket/store"
)

// BusyTimeout is how long, in milliseconds, a connection waits for a lock
// held by another connection before failing with store.ErrBusy. A "file:"
// path may set its own with the _busy_timeout parameter.
const BusyTimeout = 5000

// readers is the size of the read pool.
const readers = 4

// synchronous is the PRAGMA synchronous of the writer; tests change it to
// measure its cost.
var synchronous = "FULL"

// ErrSchemaTooNew is returned by Open for a database written by a newer
// version of docket, whose schema this version does not know.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this version of docket supports")

// Store is a store.Store in one SQLite database file.
type Store struct {
	path   string
	w      *sql.DB // the single writer connection
	r      *sql.DB // query-only readers
	closed atomic.Bool
}

var _ store.Store = (*Store)(nil)

// Open opens the database at path, creating it if it does not exist, and
// brings its schema up to date.
//
// path is a file name, or an SQLite URI starting with "file:" whose query
// parameters are passed on, e.g. "file:/var/lib/app/docket.db?mode=ro" to
// open read-only (writes then fail with store.ErrReadOnly). The parameters
// that this package sets itself (_txlock, _journal_mode, _synchronous,
// _foreign_keys, _query_only) cannot be given. In-memory databases are not
// supported: use store/memory.
func Open(ctx context.Context, path string) (*Store, error) {
	base, err := parsePath(path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path}
	w := url.Values{}
	w.Set("_journal_mode", "WAL")
	w.Set("_synchronous", synchronous)
	w.Set("_foreign_keys", "1")
	w.Set("_txlock", "immediate")
	if s.w, err = sql.Open("sqlite", base.dsn(w)); err != nil {
		return nil, s.wrap("open", err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxLifetime(0)
	s.w.SetConnMaxIdleTime(0)
	// Connecting the writer first sets WAL mode before any reader connects.
	if err := s.connectWriter(ctx); err != nil {
		_ = s.w.Close()
		return nil, s.wrap("open", err)
	}
	if err := s.migrate(ctx); err != nil {
		_ = s.w.Close()
		return nil, err
	}
	r := url.Values{}
	r.Set("_query_only", "1")
	r.Set("_foreign_keys", "1")
	if s.r, err = sql.Open("sqlite", base.dsn(r)); err != nil {
		_ = s.w.Close()
		return nil, s.wrap("open", err)
	}
	s.r.SetMaxOpenConns(readers)
	s.r.SetMaxIdleConns(readers)
	if err := s.r.PingContext(ctx); err != nil {
		_ = s.Close()
		return nil, s.wrap("open", err)
	}
	return s, nil
}

// connectWriter opens the writer connection. Switching a new file to WAL
// needs an exclusive lock and fails with SQLITE_BUSY at once, without the
// busy handler, when another process is opening the same file at that
// moment; so it is tried again, for up to the busy timeout.
func (s *Store) connectWriter(ctx context.Context) error {
	deadline := time.Now().Add(BusyTimeout * time.Millisecond)
	for {
		err := s.w.PingContext(ctx)
		if err == nil || !errors.Is(kind(err), store.ErrBusy) || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// dsnBase is a database name and the query parameters given with it.
type dsnBase struct {
	name  string // "file:" + escaped path
	query url.Values
}

// reserved are the DSN parameters that Open sets itself.
var reserved = []string{"_txlock", "_journal_mode", "_journal", "_synchronous", "_sync",
	"_foreign_keys", "_fk", "_query_only"}

func parsePath(path string) (dsnBase, error) {
	if path == "" {
		return dsnBase{}, errors.New("sqlite: empty database path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file::memory:") || strings.Contains(path, "mode=memory") {
		return dsnBase{}, fmt.Errorf("sqlite %s: in-memory databases are not supported; use store/memory", path)
	}
	if !strings.HasPrefix(path, "file:") {
		// Escape what a URI would read as a query, a fragment or an escape.
		r := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
		name := "file:" + r.Replace(path)
		if strings.HasPrefix(path, "/") {
			name = "file://" + r.Replace(path) // an empty authority, so "//x" stays a path
		}
		return dsnBase{name: name, query: url.Values{}}, nil
	}
	name, rawQuery, _ := strings.Cut(path, "?")
	name, _, _ = strings.Cut(name, "#")
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return dsnBase{}, fmt.Errorf("sqlite %s: bad URI parameters: %w", path, err)
	}
	for _, k := range reserved {
		if q.Has(k) {
			return dsnBase{}, fmt.Errorf("sqlite %s: parameter %s is set by the store and cannot be given", path, k)
		}
	}
	return dsnBase{name: name, query: q}, nil
}

// dsn returns the data source name with the given parameters added.
func (b dsnBase) dsn(extra url.Values) string {
	q := url.Values{}
	for k, v := range b.query {
		q[k] = v
	}
	for k, v := range extra {
		q[k] = v
	}
	if !q.Has("_busy_timeout") && !q.Has("_timeout") {
		q.Set("_busy_timeout", fmt.Sprint(BusyTimeout))
	}
	return b.name + "?" + q.Encode()
}

// Close closes the database. Later calls to the Store return
// store.ErrClosed; closing again does nothing.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return s.wrap("close", err)
	}
	return nil
}

// check returns store.ErrClosed after Close, or ctx's error.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	return ctx.Err()
}

// kind returns the store error that a driver error stands for, or nil.
func kind(err error) error {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.Code() & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return store.ErrBusy
	case sqlite3.SQLITE_READONLY:
		return store.ErrReadOnly
	case sqlite3.SQLITE_FULL:
		return store.ErrFull
	case sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB:
		return store.ErrCorrupt
	}
	return nil
}

// isForeignKey reports whether err is a failed foreign key constraint.
func isForeignKey(err error) bool {
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
}

// wrap adds the path and the operation to err and maps driver errors to the
// errors of package store. Errors of package store and of contexts pass
// through errors.Is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrConnDone) && s.closed.Load() {
		return fmt.Errorf("sqlite %s: %s: %w", s.path, op, store.ErrClosed)
	}
	if k := kind(err); k != nil {
		return fmt.Errorf("sqlite %s: %s: %w: %v", s.path, op, k, err)
	}
	if k := s.openKind(err); k != nil {
		return fmt.Errorf("sqlite %s: %s: %w: %v", s.path, op, k, err)
	}
	return fmt.Errorf("sqlite %s: %s: %w", s.path, op, err)
}
