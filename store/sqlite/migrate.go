package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/docket-run/docket/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations in order.
func migrations() ([]sqlstore.Migration, error) {
	return sqlstore.Migrations(migrationFiles, "sqlite")
}

// SchemaVersion is the schema version that this build creates and reads.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL
) STRICT`

// version reads the schema version of the database: 0 for a new one.
func version(ctx context.Context, q interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}) (int, error) {
	var n int
	err := q.QueryRowContext(ctx,
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`).Scan(&n)
	if err != nil || n == 0 {
		return 0, err
	}
	var v int
	err = q.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// migrate brings the schema up to date. A database already at the current
// version is only read, so read-only databases open.
func (s *Store) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return err
	}
	latest := len(ms)
	tooNew := func(v int) error {
		return fmt.Errorf("sqlite %s: %w: its schema is version %d, this version of docket knows versions up to %d; upgrade docket to open it",
			s.path, ErrSchemaTooNew, v, latest)
	}
	v, err := version(ctx, s.w)
	if err != nil {
		return s.wrap("reading schema version", err)
	}
	if v > latest {
		return tooNew(v)
	}
	for _, m := range ms[v:] {
		err := s.write(ctx, "migration "+m.Name, func(tx *sql.Tx) error {
			// Another process may have migrated since we looked.
			v, err := version(ctx, tx)
			if err != nil || v >= m.Version {
				return err
			}
			if _, err := tx.ExecContext(ctx, createMigrations); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
				m.Version, m.Name, micros(time.Now()))
			return err
		})
		if err != nil {
			return err
		}
	}
	if v, err = version(ctx, s.w); err != nil {
		return s.wrap("reading schema version", err)
	}
	if v > latest {
		return tooNew(v)
	}
	return nil
}
