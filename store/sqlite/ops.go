package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/internal/sqlstore"
)

// write runs fn in an immediate transaction on the writer connection.
func (s *Store) write(ctx context.Context, op string, fn func(*sql.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.wrap(op, err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := fn(tx); err != nil {
		return s.wrap(op, err)
	}
	if err := tx.Commit(); err != nil {
		if ctx.Err() != nil {
			return s.wrap(op, ctx.Err())
		}
		return s.wrap(op, err)
	}
	return nil
}

// idList encodes IDs for json_each.
func idList(ids []int64) string {
	b, _ := json.Marshal(ids)
	return string(b)
}

// sqlClaim leases the oldest claimable tasks of a queue: ?1 owner, ?2 the
// new lease's end, ?3 now, ?4 limit, ?5 queue. It walks the index on
// (queue, ready_at, id); the workers table is only looked at for tasks
// pinned to another worker than the claimer.
const sqlClaim = `UPDATE tasks SET owner = ?1, lease_until = ?2, claims = claims + 1
	WHERE id IN (SELECT id FROM tasks
		WHERE queue = ?5 AND ready_at <= ?3 AND (owner = '' OR lease_until <= ?3)
			AND (worker = '' OR worker = ?1
				OR NOT EXISTS (SELECT 1 FROM workers WHERE workers.id = tasks.worker AND workers.alive_until > ?3))
		ORDER BY ready_at, id LIMIT ?4)
	RETURNING ` + taskCols

// Claim implements store.Store. It leases the tasks in one statement, oldest
// ReadyAt first (ties by ID), and returns them in that order.
func (s *Store) Claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) ([]store.Task, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		return nil, nil
	}
	var tasks []store.Task
	err := s.write(ctx, "claim", func(tx *sql.Tx) error {
		var err error
		tasks, err = collect(ctx, tx, scanTask, sqlClaim, owner, micros(now.Add(lease)), micros(now), limit, queue)
		return err
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(tasks, func(a, b store.Task) int {
		if c := a.ReadyAt.Compare(b.ReadyAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return tasks, nil
}

// deadFor is how long a worker's row stays in the workers table after it
// stopped being alive.
const deadFor = 24 * time.Hour

// ExtendLeases implements store.Store. In the same transaction it records
// that owner is alive until until, and deletes the rows of workers that
// had been dead for more than a day by then.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var held []int64
	err := s.write(ctx, "extend leases", func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO workers (id, alive_until) VALUES (?, ?)
			ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until`, owner, micros(until)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM workers WHERE alive_until < ?`, micros(until.Add(-deadFor))); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		var err error
		held, err = collect(ctx, tx, scanID, `UPDATE tasks SET lease_until = ?
			WHERE owner = ? AND id IN (SELECT value FROM json_each(?)) RETURNING id`,
			micros(until), owner, idList(ids))
		return err
	})
	if err != nil {
		return nil, err
	}
	var lost []int64
	for _, id := range ids {
		if !slices.Contains(held, id) {
			lost = append(lost, id)
		}
	}
	return lost, nil
}

func scanID(row scanner) (int64, error) {
	var id int64
	err := row.Scan(&id)
	return id, err
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return s.write(ctx, "release", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE tasks SET owner = '', lease_until = ?
			WHERE owner = ? AND id IN (SELECT value FROM json_each(?))`, zeroMicros, owner, idList(ids))
		return err
	})
}

// NextReadyAt implements store.Store.
func (s *Store) NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, false, err
	}
	var next sql.NullInt64
	err := s.r.QueryRowContext(ctx, `SELECT MIN(wake_at) FROM tasks WHERE wake_at > ?`, micros(now)).Scan(&next)
	if err != nil {
		return time.Time{}, false, s.wrap("next ready", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(next.Int64), true, nil
}

// Execution implements store.Store.
func (s *Store) Execution(ctx context.Context, id string) (*store.Execution, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	e, err := scanExec(s.r.QueryRowContext(ctx, `SELECT `+execCols+` FROM executions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, s.wrap("execution "+strconv.Quote(id), store.ErrNotFound)
	}
	return e, s.wrap("execution", err)
}

// Steps implements store.Store.
func (s *Store) Steps(ctx context.Context, id string) ([]store.Step, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	steps, err := collect(ctx, s.r, scanStep, `SELECT `+stepCols+` FROM steps WHERE exec = ? ORDER BY name`, id)
	return steps, s.wrap("steps", err)
}

// Journal implements store.Store.
func (s *Store) Journal(ctx context.Context, id, step string) ([]store.JournalEntry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	j, err := collect(ctx, s.r, scanEntry,
		`SELECT `+journalCols+` FROM journal WHERE exec = ? AND step = ? ORDER BY seq`, id, step)
	return j, s.wrap("journal", err)
}

// Snapshot implements store.Store.
func (s *Store) Snapshot(ctx context.Context, id, step string) (*store.Snapshot, error) {
	return store.ReadSnapshot(ctx, s, id, step)
}

// Tasks implements store.Store.
func (s *Store) Tasks(ctx context.Context, id string) ([]store.Task, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	tasks, err := collect(ctx, s.r, scanTask, `SELECT `+taskCols+` FROM tasks WHERE exec = ? ORDER BY id`, id)
	return tasks, s.wrap("tasks", err)
}

// List implements store.Store. The cursor is the creation number of the
// last execution on the page.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Execution, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	query, args, limit, err := sqlstore.ListSQL(q, execCols, sqlstore.Dialect{
		Param: func(int) string { return "?" },
		Time:  func(t time.Time) any { return micros(t) },
	})
	if err != nil {
		return nil, "", s.wrap("list", err)
	}
	rows, err := collect(ctx, s.r, func(sc scanner) (sqlstore.Listed, error) {
		var r sqlstore.Listed
		e, err := scanExec(sc, &r.Ord)
		if err == nil {
			r.Exec = *e
		}
		return r, err
	}, query, args...)
	if err != nil {
		return nil, "", s.wrap("list", err)
	}
	out, next := sqlstore.Page(rows, limit)
	return out, next, nil
}

// CacheGet implements store.Store. An entry is found while now is before
// its expiry.
func (s *Store) CacheGet(ctx context.Context, key string, now time.Time) ([]byte, bool, error) {
	if err := s.check(ctx); err != nil {
		return nil, false, err
	}
	var v []byte
	err := s.r.QueryRowContext(ctx, `SELECT value FROM cache WHERE key = ? AND expires > ?`, key, micros(now)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.wrap("cache get", err)
	}
	return v, true, nil
}

// CacheSet implements store.Store. Expired entries stay in the table until
// they are set again.
func (s *Store) CacheSet(ctx context.Context, key string, value []byte, expires time.Time) error {
	return s.write(ctx, "cache set", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO cache (key, value, expires) VALUES (?, ?, ?)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
			key, value, micros(expires))
		return err
	})
}

// Signals implements store.Store.
func (s *Store) Signals(ctx context.Context, id string) ([]store.Signal, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	sigs, err := collect(ctx, s.r, scanSignal, `SELECT `+signalCols+` FROM signals WHERE exec = ? ORDER BY seq`, id)
	return sigs, s.wrap("signals", err)
}
