package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/docket-run/docket/store"
)

// ErrSchemaTooNew is returned by Open and Migrate for a database whose
// schema was written by a newer version of docket than this one.
var ErrSchemaTooNew = errors.New("postgres: database schema is newer than this version of docket supports")

// ErrSchemaTooOld is returned by Open with SkipMigrate when the schema is
// missing or older than this version of docket needs: run Migrate first.
var ErrSchemaTooOld = errors.New("postgres: database schema is older than this version of docket needs")

// ErrServerTooOld is returned by Open for a server older than
// PostgreSQL 13, the first with the transaction ID functions docket uses.
var ErrServerTooOld = errors.New("postgres: server is older than PostgreSQL 13, which docket needs")

// minServerVersion is PostgreSQL 13, as server_version_num gives it.
const minServerVersion = 130000

// ErrBadValue is returned for a value that the server would refuse: a name
// or ID with a NUL byte or invalid UTF-8, a time outside PostgreSQL's range
// (4713 BC to 294276 AD), a count beyond 32 bits. The Update that tried to
// write it fails on its own, before anything reaches the server. It
// matches store.ErrInvalid.
var ErrBadValue = fmt.Errorf("postgres: %w", store.ErrInvalid)

// Store is a store.Store in a PostgreSQL database. It is safe for
// concurrent use, and any number of Stores (in any number of processes) may
// share one database schema.
type Store struct {
	pool    *pgxpool.Pool
	listen  *pgx.ConnConfig // for the connections of Listen
	name    string          // host:port/database, for messages
	schema  string          // where the tables are
	channel string          // the NOTIFY channel of this schema
	seed    uint64          // hash state of the schema, for advisory lock keys
	taskSeq string          // the sequence of task IDs

	updates     coalescer[*request]     // Updates, run in groups
	reads       coalescer[*readRequest] // reads, sent together
	grouped     atomic.Int64            // Updates that ran in a group of more than one, for tests
	sharedReads atomic.Int64            // reads that shared a round trip, for tests
	ids         idPool                  // task IDs reserved by this process
	known       knownSet                // executions as this process last committed them
	owners      sync.Map                // worker IDs that claimed or extended leases here
	speculated  atomic.Int64            // Updates committed on a kept execution, for tests
	stale       atomic.Int64            // kept executions found changed, for tests
	checked     atomic.Int64            // Updates speculated with checked writes, no guard
	specGroups  atomic.Int64            // groups of several committed on kept executions, for tests
	listening   atomic.Int32            // listeners connected now: claims note waiting workers only then
	self        string                  // this store's name among executions' watchers
	watched     watchSet                // executions this store watches
	localMu     sync.Mutex              // guards locals
	locals      []*localListener        // Listen calls, told of what was not sent (see Watch)

	closed atomic.Bool
	mu     sync.Mutex         // orders Listen against Close
	stop   context.Context    // done when the store is closed
	cancel context.CancelFunc // ends stop
	wg     sync.WaitGroup     // listener goroutines
}

var (
	_ store.Store    = (*Store)(nil)
	_ store.Notifier = (*Store)(nil)
	_ store.Watcher  = (*Store)(nil)
)

// Option configures Open.
type Option func(*options)

type options struct {
	maxConns int32
	maxGroup int
	noMigr   bool
}

// DefaultMaxGroup is how many Updates of different executions may share
// one transaction unless MaxGroup says otherwise. It stays within the 64
// subtransactions that a PostgreSQL backend tracks without overflowing
// (members that set a savepoint use one each).
const DefaultMaxGroup = 64

// MaxGroup sets how many Updates of different executions may share one
// transaction when they arrive together (see "Group commit" in the package
// documentation); 1 gives every Update a transaction of its own.
func MaxGroup(n int) Option {
	return func(o *options) { o.maxGroup = n }
}

// MaxConns sets the size of the connection pool (by default the URL's
// pool_max_conns, else pgxpool's default of four or the number of CPUs,
// whichever is more). Each Update, Claim and read holds one connection
// while it runs; each Listen holds one more of its own, outside the pool.
func MaxConns(n int) Option {
	return func(o *options) { o.maxConns = int32(n) }
}

// SkipMigrate makes Open leave the schema alone: it only checks that the
// schema is the version this build of docket uses, and fails with
// ErrSchemaTooOld or ErrSchemaTooNew otherwise. Use it where an operator
// runs Migrate separately (docket migrate) and application processes must
// not change the schema.
func SkipMigrate() Option {
	return func(o *options) { o.noMigr = true }
}

// Open connects to the PostgreSQL database at url and brings its schema
// up to date (see Migrate), unless SkipMigrate is given.
//
// url is a postgres:// or postgresql:// URL, or a key=value connection
// string, as pgx takes them. Parameters that the server knows, such as
// search_path, application_name, lock_timeout or
// default_transaction_read_only, are set on every connection; the pgxpool
// parameters (pool_max_conns, ...) size the pool. The tables live in the
// first existing schema of the search_path, which must exist; giving docket
// a schema of its own (?search_path=docket) keeps them apart from an
// application's tables.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
		if cfg.MinConns > cfg.MaxConns {
			cfg.MinConns = cfg.MaxConns
		}
	}
	s := &Store{listen: cfg.ConnConfig.Copy(), name: serverName(cfg.ConnConfig), self: newStoreID()}
	// Every statement docket sends is prepared once per connection and
	// looks rows up by key, so a plan made for its first parameters is as
	// good as one made for each call's; planning each call anew was a
	// tenth of the server's time under load. A URL that sets
	// plan_cache_mode (also as options=-c plan_cache_mode=...) keeps its own.
	if _, ok := cfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !ok &&
		!strings.Contains(cfg.ConnConfig.RuntimeParams["options"], "plan_cache_mode") {
		cfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	// The store's array arguments skip pgx's generic array encoding (see
	// arrays.go).
	cfg.AfterConnect = func(_ context.Context, c *pgx.Conn) error {
		registerArrays(c.TypeMap())
		return nil
	}
	// A quarter of the pool (at least one connection) leads groups of
	// Updates; the rest is for claims, leases and reads, which must not
	// wait behind them. Few leaders make large groups: on a busy store one
	// group is in flight while the next gathers.
	leaders := max(1, int(cfg.MaxConns)/4)
	maxGroup := DefaultMaxGroup
	if o.maxGroup > 0 {
		maxGroup = o.maxGroup
	}
	s.updates = coalescer[*request]{maxLeaders: leaders, pick: pickGroup(maxGroup), run: s.runUpdates}
	s.reads = coalescer[*readRequest]{maxLeaders: leaders, pick: pickReads, run: s.runReads}
	s.stop, s.cancel = context.WithCancel(context.Background())
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		s.cancel()
		return nil, s.wrap("open", err)
	}
	if err := s.setup(ctx, o); err != nil {
		s.pool.Close()
		s.cancel()
		return nil, err
	}
	return s, nil
}

// setup finds the schema and migrates it or checks its version.
func (s *Store) setup(ctx context.Context, o options) error {
	c, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.wrap("open", err)
	}
	defer c.Release()
	var version int
	if err := c.Conn().QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		return s.wrap("open", err)
	}
	if version < minServerVersion {
		return fmt.Errorf("%w (server %s has version %d)", ErrServerTooOld, s.name, version)
	}
	if s.schema, err = currentSchema(ctx, c.Conn()); err != nil {
		return s.wrap("open", err)
	}
	h := fnv.New64a()
	h.Write([]byte(s.schema))
	h.Write([]byte{0})
	s.seed = h.Sum64()
	s.channel = channelName(s.schema)
	if o.noMigr {
		v, err := schemaVersion(ctx, c.Conn())
		if err != nil {
			return s.wrap("reading schema version", err)
		}
		if err := s.checkVersion(v, true); err != nil {
			return err
		}
	} else if err := s.migrate(ctx, c.Conn()); err != nil {
		return err
	}
	err = c.Conn().QueryRow(ctx, `SELECT pg_get_serial_sequence(format('%I.tasks', $1::text), 'id')`, s.schema).Scan(&s.taskSeq)
	return s.wrap("finding the task ID sequence", err)
}

// idBlock is how many task IDs a process reserves at a time.
const idBlock = 64

// idPool holds task IDs that this process reserved from the tasks table's
// identity sequence, so that AddTask can name a task without asking the
// server. The sequence gives every ID once, so IDs stay unique across
// processes and are never reused; a process that exits leaves a gap.
type idPool struct {
	mu  sync.Mutex
	ids []int64 // ascending
}

// take returns the next reserved ID.
func (p *idPool) take() (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) == 0 {
		return 0, false
	}
	id := p.ids[0]
	p.ids = p.ids[1:]
	return id, true
}

// wanted returns how many IDs to reserve now (0 while enough are left).
func (p *idPool) wanted() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ids) >= idBlock/2 {
		return 0
	}
	return idBlock
}

// put adds reserved IDs.
func (p *idPool) put(ids []int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ids = append(p.ids, ids...)
	slices.Sort(p.ids)
}

// serverName names the database for error messages, without credentials.
func serverName(c *pgx.ConnConfig) string {
	host := c.Host
	if c.Port != 0 && (len(host) == 0 || host[0] != '/') {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	}
	return host + "/" + c.Database
}

// currentSchema returns the schema that unqualified new tables go to.
func currentSchema(ctx context.Context, c *pgx.Conn) (string, error) {
	var schema *string
	if err := c.QueryRow(ctx, `SELECT current_schema()`).Scan(&schema); err != nil {
		return "", err
	}
	if schema == nil {
		var path string
		_ = c.QueryRow(ctx, `SHOW search_path`).Scan(&path)
		return "", fmt.Errorf("no schema of the search_path (%s) exists; create one (CREATE SCHEMA docket) and name it in the URL (?search_path=docket)", path)
	}
	return *schema, nil
}

// channelName returns the NOTIFY channel of the stores in schema: a
// channel name is an identifier of at most 63 bytes.
func channelName(schema string) string {
	const prefix = "docket_events_"
	if len(prefix)+len(schema) <= 63 {
		return prefix + schema
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return fmt.Sprintf("%s%016x", prefix, h.Sum64())
}

// lockKey returns the advisory lock key of execution id: a 64-bit hash of
// the schema and the ID, so that stores in other schemas of the database
// do not contend.
func (s *Store) lockKey(id string) int64 {
	h := s.seed
	for i := 0; i < len(id); i++ { // FNV-1a, continuing from the schema
		h ^= uint64(id[i])
		h *= 1099511628211
	}
	return int64(h)
}

// Close closes the pool and stops the listeners started by Listen, waiting
// for calls in progress to return. Later calls to the Store return
// store.ErrClosed; closing again does nothing. Close must not be called
// from a Listen callback.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed.Swap(true) {
		s.mu.Unlock()
		return nil
	}
	s.cancel()
	s.mu.Unlock()
	s.forgetWaiting()
	s.wg.Wait()
	s.pool.Close()
	return nil
}

// forgetWaiting removes the notes of the workers that claimed here as
// waiting (see claimWaiting), so that no task is named to them once they
// are gone. It is best effort: a note left behind lapses in seconds.
func (s *Store) forgetWaiting() {
	var ids []string
	s.owners.Range(func(k, _ any) bool {
		ids = append(ids, k.(string))
		return true
	})
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, _ = s.pool.Exec(ctx, `DELETE FROM waiting WHERE worker = ANY($1)`, ids)
}

// check returns store.ErrClosed after Close, or ctx's error.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("postgres %s: %w", s.name, store.ErrClosed)
	}
	return ctx.Err()
}

// codeDivisionByZero is how a speculative Update's guard and checked
// writes fail when a row changed (see speculate).
const codeDivisionByZero = "22012"

// SQLSTATE codes that map to errors of package store.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeReadOnly            = "25006" // read_only_sql_transaction
	codeSerialization       = "40001"
	codeDeadlock            = "40P01"
	codeDiskFull            = "53100"
	codeLockNotAvailable    = "55P03" // lock_timeout
	codeDataCorrupted       = "XX001"
	codeIndexCorrupted      = "XX002"
)

// kind returns the store error that a driver error stands for, or nil.
func kind(err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return nil
	}
	switch pe.Code {
	case codeReadOnly:
		return store.ErrReadOnly
	case codeDiskFull:
		return store.ErrFull
	case codeDataCorrupted, codeIndexCorrupted:
		return store.ErrCorrupt
	case codeLockNotAvailable, codeSerialization, codeDeadlock:
		return store.ErrBusy
	case codeUniqueViolation:
		if pe.TableName == "executions" {
			return store.ErrExists
		}
	case codeForeignKeyViolation:
		return store.ErrNotFound
	}
	return nil
}

// retryable reports whether a single-statement operation that failed with
// err may simply be run again.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == codeSerialization || pe.Code == codeDeadlock)
}

// wrap adds the server and the operation to err and maps driver errors to
// the errors of package store, keeping the driver's error in the chain.
// Errors of package store and of contexts pass through errors.Is.
func (s *Store) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if s.closed.Load() && !errors.Is(err, store.ErrClosed) && closedErr(err) {
		return fmt.Errorf("postgres %s: %s: %w: %w", s.name, op, store.ErrClosed, err)
	}
	if k := kind(err); k != nil {
		return fmt.Errorf("postgres %s: %s: %w: %w", s.name, op, k, err)
	}
	return fmt.Errorf("postgres %s: %s: %w", s.name, op, err)
}

// closedErr reports whether err is what the pool or a connection says
// after Close.
func closedErr(err error) bool {
	var pe *pgconn.PgError
	return !errors.As(err, &pe) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// ctxErr prefers ctx's error to err once ctx has ended, since a cancelled
// query fails with whatever the connection saw at that moment.
func (s *Store) ctxErr(ctx context.Context, op string, err error) error {
	if err != nil && ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
		return fmt.Errorf("postgres %s: %s: %w (%v)", s.name, op, ctx.Err(), err)
	}
	return s.wrap(op, err)
}
