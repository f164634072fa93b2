package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/docket-run/docket/store/internal/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations returns the embedded migrations in order.
func migrations() ([]sqlstore.Migration, error) {
	return sqlstore.Migrations(migrationFiles, "postgres")
}

// SchemaVersion is the schema version that this build creates and reads.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err)
	}
	return len(ms)
}

// Migrate brings the schema of the database at url up to date and returns.
// It is what Open does first (unless SkipMigrate is given), for operators
// who run migrations on their own, e.g. before rolling out a new version.
//
// Migrations are numbered SQL files embedded in the binary, each applied in
// a transaction of its own and recorded in the schema_migrations table of
// the schema. They run under a session-level advisory lock, so processes
// that start at the same time apply each migration once; the others wait
// and then find nothing to do. A schema that is already current is only
// read, so read-only databases open. A schema newer than this build knows
// fails with ErrSchemaTooNew.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgxpool.ParseConfig(url) // accepts and drops the pool parameters
	if err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s := &Store{name: serverName(cfg.ConnConfig)}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return s.wrap("connect", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	if s.schema, err = currentSchema(ctx, conn); err != nil {
		return s.wrap("migrate", err)
	}
	return s.migrate(ctx, conn)
}

// migrateKey is the advisory lock key that migrations of schema run under.
func migrateKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("docket migrations\x00"))
	h.Write([]byte(schema))
	return int64(h.Sum64())
}

const createMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer     PRIMARY KEY,
	name       text        NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// schemaVersion reads the schema version: 0 for a schema without docket's
// tables.
func schemaVersion(ctx context.Context, c *pgx.Conn) (int, error) {
	var exists bool
	err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables
		WHERE schemaname = current_schema() AND tablename = 'schema_migrations')`).Scan(&exists)
	if err != nil || !exists {
		return 0, err
	}
	var v int
	err = c.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&v)
	return v, err
}

// checkVersion fails for a schema of another version than this build's
// (or, unless exact, an older one, which migrate then brings up to date).
func (s *Store) checkVersion(v int, exact bool) error {
	latest := SchemaVersion()
	switch {
	case v > latest:
		return fmt.Errorf("postgres %s: schema %q: %w: it is version %d, this version of docket knows versions up to %d; upgrade docket to use it",
			s.name, s.schema, ErrSchemaTooNew, v, latest)
	case exact && v < latest:
		return fmt.Errorf("postgres %s: schema %q: %w: it is version %d, this version of docket needs %d; run docket migrate",
			s.name, s.schema, ErrSchemaTooOld, v, latest)
	}
	return nil
}

// migrate applies the missing migrations on c, under the migration lock.
func (s *Store) migrate(ctx context.Context, c *pgx.Conn) (err error) {
	ms, err := migrations()
	if err != nil {
		return err
	}
	key := migrateKey(s.schema)
	if _, err := c.Exec(ctx, `SELECT pg_advisory_lock($1)`, key); err != nil {
		return s.ctxErr(ctx, "migration lock", err)
	}
	defer func() {
		// A connection that cannot say unlock (or that a cancelled context
		// broke) is closed, which releases the lock as well.
		if _, uerr := c.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, key); uerr != nil {
			_ = c.Close(context.Background())
		}
	}()
	v, err := schemaVersion(ctx, c)
	if err != nil {
		return s.ctxErr(ctx, "reading schema version", err)
	}
	if err := s.checkVersion(v, false); err != nil {
		return err
	}
	for _, m := range ms[v:] {
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, createMigrations); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.Version, m.Name)
			return err
		})
		if err != nil {
			return s.ctxErr(ctx, "migration "+m.Name, err)
		}
	}
	return nil
}
