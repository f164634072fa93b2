package postgres

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/internal/sqlstore"
)

// Statements outside Update run on any pooled connection, each on its own
// (in an implicit transaction), so each is one round trip.

// retries is how many times a single-statement write is run again after
// the server aborted it for a deadlock or a serialization failure.
const retries = 3

// exec runs a single statement that writes, again when the server aborts
// it for a deadlock, and maps its error.
func (s *Store) exec(ctx context.Context, op string, run func() error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	var err error
	for range retries {
		if err = run(); err == nil || !retryable(err) {
			break
		}
	}
	return s.ctxErr(ctx, op, err)
}

// sqlClaim leases the oldest claimable tasks of a queue: $1 now, $2 limit,
// $3 owner, $4 the new lease's end, $5 queue. A task is claimable when it
// is free and ready, or leased with both its ready_at and its lease's end
// past, that is with its wake_at past. Each kind has its partial index:
// free tasks by (queue, ready_at, id), leased ones by (queue, wake_at),
// so that a claim never walks past the tasks leased and running. Each
// kind gives up to $2 candidates, locked with SKIP LOCKED, and the oldest
// $2 of them by (ready_at, id) are leased. The pin check is the last arm
// of an OR, so the workers table is only looked up (by its primary key,
// without locking) for tasks pinned to a worker other than the claimer.
const sqlClaim = claimCandidates + `
	` + claimLease

const claimCandidates = `WITH f AS (
		SELECT id, ready_at FROM tasks
		WHERE queue = $5 AND owner = '' AND ready_at <= $1
			AND (worker = '' OR worker = $3
				OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = tasks.worker AND w.alive_until > $1))
		ORDER BY ready_at, id
		LIMIT $2
		FOR UPDATE SKIP LOCKED
	), x AS (
		SELECT id, ready_at FROM tasks
		WHERE queue = $5 AND owner <> '' AND wake_at <= $1
			AND (worker = '' OR worker = $3
				OR NOT EXISTS (SELECT 1 FROM workers w WHERE w.id = tasks.worker AND w.alive_until > $1))
		ORDER BY queue, wake_at -- the order of the index of leased tasks
		LIMIT $2
		FOR UPDATE SKIP LOCKED
	), c AS (
		SELECT id FROM (SELECT * FROM f UNION ALL SELECT * FROM x) a
		ORDER BY ready_at, id
		LIMIT $2
	)`

const claimLease = `UPDATE tasks t SET owner = $3, lease_until = $4, claims = t.claims + 1
	FROM c WHERE t.id = c.id
	RETURNING t.id, t.exec, t.step, t.kind, t.ready_at, t.owner, t.lease_until, t.attempt, t.claims, t.queue, t.worker`

// sqlClaimLoad is sqlClaim that also leaves, in the transaction's
// settings docket.claimed and docket.claimed_steps, the executions and
// steps of the claimed tasks, as two arrays in the order of the tasks'
// IDs, for the reads that follow it in the transaction (sqlClaimed...).
// sqlClaimPrelude empties them first: with nothing claimed, the settings
// may not be evaluated.
const (
	sqlClaimLoad = claimCandidates + `, u AS (
		` + claimLease + `
	)` + claimWaiting + `
	SELECT u.* FROM u, (SELECT set_config('docket.claimed', coalesce((SELECT array_agg(exec ORDER BY id) FROM u)::text, '{}'), true),
		set_config('docket.claimed_steps', coalesce((SELECT array_agg(step ORDER BY id) FROM u)::text, '{}'), true)) AS settings`
	sqlClaimPrelude = sqlAsyncCommit + `, set_config('docket.claimed', '{}', true),
		set_config('docket.claimed_steps', '{}', true)`
	claimedExecs = `current_setting('docket.claimed')::text[]`
)

// claimWaiting notes the claimer as waiting for tasks of the queue for
// waitingFor when the claim leaves some of its $2 slots free and $6 (the
// process hears notifications), and removes the note when it fills them
// (see Handing tasks off in doc.go). The note's time is the server's, as
// is the time it is checked against, whatever the workers' clocks say.
const claimWaiting = `, waits AS (
		INSERT INTO waiting (queue, worker, until)
		SELECT $5, $3, now() + interval '` + waitingFor + `' WHERE $6 AND (SELECT count(*) FROM u) < $2
		ON CONFLICT (queue, worker) DO UPDATE SET until = excluded.until
	), filled AS (
		DELETE FROM waiting WHERE queue = $5 AND worker = $3 AND (SELECT count(*) FROM u) >= $2
	)`

// sqlNotWaiting removes the note of worker $2 for queue $1: a ClaimNext
// with no slot free, as a worker sends when it stops claiming.
const sqlNotWaiting = `DELETE FROM waiting WHERE queue = $1 AND worker = $2`

// waitingFor is how long a claim that left slots free notes its worker as
// waiting: a few of the engine's default poll intervals, so that an idle
// worker's note stays fresh and a dead worker's lapses soon.
const waitingFor = "2 seconds"

// The reads of what the claimed tasks' executions need, each with the row
// versions (xmin) that make up the executions' digests (see known).
var (
	sqlClaimedExecs = `SELECT ` + execCols + `, signal_seq, watchers, xmin::text FROM executions
		WHERE id = ANY(` + claimedExecs + `)`
	sqlClaimedSteps = `SELECT ` + stepCols + ` FROM steps
		WHERE exec = ANY(` + claimedExecs + `) ORDER BY exec, name COLLATE "C"`
	sqlClaimedTasks = `SELECT ` + taskCols + `, xmin::text FROM tasks
		WHERE exec = ANY(` + claimedExecs + `) ORDER BY exec, id`
	sqlClaimedJournal = `SELECT ` + qualify("j", journalCols) + ` FROM
		(SELECT DISTINCT * FROM unnest(` + claimedExecs + `, current_setting('docket.claimed_steps')::text[])) AS u(exec, step)
		JOIN journal j ON j.exec = u.exec AND j.step = u.step ORDER BY j.exec, j.step, j.seq`
)

// sqlAsyncCommit makes the transaction it runs in commit without waiting
// for the server to flush the commit to disk. It also plans the lease
// statements that follow it with index lookups only, as the group's reads
// are (see indexPlans): a plan cached while the tasks table was small
// would otherwise scan the whole table once it is large.
const sqlAsyncCommit = `SELECT set_config('synchronous_commit', 'off', true), ` + indexPlans

// queryLeases runs a statement that only writes leases (Claim,
// ExtendLeases, Release) and scans its rows. Such a statement commits
// asynchronously: a lease is not worth a wait for the disk, because losing
// one in a crash of the server only makes its task claimable again, which
// the fence in every Update that records a step's outcome already allows
// for — and every such Update commits synchronously, flushing the leases
// committed before it.
func queryLeases[T any](ctx context.Context, s *Store, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	b := &pgx.Batch{}
	b.Queue(sqlAsyncCommit)
	b.Queue(sql, args...)
	var out []T
	err := sendLeases(ctx, s, b, func(br pgx.BatchResults) error {
		rows, _ := br.Query()
		var err error
		out, err = pgx.CollectRows(rows, scan)
		return err
	})
	return out, err
}

// sendLeases sends a batch that starts with sqlAsyncCommit and reads the
// results of the rest with read.
func sendLeases(ctx context.Context, s *Store, b *pgx.Batch, read func(pgx.BatchResults) error) error {
	br := s.pool.SendBatch(ctx, b)
	_, err := br.Exec()
	if err == nil {
		err = read(br)
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
}

// scanNothing reads a row whose values are not needed.
func scanNothing(pgx.CollectableRow) (struct{}, error) { return struct{}{}, nil }

// Claim implements store.Store. It leases the tasks in one statement: the
// oldest claimable ones of the queue (ReadyAt, then ID) are locked with FOR
// UPDATE SKIP LOCKED, so that concurrent Claims, in any process, pass over
// each other's rows instead of waiting, and leased. They are returned in
// that order.
//
// SKIP LOCKED also passes over the tasks of executions that an Update
// holds at that moment (it row-locks them), whatever their queue or pin;
// they are claimable again a moment later. Tasks pinned to a worker other
// than owner are passed over while the workers table says that worker is
// alive at now; those rows are read, not locked, so ExtendLeases never
// waits for a Claim nor a Claim for it.
func (s *Store) Claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) ([]store.Task, error) {
	c, err := s.claim(ctx, owner, queue, now, lease, limit, false)
	return c.Tasks, err
}

// ClaimNext implements store.NextClaimer: the claim's transaction also
// reads the claimed tasks' executions, their steps, tasks and journals
// (by the settings sqlClaimLoad leaves), and the next wake-up time, all in
// its round trip. What it reads of each execution is kept with the row
// versions it read (see known), so that the Update that
// records the claimed step can speculate on it.
func (s *Store) ClaimNext(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) (store.Claimed, error) {
	return s.claim(ctx, owner, queue, now, lease, limit, true)
}

func (s *Store) claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int, next bool) (store.Claimed, error) {
	var c store.Claimed
	if err := s.check(ctx); err != nil {
		return c, err
	}
	if limit <= 0 && !next {
		return c, nil
	}
	s.owners.Store(owner, true)
	var (
		at     *time.Time
		loaded *claimedLoad
	)
	err := s.exec(ctx, "claim", func() error {
		c.Tasks, at, loaded = nil, nil, nil
		load := next && limit > 0
		b := &pgx.Batch{}
		switch {
		case load:
			b.Queue(sqlClaimPrelude)
			b.Queue(sqlClaimLoad, now, limit, owner, now.Add(lease), queue, s.listening.Load() > 0)
		case limit > 0:
			b.Queue(sqlAsyncCommit)
			b.Queue(sqlClaim, now, limit, owner, now.Add(lease), queue)
		default:
			b.Queue(sqlAsyncCommit)
			if next { // no slot free: the worker waits for no task
				b.Queue(sqlNotWaiting, queue, owner)
			}
		}
		if next {
			b.Queue(sqlNextReadyAt, now)
		}
		if load {
			queueClaimedLoad(b)
		}
		return sendLeases(ctx, s, b, func(br pgx.BatchResults) error {
			if limit > 0 {
				rows, _ := br.Query()
				var err error
				if c.Tasks, err = pgx.CollectRows(rows, scanTask); err != nil {
					return err
				}
			} else if next {
				if _, err := br.Exec(); err != nil {
					return err
				}
			}
			if next {
				if err := br.QueryRow().Scan(&at); err != nil {
					return err
				}
			}
			if load {
				var err error
				loaded, err = readClaimedLoad(br)
				return err
			}
			return nil
		})
	})
	if err != nil {
		return store.Claimed{}, err
	}
	slices.SortFunc(c.Tasks, func(a, b store.Task) int {
		if c := a.ReadyAt.Compare(b.ReadyAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	if loaded != nil {
		c.Snapshots = loaded.snapshots(c.Tasks)
		loaded.keep(s)
	}
	if at != nil {
		c.Next, c.HasNext = utc(*at), true
	}
	return c, nil
}

// deadFor is how long a worker's row stays in the workers table after it
// stopped being alive.
const deadFor = 24 * time.Hour

// sqlExtendLeases records that worker $2 is alive until $3, deletes the
// rows of other workers dead since before $4 (skipping rows that another
// ExtendLeases has locked: it deletes them, or a later one will), and
// moves the leases that $2 holds of tasks $1 to $3.
const sqlExtendLeases = `WITH alive AS (
		INSERT INTO workers (id, alive_until) VALUES ($2, $3)
		ON CONFLICT (id) DO UPDATE SET alive_until = excluded.alive_until
	), dead AS (
		DELETE FROM workers WHERE id IN (
			SELECT id FROM workers WHERE alive_until < $4 AND id <> $2 FOR UPDATE SKIP LOCKED)
	), l AS (
		SELECT id FROM tasks WHERE id = ANY($1) AND owner = $2 ORDER BY id FOR UPDATE
	)
	UPDATE tasks t SET lease_until = $3 FROM l WHERE t.id = l.id RETURNING t.id`

// ExtendLeases implements store.Store, in one statement that also records
// that owner is alive until until and deletes the rows of workers dead for
// more than a day by then. The tasks are locked in ID order, as Update
// locks an execution's tasks, so that the two never deadlock.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if ids == nil {
		ids = []int64{}
	}
	s.owners.Store(owner, true)
	var held []int64
	err := s.exec(ctx, "extend leases", func() error {
		var err error
		held, err = queryLeases(ctx, s, scanID, sqlExtendLeases, ids, owner, until, until.Add(-deadFor))
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

// Release implements store.Store. In the same statement it notifies
// listeners (store.EventTask) of the executions whose tasks it released.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	return s.exec(ctx, "release", func() error {
		_, err := queryLeases(ctx, s, scanNothing, `WITH l AS (
				SELECT id FROM tasks WHERE id = ANY($1) AND owner = $2 ORDER BY id FOR UPDATE
			), r AS (
				UPDATE tasks t SET owner = '', lease_until = $3 FROM l WHERE t.id = l.id RETURNING t.exec
			)
			SELECT pg_notify($4, CASE WHEN octet_length(exec) <= $5 THEN 't:' || exec ELSE 'r' END)
			FROM (SELECT DISTINCT exec FROM r) e`,
			ids, owner, time.Time{}, s.channel, maxIDInPayload)
		return err
	})
}

// sqlNextReadyAt reads the earliest wake_at after $1, from its index.
const sqlNextReadyAt = `SELECT min(wake_at) FROM tasks WHERE wake_at > $1`

// NextReadyAt implements store.Store, from the index on the tasks' wake_at.
func (s *Store) NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	if err := s.check(ctx); err != nil {
		return time.Time{}, false, err
	}
	var next *time.Time
	err := s.pool.QueryRow(ctx, sqlNextReadyAt, now).Scan(&next)
	if err != nil {
		return time.Time{}, false, s.ctxErr(ctx, "next ready", err)
	}
	if next == nil {
		return time.Time{}, false, nil
	}
	return utc(*next), true, nil
}

const (
	sqlExecution = `SELECT ` + execCols + ` FROM executions WHERE id = $1`
	sqlSteps     = `SELECT ` + stepCols + ` FROM steps WHERE exec = $1 ORDER BY name COLLATE "C"`
	sqlJournal   = `SELECT ` + journalCols + ` FROM journal WHERE exec = $1 AND step = $2 ORDER BY seq`
	sqlTasks     = `SELECT ` + taskCols + ` FROM tasks WHERE exec = $1 ORDER BY id`
	// The reads of an execution, its steps and tasks with their versions
	// (see readVersioned).
	sqlExecutionVersion = `SELECT ` + execCols + `, signal_seq, watchers, xmin::text FROM executions WHERE id = $1`
	sqlTasksVersions    = `SELECT ` + taskCols + `, xmin::text FROM tasks WHERE exec = $1 ORDER BY id`
	sqlSignals          = `SELECT ` + signalCols + ` FROM signals WHERE exec = $1 ORDER BY seq`
)

// read runs a query on a pooled connection and scans every row.
func read[T any](ctx context.Context, s *Store, op string, scan pgx.RowToFunc[T], sql string, args ...any) ([]T, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	rows, _ := s.pool.Query(ctx, sql, args...)
	out, err := pgx.CollectRows(rows, scan)
	if err != nil {
		return nil, s.ctxErr(ctx, op, err)
	}
	return out, nil
}

// Execution implements store.Store. The read shares its round trip with
// other reads that arrive at the same time.
func (s *Store) Execution(ctx context.Context, id string) (*store.Execution, error) {
	var execs []store.Execution
	err := s.readBatched(ctx, &readRequest{op: "execution",
		queue: func(b *pgx.Batch, _ bool) { b.Queue(sqlExecution, id) },
		read: func(br pgx.BatchResults, _ bool) error {
			rows, _ := br.Query()
			var err error
			execs, err = pgx.CollectRows(rows, scanExec)
			return err
		}})
	if err != nil {
		return nil, err
	}
	if len(execs) == 0 {
		return nil, s.wrap("execution "+strconv.Quote(id), store.ErrNotFound)
	}
	return &execs[0], nil
}

// Steps implements store.Store.
func (s *Store) Steps(ctx context.Context, id string) ([]store.Step, error) {
	return read(ctx, s, "steps", scanStep, sqlSteps, id)
}

// Snapshot implements store.Store: the three reads go in one round trip,
// shared with other reads that arrive at the same time.
func (s *Store) Snapshot(ctx context.Context, id, step string) (*store.Snapshot, error) {
	var (
		snap store.Snapshot
		k    *known // read alone, with the tasks and the row versions
	)
	err := s.readBatched(ctx, &readRequest{op: "snapshot", consistent: true,
		queue: func(b *pgx.Batch, alone bool) {
			if alone {
				b.Queue(sqlExecutionVersion, id)
				b.Queue(sqlSteps, id)
				b.Queue(sqlTasksVersions, id)
			} else {
				b.Queue(sqlExecution, id)
				b.Queue(sqlSteps, id)
			}
			b.Queue(sqlJournal, id, step)
		},
		read: func(br pgx.BatchResults, alone bool) error {
			k = nil
			if alone {
				execs := map[string]*known{}
				if err := readVersioned(br, execs); err != nil {
					return err
				}
				if k = execs[id]; k != nil {
					snap.Execution, snap.Steps = copyExec(k.exec), cloneSteps(k.steps, 0)
				}
			} else {
				rows, _ := br.Query()
				execs, err := pgx.CollectRows(rows, scanExec)
				if err != nil {
					return err
				}
				if len(execs) > 0 {
					snap.Execution = &execs[0]
				}
				rows, _ = br.Query()
				if snap.Steps, err = pgx.CollectRows(rows, scanStep); err != nil {
					return err
				}
			}
			rows, _ := br.Query()
			var err error
			snap.Journal, err = pgx.CollectRows(rows, scanEntry)
			return err
		}})
	if err != nil {
		return nil, err
	}
	if snap.Execution == nil {
		return nil, s.wrap("execution "+strconv.Quote(id), store.ErrNotFound)
	}
	if k != nil && s.leasedHere(k.tasks) {
		// Read in one transaction with its versions: the worker's Update
		// that records the step can speculate on it (see known).
		s.known.put(id, k)
	}
	return &snap, nil
}

// Journal implements store.Store.
func (s *Store) Journal(ctx context.Context, id, step string) ([]store.JournalEntry, error) {
	return read(ctx, s, "journal", scanEntry, sqlJournal, id, step)
}

// Tasks implements store.Store.
func (s *Store) Tasks(ctx context.Context, id string) ([]store.Task, error) {
	return read(ctx, s, "tasks", scanTask, sqlTasks, id)
}

// Signals implements store.Store.
func (s *Store) Signals(ctx context.Context, id string) ([]store.Signal, error) {
	return read(ctx, s, "signals", scanSignal, sqlSignals, id)
}

// List implements store.Store. The cursor is the creation number (ord) of
// the last execution on the page.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Execution, string, error) {
	if err := s.check(ctx); err != nil {
		return nil, "", err
	}
	sql, args, limit, err := sqlstore.ListSQL(q, execCols, sqlstore.Dialect{
		Param: func(n int) string { return "$" + strconv.Itoa(n) },
		Time:  func(t time.Time) any { return t },
	})
	if err != nil {
		return nil, "", s.wrap("list", err)
	}
	rows, err := read(ctx, s, "list", func(r pgx.CollectableRow) (sqlstore.Listed, error) {
		var out sqlstore.Listed
		var err error
		out.Exec, err = scanExecAnd(r, &out.Ord)
		return out, err
	}, sql, args...)
	if err != nil {
		return nil, "", err
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
	err := s.pool.QueryRow(ctx, `SELECT value FROM cache WHERE key = $1 AND expires > $2`, key, now).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, s.ctxErr(ctx, "cache get", err)
	}
	return v, true, nil
}

// CacheSet implements store.Store. Expired entries stay in the table until
// they are set again.
func (s *Store) CacheSet(ctx context.Context, key string, value []byte, expires time.Time) error {
	return s.exec(ctx, "cache set", func() error {
		_, err := s.pool.Exec(ctx, `INSERT INTO cache (key, value, expires) VALUES ($1, $2, $3)
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires = excluded.expires`,
			key, value, expires)
		return err
	})
}
