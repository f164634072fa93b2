// Package docket runs typed execution graphs: steps are plain Go functions,
// and the graph is drawn by their types.
//
// # Steps and graphs
//
// A step is a function of the form
//
//	func(ctx context.Context, a A, b B, ...) (Out, error)
//
// Its parameter types are what it needs and its result type is what it
// makes. Registering steps in a Graph is all the wiring there is: a step
// that takes *Charge runs after the step that returns *Charge, and steps
// that do not depend on each other run at the same time.
//
//	g := docket.NewGraph("checkout", docket.Input[*Order]())
//	docket.Register1(g, Charge)  // func(ctx, *Order) (*Charge, error)
//	docket.Register1(g, Reserve) // func(ctx, *Order) (*Reservation, error)
//	docket.Register2(g, Ship)    // func(ctx, *Charge, *Reservation) (*Shipment, error)
//
// Every type is a node, so use named types to keep apart values that share a
// Go type (type UserID string, not string). Each type has exactly one
// producing step, except in a race group (see Race). Types that the caller
// provides are declared with Input.
//
// Register accepts any function and calls it through reflection; the typed
// forms Register0 to Register5 have the compiler check the signature and
// call the function directly, which is what the executor's speed figures
// assume (see BENCHMARKS.md in the repository).
//
// Graph.Validate checks the whole graph and reports every problem as a typed
// error that names the step and the type: unsupported signatures, duplicate
// names, missing or duplicate producers, cycles. PlanFor shows which steps a
// request would run, stage by stage, without running them; Graph.Mermaid
// and Graph.DOT draw the graph.
//
// # Running a graph
//
// Execute runs the steps needed to produce one result type, in this process:
//
//	s, err := docket.Execute[*Shipment](ctx, g, &Order{ID: "o-1"})
//
// Only the steps the result needs run, each at most once per execution (plus
// retries). Values pass between steps as Go values; nothing is serialized.
// A lone ready step runs on the current goroutine, so a chain of steps costs
// no goroutine hand-offs; several ready steps each get a goroutine.
//
// A value given to Execute whose type a step produces replaces that step, so
// a caller that already holds a *Charge skips Charge.
//
// ExecuteBatch runs one execution per item of a slice with a concurrency
// limit. Map registers a fan-out step that calls a function on every element
// of a slice; a step that takes the resulting slice is the fan-in.
//
// # Failure
//
// A step that returns an error is retried according to its RetryPolicy
// (Retry on the step, or on NewGraph as the default). When it fails for good
// the execution stops: the contexts of running steps are cancelled, no other
// step starts, and Execute returns a *StepError naming the step, the number
// of attempts and the last error, once every started step has returned.
// NonRetryable ends a step's retries at once; Abort also stops the whole
// execution, or the whole batch. A panicking step fails with a *PanicError
// that carries the panic value and stack. Timeout bounds each attempt;
// ExecutionTimeout bounds a whole execution.
//
// # Observing
//
// Logger(ctx) gives a step a *slog.Logger that carries the graph, execution,
// step and attempt. An Observer set with WithObserver is told about
// executions, attempts, retries and cache lookups.
//
// # Durable executions
//
// The same graphs run durably on an Engine, which records every execution in
// a store — an embedded SQLite file by default — so it survives crashes and
// restarts:
//
//	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:docket.db", Graphs: []*docket.Graph{g}})
//	h, err := docket.Start[*Shipment](ctx, eng, g, "order-1", &Order{ID: "o-1"})
//	s, err := h.Result(ctx)
//
// The execution ID is chosen by the caller and is an idempotency key:
// starting it again returns the same execution. Durable steps must be named
// (Name) when they are anonymous functions, because stored history refers to
// steps by name; a process restarted with the same graphs continues the
// executions its predecessor left.
//
// Ready steps become tasks in the store. The engine's worker claims tasks
// under a lease that it extends while they run, runs them, and records each
// step's output together with the tasks of the steps that output makes
// ready, in one transaction; it runs one of those next on the same goroutine,
// without polling. If a worker dies, its leases expire and another worker
// (in this or any process sharing the store) takes the tasks over. A
// completed step's output is never recomputed. A step that was running when
// its worker died runs again: steps are at-least-once, and exactly-once only
// in their recorded effect. An attempt that dies with its worker counts
// toward the step's RetryPolicy.MaxAttempts; a step without one ends after
// ten claims in a row are lost that way, so a step that kills every worker
// running it cannot go on forever, while a long-lived step that records
// progress between crashes is never ended by them.
//
// Retries wait on durable timers, so a step in backoff holds nothing but its
// rows. Timeout bounds an attempt, StepTimeout a step across attempts,
// ExecutionTimeout a whole execution, and HeartbeatTimeout the silence
// between Heartbeat calls; the last heartbeat details reach the next attempt
// through HeartbeatDetails.
//
// Describe shows an execution's status, result or error and each step's
// attempts, timings, output and what it waits on; List pages through
// executions; Cancel stops one, and the compensations (Compensate) of its
// completed steps then run, newest first, durably.
//
// # Durable calls inside steps
//
// A step may make durable calls: Run (a journaled side effect), Sleep and
// SleepUntil, Now, Random and UUID. They are journaled in order. When a step
// resumes — after a sleep, a retry or a crash — it re-executes from the top
// and each durable call it already made returns the recorded result at once.
// Only the code between durable calls has to be deterministic: keep side
// effects inside Run. A step whose calls no longer match its journal fails
// with a *NonDeterminismError naming the call and its position.
//
// Signals reach a running execution through its durable inbox: Engine.Signal
// appends one, and a step takes the next signal of a name with Receive (or
// ReceiveTimeout), suspending until it arrives. SignalInput declares a graph
// type that arrives by signal, so the steps that take it wait for it.
//
// Update sends a request that a step's HandleUpdate handler applies at the
// step's next wait point, and returns the handler's answer.
//
// Query reads an execution without changing it: built-in queries answer
// from the records, and a step's own HandleQuery handlers are answered by
// replaying the step from its journal, without side effects, up to where it
// waits.
//
// A step that returns ContinueAsNew ends its execution's current run and
// starts the next one with new inputs and an empty history, so executions
// that live for ever keep bounded history.
//
// A step calls another graph with Call. Durably, the child is an execution
// of its own, with an ID derived from the parent's; the calling step
// suspends until the child ends, and a parent that fails or is cancelled
// cancels the children it waits for (unless Abandon).
//
// A step can also start things without waiting for them: Go (journaled
// work beside the step), NewTimer (a durable timer) and CallAsync (a child)
// return a Future. A Selector waits for whichever comes first of futures
// and signals; its choices are journaled, and a step waiting only on
// signals, timers and children is suspended. AwaitFirst races futures and
// cancels the losers.
//
// Steps can be routed to task queues (Queue) that only some workers serve
// (Config.Queues), and steps of one execution that share an Affinity key
// run on one worker, their session, which is run again from its first step
// elsewhere if that worker dies. On PostgreSQL ("postgres://..." as
// Config.Store) any number of worker processes share the work, woken by
// LISTEN/NOTIFY.
//
// A sleeping step is suspended: its goroutine ends (runtime.Goexit, which a
// recover in user code cannot catch) and nothing of it stays in memory; a
// timer task resumes it on whichever worker is alive. Package docktest runs
// an engine on a virtual clock, so tests of month-long sleeps take
// milliseconds.
//
// # Caching
//
// A step registered with Cached(ttl) stores its result in the graph's Cache,
// keyed by graph, step and a hash of its encoded inputs, and later
// executions with equal inputs reuse it without running the step. Durable
// executions cache in the store.
//
// # Values
//
// Durable executions store inputs, outputs and journal values through a
// codec.Codec: codec.Default writes protocol buffer messages in their wire
// format and everything else as JSON.
package docket
