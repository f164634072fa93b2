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
// # Caching
//
// A step registered with Cached(ttl) stores its result in the graph's Cache,
// keyed by graph, step and a hash of its encoded inputs, and later
// executions with equal inputs reuse it without running the step.
package docket
