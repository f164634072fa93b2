// Package store defines where durable executions live. A Store keeps
// executions, their steps, the journals of durable calls made inside steps,
// and the tasks that workers claim. The engine in package docket holds all
// the logic; a Store only persists records and guarantees that each Update
// is one atomic transaction that sees and changes one execution.
//
// Backends: store/memory (tests), store/sqlite (the embedded default). Every
// backend must pass the conformance suite in store/storetest unchanged.
//
// Nothing in this interface spans two executions in one transaction, so
// executions can later be spread over several databases by ID.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when an execution, step or task does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrBadCursor is returned by List for a cursor it did not make.
var ErrBadCursor = errors.New("store: invalid list cursor")

// ErrClosed is returned by a store after Close.
var ErrClosed = errors.New("store: closed")

// Storage failures that callers can act on. Backends wrap their driver's
// error so that errors.Is matches one of these and the message keeps the
// driver's detail.
var (
	// ErrBusy: the database stayed locked by another writer past the busy timeout.
	ErrBusy = errors.New("store: database is locked by another writer")
	// ErrReadOnly: the database (file, directory or server) refuses writes.
	ErrReadOnly = errors.New("store: database is read-only")
	// ErrFull: the disk or the database is full.
	ErrFull = errors.New("store: disk or database is full")
	// ErrCorrupt: the database file is damaged or not a database.
	ErrCorrupt = errors.New("store: database is corrupt or not a database")
	// ErrInvalid: a value that the backend cannot store (a NUL byte in a
	// name, say); writing it again fails again.
	ErrInvalid = errors.New("store: value cannot be stored")
)

// ErrExists is returned by Tx.CreateExecution when the ID is taken.
var ErrExists = errors.New("store: execution already exists")

// Status is the state of an execution.
type Status string

// Execution states. Running covers everything before the end: steps may be
// running, waiting on timers or compensating.
const (
	Running   Status = "running"
	Completed Status = "completed"
	Failed    Status = "failed"
	Cancelled Status = "cancelled"
)

// Finished reports whether s is a final state.
func (s Status) Finished() bool { return s == Completed || s == Failed || s == Cancelled }

// Value is an encoded value with the name of its Go type.
type Value struct {
	Type string `json:"type"`
	Data []byte `json:"data"`
}

// Execution is one durable execution of a graph.
type Execution struct {
	ID     string
	Run    int // 1 for the first run
	Graph  string
	Target string // the type name of the result
	Codec  string
	Inputs []Value
	Status Status
	Result *Value
	Error  string
	// CancelRequested is set by Cancel; the engine finishes the cancellation.
	CancelRequested bool
	// Deadline, when set, is when the execution times out.
	Deadline   time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt time.Time
	// Seq counts completed steps, ordering them for compensation.
	Seq int64
	// Parent and ParentStep name the execution and step that started this
	// one as a child, if any.
	Parent     string
	ParentStep string
	// Runs lists the execution's earlier runs (those that continued as
	// new), oldest first; the engine keeps the last few.
	Runs []RunRecord
}

// RunRecord is one earlier run of an execution.
type RunRecord struct {
	Run       int       `json:"run"`
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`
	Steps     int       `json:"steps"` // step records the run left
}

// StepStatus is the state of one step of an execution.
type StepStatus string

// Step states.
const (
	StepReady     StepStatus = "ready"     // a task is queued for it
	StepRunning   StepStatus = "running"   // an attempt is in progress
	StepSuspended StepStatus = "suspended" // waiting durably (timer, retry backoff); see Wait
	StepDone      StepStatus = "done"
	StepFailed    StepStatus = "failed"
	StepCancelled StepStatus = "cancelled"
)

// CompStatus is the state of a step's compensation.
type CompStatus string

// Compensation states; empty means no compensation is due.
const (
	CompPending CompStatus = "pending"
	CompDone    CompStatus = "compensated"
	CompFailed  CompStatus = "failed"
)

// Step is one step of an execution. Steps get a record when they first
// become ready, except a step that the engine leases to the worker making
// it ready, which runs it at once: that step's task stands for its ready
// record until the step records something (its outcome, a suspension, a
// heartbeat), or until the execution ends.
type Step struct {
	Exec      string
	Name      string
	Status    StepStatus
	Attempt   int // attempts started so far
	Output    *Value
	Error     string
	Wait      string    // what a suspended step waits on, for people
	WakeAt    time.Time // when a suspended step's timer fires
	Signal    string    // the signals a suspended step waits for, if any (newline-separated)
	Heartbeat []byte    // the last heartbeat details
	Worker    string    // the worker that ran the last attempt
	// Seq is the execution's step-completion counter when this step completed.
	Seq         int64
	ReadyAt     time.Time
	StartedAt   time.Time // of the first attempt
	FinishedAt  time.Time
	Comp        CompStatus
	CompAttempt int
	CompError   string
}

// Clone returns a copy of s that shares no memory with it.
func (s Step) Clone() Step {
	if s.Output != nil {
		s.Output = &Value{Type: s.Output.Type, Data: cloneBytes(s.Output.Data)}
	}
	s.Heartbeat = cloneBytes(s.Heartbeat)
	return s
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

// Signal is a message sent to an execution. An execution's signals form
// its inbox, in arrival order.
type Signal struct {
	Exec       string
	Seq        int64 // arrival order within the execution, from 1
	Name       string
	Payload    Value
	SentAt     time.Time
	ConsumedBy string // the step that received it, or "" while it waits
}

// TaskKind says what a task runs.
type TaskKind string

// Task kinds.
const (
	TaskStep       TaskKind = "step"       // run (or resume) a step
	TaskCompensate TaskKind = "compensate" // run the next compensation of a failed execution
)

// Task is a unit of work that a worker claims under a lease.
type Task struct {
	ID         int64
	Exec       string
	Step       string
	Kind       TaskKind
	ReadyAt    time.Time
	Owner      string    // the worker holding the lease, or ""
	LeaseUntil time.Time // when the lease expires
	// Attempt is the engine's attempt number for the work the task runs.
	Attempt int
	// Claims counts the times Claim leased this task since it was last
	// added or put; the engine reads claims beyond the first as attempts
	// that died without recording anything.
	Claims int
	// Queue is the task queue it is claimed from ("" is the default queue).
	Queue string
	// Worker, when set, pins the task to one worker: only that worker
	// claims it while it is alive (see Store.ExtendLeases); once it is not,
	// any worker of the queue may.
	Worker string
}

// JournalEntry records one durable call made inside a step, by position.
type JournalEntry struct {
	Exec  string
	Step  string
	Seq   int    // position of the call within the step, from 0
	Kind  string // "run", "sleep", "now", "random", ...
	Name  string
	Data  []byte // the call's result
	Error string // the call's error, when it failed
	Done  bool   // false while a sleep is pending
	// WakeAt is when a pending sleep ends.
	WakeAt time.Time
}

// Snapshot is what Store.Snapshot reads.
type Snapshot struct {
	Execution *Execution
	Steps     []Step         // by name
	Journal   []JournalEntry // of the step asked for, in call order
}

// ListQuery filters and pages List.
type ListQuery struct {
	Graph         string
	Status        Status
	CreatedAfter  time.Time
	CreatedBefore time.Time
	// Limit caps the page size (default 100).
	Limit int
	// Cursor continues a previous page; "" starts at the newest.
	Cursor string
}

// Store persists durable executions. Implementations must be safe for
// concurrent use by many goroutines (and, for shared databases, processes).
type Store interface {
	// Update runs fn in one transaction that holds execution id exclusively:
	// no other Update of that execution runs at the same time. If fn returns
	// an error, nothing it wrote is kept. A store may call fn more than once
	// (a first call against what it expects to find, say): only the writes
	// of the call whose outcome Update returns are kept, so fn must keep
	// what it reads to itself until Update returns.
	Update(ctx context.Context, id string, fn func(Tx) error) error

	// Claim leases up to limit tasks of queue whose ReadyAt is not after
	// now, whose lease is free or expired, and that are not pinned to
	// another worker that is alive at now, to owner until now+lease, and
	// counts the claim in each task's Claims.
	Claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) ([]Task, error)
	// ExtendLeases moves the leases that owner still holds to until and
	// returns the IDs of those it no longer holds. It also records that
	// owner is alive until then (ids may be empty for just that).
	ExtendLeases(ctx context.Context, owner string, ids []int64, until time.Time) (lost []int64, err error)
	// Release gives up owner's leases on ids so other workers may claim them at once.
	Release(ctx context.Context, owner string, ids []int64) error
	// NextReadyAt returns the earliest ReadyAt of unleased tasks (or the
	// earliest lease expiry) after now, so an idle worker knows when to look again.
	NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error)

	// Execution returns one execution, or ErrNotFound.
	Execution(ctx context.Context, id string) (*Execution, error)
	// Steps returns an execution's step records.
	Steps(ctx context.Context, id string) ([]Step, error)
	// Journal returns a step's journal in call order.
	Journal(ctx context.Context, id, step string) ([]JournalEntry, error)
	// Snapshot returns an execution, its step records and the journal of
	// one of its steps — what a worker reads before it runs a step — or
	// ErrNotFound when the execution does not exist. Shared stores read
	// them in one round trip; they need not be one consistent snapshot.
	Snapshot(ctx context.Context, id, step string) (*Snapshot, error)
	// Tasks returns an execution's tasks, by ID.
	Tasks(ctx context.Context, id string) ([]Task, error)
	// Signals returns an execution's inbox in arrival order.
	Signals(ctx context.Context, id string) ([]Signal, error)
	// List returns executions newest first and the cursor of the next page ("" at the end).
	List(ctx context.Context, q ListQuery) ([]Execution, string, error)

	// CacheGet and CacheSet back the result cache of Cached steps.
	CacheGet(ctx context.Context, key string, now time.Time) ([]byte, bool, error)
	CacheSet(ctx context.Context, key string, value []byte, expires time.Time) error

	Close() error
}

// Tx is the view of one execution inside Store.Update.
type Tx interface {
	// Execution returns the execution, or ErrNotFound.
	Execution() (*Execution, error)
	// CreateExecution inserts a new execution, or returns ErrExists.
	CreateExecution(e *Execution) error
	// PutExecution updates the execution.
	PutExecution(e *Execution) error

	// Steps returns the execution's step records.
	Steps() ([]Step, error)
	// PutStep inserts or replaces a step record.
	PutStep(s *Step) error
	// DeleteStep removes a step record and its journal; a missing step is
	// not an error.
	DeleteStep(name string) error

	// Journal returns a step's journal in call order.
	Journal(step string) ([]JournalEntry, error)
	// PutJournal inserts or replaces the entry at e.Seq.
	PutJournal(e *JournalEntry) error
	// TruncateJournal deletes a step's entries from position seq on.
	TruncateJournal(step string, seq int) error

	// Signals returns the inbox in arrival order.
	Signals() ([]Signal, error)
	// AddSignal appends a signal to the inbox and sets its Seq.
	AddSignal(s *Signal) error
	// PutSignal updates a signal (to record who consumed it).
	PutSignal(s *Signal) error
	// DeleteSignal removes the signal with that Seq; a missing one is not
	// an error. Seqs are never reused: later signals get higher ones.
	DeleteSignal(seq int64) error

	// Tasks returns the execution's tasks.
	Tasks() ([]Task, error)
	// AddTask inserts a task (already leased when Owner is set) and sets its ID.
	AddTask(t *Task) error
	// PutTask updates a task.
	PutTask(t *Task) error
	// DeleteTask removes a task; deleting a missing task is not an error.
	DeleteTask(id int64) error
}

// Creator is implemented by stores that can run the Update that creates
// an execution in fewer round trips when the execution most likely does
// not exist yet. Create behaves exactly as Update; only its cost differs.
type Creator interface {
	Create(ctx context.Context, id string, fn func(Tx) error) error
}

// NextClaimer is implemented by stores that can claim tasks, read what the
// worker needs to run them and tell when the next task will be ready, all
// in one round trip. ClaimNext behaves as Claim followed at once by
// Snapshot(task.Exec, task.Step) for each claimed task and by
// NextReadyAt(now): the claimed tasks count with their new leases.
type NextClaimer interface {
	ClaimNext(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) (Claimed, error)
}

// Claimed is what ClaimNext returns.
type Claimed struct {
	Tasks []Task // as Claim returns them
	// Snapshots holds, by task ID, each claimed task's execution as
	// Snapshot would read it for the task's step: read after the claim,
	// though not necessarily all at one moment (an Update checks what it
	// relies on). A task whose execution is gone has none.
	Snapshots map[int64]*Snapshot
	// Next is NextReadyAt's answer after the claim, when HasNext is set.
	Next    time.Time
	HasNext bool
}

// EventKind says what changed in a store Event.
type EventKind string

// Event kinds.
const (
	// EventTask: a task of execution Exec may have become claimable (added,
	// put back without an owner, or released; not one parked at the far
	// future until a signal wakes it).
	EventTask EventKind = "task"
	// EventExec: something callers wait on changed in execution Exec: its
	// status, cancel request or run number, or its inbox (a signal added,
	// or consumed and answered). Completed steps alone send no event, so
	// that busy executions do not flood the channel.
	EventExec EventKind = "exec"
	// EventFinished: execution Exec finished (its status became final).
	// It comes with EventExec, and only it wakes callers waiting for the
	// result, so that they do not read the execution at every other
	// change.
	EventFinished EventKind = "finished"
	// EventReset: events may have been missed (the connection that carries
	// them was lost and re-established); listeners should look at
	// everything they wait for again.
	EventReset EventKind = "reset"
)

// Event is a change committed by some process to a shared store.
type Event struct {
	Kind EventKind
	Exec string
	// Worker is, for EventTask, the worker that the store handed the task
	// to: that worker claims it and others need not ("" when the store
	// named none, as when no worker was known to be waiting).
	Worker string
	// Final is, for EventFinished, the execution as it finished (its ID,
	// Graph, Status, Result, Error and FinishedAt) when the store could
	// send it with the event, so that callers waiting for the result need
	// not read it; nil otherwise.
	Final *Execution
}

// Notifier is implemented by stores that are shared between processes and
// can tell every process about committed changes, so that idle workers and
// callers waiting for results need not poll. Events are hints: they may be
// coalesced, and after a lost connection the store sends EventReset.
// Polling remains the engine's fallback.
type Notifier interface {
	// Listen calls fn for every event until ctx ends or the store is
	// closed, perhaps from several goroutines at once. It returns once the
	// listener is in place (changes committed after Listen returns are
	// reported).
	Listen(ctx context.Context, fn func(Event)) error
}

// Watcher is implemented by Notifiers that tell other processes of an
// execution's creation and end (EventExec and EventFinished with no other
// change) only if they watch it: the process that created it, those that
// sent it a signal, and those that called Watch. Every listener of the
// process that commits such a change hears of it, and every process hears
// of signals, cancel requests, new runs and claimable tasks, as before.
type Watcher interface {
	// Watch makes this process hear of execution id's end, whichever
	// process ends it. It returns nil for an execution that does not exist
	// or has ended already.
	Watch(ctx context.Context, id string) error
}

// ReadSnapshot implements Store.Snapshot with three reads of st, for
// stores where a read costs no round trip.
func ReadSnapshot(ctx context.Context, st Store, id, step string) (*Snapshot, error) {
	x, err := st.Execution(ctx, id)
	if err != nil {
		return nil, err
	}
	steps, err := st.Steps(ctx, id)
	if err != nil {
		return nil, err
	}
	journal, err := st.Journal(ctx, id, step)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Execution: x, Steps: steps, Journal: journal}, nil
}
