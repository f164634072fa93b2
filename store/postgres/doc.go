// Package postgres is docket's PostgreSQL store, for executions shared by
// many processes on many machines. It talks to the server with
// github.com/jackc/pgx/v5 through a pgxpool connection pool. It needs
// PostgreSQL 13 or later (Open refuses an older server with
// ErrServerTooOld).
//
//	s, err := postgres.Open(ctx, "postgres://docket@db.internal/app?search_path=docket")
//
// # Schema and migrations
//
// All tables live in the first existing schema of the connection's
// search_path (public unless the URL says otherwise). Giving docket a schema
// of its own keeps its tables (executions, steps, journal, signals, tasks,
// workers, waiting, cache, schema_migrations) apart from an application's; tests give
// each test a throwaway schema (see package pgtest).
//
// The schema is made by numbered SQL files embedded in the binary
// (migrations/0001_init.sql, ...). Migrate applies the missing ones, each
// in a transaction of its own, and records them in schema_migrations. It
// holds a session-level advisory lock (pg_advisory_lock) of the schema
// while it works, so that processes starting at the same time do not race:
// one migrates, the others wait and then find nothing to do. A schema that
// is already current is only read. Open migrates unless given SkipMigrate;
// a schema newer than this build knows is refused with ErrSchemaTooNew.
//
// The tables of an execution's parts (steps, journal, signals, tasks) have
// no foreign keys to executions (migration 0003 drops the ones 0001 made):
// every write of them runs in an Update that holds the execution's lock and
// has checked that it exists, and executions are never deleted, so the
// keys only made each inserted row look up and share-lock its execution's
// row. The executions and steps tables leave a fifth of each page free, so
// that most of their updates stay on the page without touching indexes.
//
// # Locking: Update
//
// Update holds execution id for its whole transaction with a transaction
// advisory lock, pg_advisory_xact_lock, on a 64-bit FNV-1a hash of the
// schema name and the ID. The lock does not need a row, so it covers
// executions that do not exist yet (two processes creating the same ID
// queue up, and the second sees ErrExists; a Create that speculates takes
// no lock, see Speculative Updates); it is released by COMMIT or
// ROLLBACK, also when the connection dies. A hash collision only makes two
// executions wait for each other. Within the transaction, the execution's
// tasks are locked too (SELECT ... FOR UPDATE), so that no Claim,
// ExtendLeases or Release changes them between fn's reading a lease and
// acting on it.
//
// Because nothing else changes an execution while its lock is held, the
// execution record (with its signal counter, executions.signal_seq: the
// highest signal Seq it ever gave out, so that the Seqs of deleted signals
// are not given again), its tasks and its steps are read once, in the
// round trip that sends BEGIN and takes the lock, and the Tx answers from
// them, kept up to date with its own writes. Writes are queued and sent
// pipelined ahead of the next statement that needs an answer (a read of
// the journal or the inbox), or ahead of COMMIT. A typical Update costs two
// round trips, one more for each read of the journal or the inbox (pgx
// prepares and caches every statement per connection). AddTask needs no
// round trip for the task's ID: each process reserves task IDs from the
// identity sequence of the tasks table, 64 at a time (in the first round
// trip of an Update, when it is running short), and hands them out itself;
// the sequence gives every ID once, so IDs are unique across processes and
// never reused. PutSignal is queued when the Update has read the inbox
// (Signals), as the engine does before it consumes a signal; otherwise it
// costs a round trip, which tells whether the signal still exists. A write
// that the server refuses loses the transaction: later calls of the Tx
// return that error and Update returns it, even if fn ignored it. Values
// that the server would refuse — text with a NUL byte or invalid UTF-8 in
// a name or ID, a time outside PostgreSQL's range, a count beyond 32 bits —
// are refused before they are sent, with ErrBadValue, and fail only their
// own Update, even if fn ignored the error. If fn
// fails or panics, its writes are dropped (and the panic goes on in the
// caller); the connection goes back to the pool clean, or is closed.
//
// # Group commit
//
// When Updates arrive faster than they finish, they share transactions.
// At most a quarter of the pool's connections (at least one) run Updates at a
// time, each as the leader of a group; an Update that finds them all busy
// waits in a queue, and the next group takes up to MaxGroup (64 by
// default) waiting Updates of distinct executions. The group's first round
// trip takes all their advisory locks (in key order, so that two groups
// never wait for each other in a cycle) and reads all their records with
// one statement per table; the fns run one after the other on the
// leader's goroutine; the last round trip sends all their writes and one
// COMMIT. Before they are sent, writes of the common kinds — step upserts,
// task inserts, updates and deletes, execution updates — are merged into one
// statement per kind, their rows sent as arrays (which the store encodes
// itself, column by column, in PostgreSQL's binary format) and unnested, wherever
// moving them past the group's other writes changes nothing (never past a
// savepoint, nor past a delete of the same step or task). An execution
// update that only moves the execution's progress (its step counter and
// time, as every recorded step does) writes those two columns alone, so
// that inputs and earlier runs are not sent and written again at each
// step; such updates merge into a statement of their own. On a busy store this divides the round trips, the commits and
// their WAL flushes by the size of the groups, which is what limits
// throughput on small machines; when Updates come one at a time, each is
// a group of one and costs what it did alone.
//
// Each Update in a group still has its own outcome. A fn that fails or
// panics has its writes dropped before they are sent, or, if it had sent
// some already (a member that reads the journal or the inbox first sets a
// savepoint), rolled back to its savepoint; the others commit. Only a
// failure of the transaction itself — a lost connection, a statement the
// server refuses, a failed COMMIT — fails the Updates whose fns had run;
// those that had not run yet are queued again for the next group. An
// Update returns only once the COMMIT holding its writes has succeeded, so
// grouping weakens no guarantee. An Update's context counts while it waits
// in the queue; once its group has started, the group's transaction is
// cancelled only when every member's context has ended (or the store is
// closed).
//
// Stats tells how the grouping goes: how many Updates ran in how many
// groups, how long they waited for a leader and how long the groups ran.
// Leaders busy nearly all the time mean that each Update waits for the
// group ahead of it as well as for its own.
//
// # Speculative Updates
//
// A worker's next Update of an execution mostly finds what its own last
// one left: it records a step, then runs and records the successor it
// leased to itself. So an Update that commits (alone or in a group) keeps
// what it wrote, when a worker of this process holds one of the
// execution's tasks, with the row versions (xmin) of the execution, its
// tasks and its steps: those it read, and for the rows it wrote, its own
// transaction ID, read just before COMMIT — no read of the rows again. So
// does a Snapshot that goes alone (then read in one REPEATABLE READ
// transaction), and so does ClaimNext for the executions of the tasks it
// claims (see Claiming). (A group that set a savepoint keeps nothing: rows
// written after it carry a subtransaction's ID.) The next lone Update of that execution in this process
// runs fn on what was kept and sends everything in one round trip: BEGIN,
// the lock, a guard that computes the digest of the versions of the
// execution's row and its tasks (locking the tasks as the ordinary read
// does) and divides by zero unless it is the digest of the kept versions,
// the writes, COMMIT. Any change by anyone — another process's Update, a
// claim, an extended lease — gives a row a new version, and an Update that
// writes a step or adds a task without the execution's row (a heartbeat,
// say) writes the row's progress columns again as they are, so that its version changes
// too: a guard that passes proves fn saw exactly what is stored, steps
// included, without reading a version of every step; one that fails aborts the
// transaction before anything is committed (the server logs the division
// by zero) and the Update runs the ordinary way, calling fn again. An fn
// that needs a read of its own (the journal, the inbox) runs the ordinary
// way at once, before anything is sent. Create (store.Creator), which the
// engine uses to start executions, speculates that the execution does not
// exist yet, with neither lock nor guard when fn creates it: if it exists
// after all, the insert fails on the primary key (the server logs it) and
// the Create runs the ordinary way. A guard of a transaction that writes
// what it will keep also returns the transaction's ID, so that the row
// versions are known without a statement more. A lone Update that speculates costs one
// round trip instead of two; a step of a chain recorded this way costs one
// round trip and one commit. A group speculates when every member's
// execution is known: BEGIN, the locks, one guard that locks all the
// members' tasks in ID order and checks all their digests, the merged writes,
// the notifications, the digests to keep, COMMIT — one round trip for the
// group. One changed execution sends the whole group the ordinary way.
//
// Most speculative Updates need no guard at all. When the rows that fn
// writes over are exactly the rows it knew — the execution's row and each
// of its tasks, as recording a step and leasing its successor in the same
// task does — each of those writes checks, as it locks its row, that the
// row still has the version kept (xmin), and its statement divides by
// zero unless every row it was given matched: BEGIN, the locks, the
// writes, COMMIT. That proves what the guard proves, without reading and
// locking the tasks first: the row's version covers the steps and any task
// that others added (see above), and each task it knew is one it writes.
// (A Create that creates its execution counts, as its insert fails if the
// execution exists after all; one that found it absent and left it so has
// nothing to check, and its group gets the guard.)
// A write that finds a row changed or gone aborts the transaction before
// anything is committed, and the Updates run the ordinary way, as after a
// guard that fails. The executions' rows are written first, so that a
// changed one is found before another write can fail on what changed with
// it (a step that fn took for a new one, say). The writes lock the tasks by ascending ID, as
// ExtendLeases and Release do, so that none deadlocks with them (a merged
// write's rows are sent sorted, and whole writes are put in order); where
// no order does, the guard is sent instead. Stats.Checked counts these Updates. Groups of several
// gain most, since their merged writes check all the members' rows in the
// statements that write them.
//
// The store keeps at most 1,024 executions, and none whose values
// (inputs, result, step outputs, heartbeats) pass 64 KiB.
//
// # Shared reads
//
// Execution and Snapshot (what a worker reads before it runs a task that
// its claim did not load) go through the same kind of queue: reads that arrive while others
// are in flight are sent together, in one round trip on one connection,
// up to 64 at a time, by at most a quarter of the pool's connections (at
// least one). A batch of several is not a transaction: each statement
// sees what is committed when it runs, as it would alone. A read that the server
// refuses spoils the rest of its round trip, so then each read of the
// batch is sent again on its own, and only the bad one fails.
//
// # Claiming
//
// Claim is one statement: it selects the oldest claimable tasks of one
// queue (ReadyAt, then ID) — free ones from a partial index on (queue,
// ready_at, id) of free tasks, and leases run out from one on (queue,
// wake_at) of leased tasks, so that it never walks past tasks leased and
// running — with FOR UPDATE SKIP LOCKED, so that claimers in any number of processes take
// disjoint tasks without waiting for each other, leases them and counts the
// claim. It passes over the tasks of executions that an Update holds at
// that moment (the Update row-locks them), whatever their queue or pin;
// they are claimable again a moment later. A task pinned to a worker
// (tasks.worker) other than the claimer is passed over while that worker's
// row in the workers table says it is alive; the check is the last arm of
// an OR, so it is only evaluated for such tasks, and it reads the workers
// table without locking it.
//
// The workers table has one row per worker: ExtendLeases, with or without
// leases to extend, upserts the owner's alive_until in the same statement
// as it extends them, and deletes the rows of workers that had been dead
// for more than a day by then (skipping rows another ExtendLeases has
// locked rather than waiting for them). ExtendLeases and Release are single
// statements; they lock tasks in ID order, as Update does, so they never
// deadlock with it, and they are run again if the server aborts them for a
// deadlock or a serialization failure. Task IDs come from an identity
// column (reserved in blocks, see above) and are never reused. NextReadyAt
// reads an index on a generated column, wake_at, the time a task is next
// claimable (in any queue). ClaimNext (store.NextClaimer), which workers
// use, sends the claim and that read in one round trip, the read after the
// claim in the same transaction, so that an idle worker learns when to
// look again without a round trip of its own. The same round trip reads
// what the worker needs to run the claimed tasks — their executions, the
// executions' steps and tasks, the claimed steps' journals — by the IDs
// the claim statement leaves in two settings of its transaction
// (docket.claimed, docket.claimed_steps), one statement per table
// whatever the number of tasks claimed. Each execution read is kept (see
// Speculative Updates) with the row versions (xmin) read with it: its rows
// were read by several statements, so perhaps not at one moment, but a
// guard that finds their digest again finds the execution's row and tasks
// unchanged, and so its steps too. So a lone worker's step costs one round
// trip to claim and load, and one to record.
//
// Claim, ExtendLeases and Release commit asynchronously (synchronous_commit
// off for their transaction): a lease is not worth a wait for the disk.
// Losing one in a crash of the server only makes its task claimable
// again, which the fence of every Update that records a step's outcome
// already allows for; and those Updates commit synchronously, flushing the
// leases committed before them.
//
// # Notifications
//
// Store implements store.Notifier with LISTEN/NOTIFY on one channel per
// schema, "docket_events_" and the schema name (or a hash of it when that
// is too long for a channel name). An Update whose changes someone may
// wait for sends, in its transaction, one notification whose payload is
// the kinds of change and the execution ID: "x" when the execution's
// status, cancel request or run changed or its inbox was written
// (store.EventExec), "f" as well when its status became final
// (store.EventFinished, the only event that wakes callers of Result), "t"
// when a task was added or put without an owner and not parked until a
// signal (store.EventTask): "xt:ID", say, or "xf:ID". A finished
// execution's notification carries its outcome when it fits in the
// payload: "xfo:" and a JSON object with the ID, graph, status, error,
// result and end time, delivered as store.Event.Final, so that a caller of
// Result in another process has its answer without reading it back.
// Other Updates — a step completing and leasing its successor to the same
// worker, say — send nothing: PostgreSQL serializes the commits of
// notifying transactions, so notifications are kept to what listeners
// need.
//
// For the same reason an Update whose only news is that an execution was
// created or ended ("x", or "xf"/"xfo", with no signal, cancel request,
// new run or claimable task) notifies only if a store other than the one
// that commits it watches the execution. The stores that watch an
// execution are named in its row (executions.watchers): the one that
// created it, those that sent it a signal, and those that called Watch
// (store.Watcher), which the engine does before a Result or an Update
// waits for it; Watch costs a round trip only for an execution this store
// did not create or signal. Each store has a random name, given at Open.
// An Update reads the watchers with the rest of the execution's row (or
// keeps them, see Speculative Updates), and Watch takes the execution's
// lock, so an Update that ends an execution either sees a watch or ends
// before the watcher looks. When no other store watches, the committing
// store gives the events to its own listeners itself, once committed: a
// process that starts and runs its executions sends no notification. Release sends "t:ID" for each execution whose tasks it released. PostgreSQL delivers them at
// commit, to every listening connection of the database, in commit order.
//
// # Handing tasks off
//
// Every listening process hears every notification, so a new task used to
// wake every idle worker, and all but one of them claimed nothing (on two
// cores, about 1 ms of CPU per idle worker and execution). Now a claim by
// ClaimNext that leaves some of its slots free, in a process whose Listen
// is connected, also notes its worker in the waiting table for two
// seconds (server time; an idle worker claims again at every poll, which
// renews the note), and a claim that fills its slots removes the note, in
// the same statement. A transaction that makes exactly one task claimable
// — ready now, pinned to no worker — names one waiting worker of the
// task's queue in its notification, chosen by a hash of the worker's and
// the execution's IDs so that executions spread over the waiting workers:
// "t@N/WORKER:ID", where N is the length of the worker's ID in bytes
// (store.Event.Worker). The engine's other workers do not claim for that
// notification. The name is a hint, not a lease: the task stays claimable
// by anyone, and when the named worker cannot take it (it filled its
// slots meanwhile: it claims when a slot frees; or it died within the
// note's two seconds), the other workers' polls claim it. A ClaimNext
// with no slot free (limit 0), which the engine's worker sends when it
// stops, removes its note, and Close removes the notes of the workers
// that claimed through the store. Several tasks at once, a pinned task, one
// ready later, and groups of several Updates notify everyone as before.
//
// Each Listen opens a connection of its own, outside the pool, LISTENs and
// calls fn from one goroutine per notification. After 30 seconds without a
// notification it pings the server, so that a dead peer is noticed. When
// the connection is lost it reconnects with exponential backoff (100ms up
// to 10s) and then calls fn with store.EventReset, since notifications sent
// meanwhile are lost. The goroutine ends with Listen's context or Close.
//
// # Connections
//
// The pool holds pgxpool's default number of connections (four or the
// number of CPUs, whichever is more) unless the URL sets pool_max_conns or
// Open is given MaxConns. A quarter of them (at least one) lead groups of
// Updates, as many lead batches of reads, and the rest serve claims, lease
// renewals and the other reads, so that these never wait behind a group.
// Every call holds one pooled connection while it runs; a group of Updates
// holds one for all of its fns, including while it waits for the
// executions' locks, so fn must not call the Store itself (fns run on the
// group leader's goroutine and must not wait for anything another Update's
// caller holds). Keep the sum of the pools over all processes, plus one
// connection per Listen, below the server's max_connections. Fewer
// connections make larger groups: on a small server (two cores) a pool of
// two per process gave the most executions per second. A call whose
// context ends while the server works closes its connection (pgx sends
// the server a cancel request) and the pool opens another. Listen and
// Migrate need session-level connections: behind PgBouncer, point them at
// a session pool or at the server itself.
//
// Server settings in the URL apply to every connection; lock_timeout
// bounds how long an Update waits for an execution that another process
// holds. Unless the URL sets plan_cache_mode (as a parameter or in
// options), the pool's connections use force_generic_plan: docket's
// statements are prepared once per connection and look rows up by key
// (the transactions that write, and the claims, turn sequential scans and
// hash and merge joins off, so that a plan made while a table was small
// still uses its indexes once it is large), so planning each execution of
// a statement anew for its parameters only cost time — a tenth of the
// server's CPU under load.
//
// # Errors
//
// Driver errors are wrapped so that errors.Is finds the error of package
// store that they stand for, while the message keeps the server, the
// operation and the driver's detail (and errors.As still finds the
// *pgconn.PgError):
//
//   - 25006 read_only_sql_transaction (default_transaction_read_only, a hot
//     standby): store.ErrReadOnly
//   - 53100 disk_full: store.ErrFull
//   - XX001 data_corrupted, XX002 index_corrupted: store.ErrCorrupt
//   - 55P03 lock_not_available (lock_timeout), 40001
//     serialization_failure, 40P01 deadlock_detected: store.ErrBusy
//   - 23505 unique_violation on executions: store.ErrExists
//   - any call after Close: store.ErrClosed
//   - a value refused before it is sent: ErrBadValue, which matches
//     store.ErrInvalid
//
// # Values
//
// Times are timestamptz: microseconds, read back in UTC, with the zero
// time.Time stored as 0001-01-01 00:00:00+00 so that SQL compares them as
// Go does. Free text that a text column cannot hold (NUL bytes, invalid
// UTF-8) in error messages and wait descriptions is stored with U+FFFD in
// its place; in names and IDs it is refused.
package postgres
