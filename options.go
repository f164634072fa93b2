package docket

import (
	"log/slog"
	"reflect"
	"time"

	"github.com/docket-run/docket/codec"
)

// StepOption configures one step at registration.
type StepOption interface{ applyStep(*stepConfig) }

// GraphOption configures a graph in NewGraph.
type GraphOption interface{ applyGraph(*graphConfig) }

// ExecuteOption configures one call of Execute or ExecuteBatch.
type ExecuteOption interface{ applyExecute(*execConfig) }

// PolicyOption is an option that works on a step (for that step), on a
// graph (as the default of every step that does not set its own) and on a
// Run call inside a step.
type PolicyOption interface {
	StepOption
	GraphOption
	RunOption
}

// LimitOption is a concurrency limit: on a Map step it bounds the items in
// flight; on ExecuteBatch it bounds the executions in flight.
type LimitOption interface {
	StepOption
	ExecuteOption
}

type stepConfig struct {
	name             string
	retry            *RetryPolicy
	timeout          time.Duration
	race             bool
	cacheTTL         time.Duration
	concurrency      int
	heartbeatTimeout time.Duration
	compensate       *compensation
	stepTimeout      time.Duration
	queue            string
	affinity         string
}

type graphConfig struct {
	inputs   []reflect.Type
	retry    *RetryPolicy
	timeout  time.Duration
	observer Observer
	logger   *slog.Logger
	cache    Cache
	codec    codec.Codec
}

type execConfig struct {
	id          string
	timeout     time.Duration
	concurrency int
	shared      []any
	conflict    ConflictPolicy
}

type stepFunc func(*stepConfig)

func (f stepFunc) applyStep(c *stepConfig) { f(c) }

type graphFunc func(*graphConfig)

func (f graphFunc) applyGraph(c *graphConfig) { f(c) }

type execFunc func(*execConfig)

func (f execFunc) applyExecute(c *execConfig) { f(c) }

// Name sets a step's name. By default a step is named after its function
// ("Charge", or "Billing.Charge" for a method value). Names identify steps in
// errors, logs, plans and, in durable mode, in stored history, so give every
// anonymous function a name.
func Name(name string) StepOption {
	return stepFunc(func(c *stepConfig) { c.name = name })
}

// Queue routes a durable step to the named task queue: only workers that
// serve the queue (Config.Queues) run it, each with its own concurrency
// limit there — GPU steps on GPU machines, say. Steps without Queue go to
// the default queue "", which workers serve with Config.Workers. (In
// ephemeral Execute it has no effect.)
func Queue(name string) StepOption {
	return stepFunc(func(c *stepConfig) { c.queue = name })
}

// Affinity makes the steps of one execution that share key a session: they
// all run on the same worker, the first to claim one of them — download,
// process and upload of one file on one host, say. If that worker dies
// (stops renewing its leases) while the session is unfinished, the session
// is recovered by running its steps again from the first, on another
// worker: the outputs of its completed steps are discarded, so they must
// be safe to redo. Steps outside the session keep their results. (In
// ephemeral Execute it has no effect.)
func Affinity(key string) StepOption {
	return stepFunc(func(c *stepConfig) { c.affinity = key })
}

// Race puts a step in the race group of the type it produces: every
// producer of that type must be registered with Race. All of them start, the
// first to succeed provides the value, and the others' contexts are
// cancelled. If all fail, the execution fails with a *RaceError holding
// every producer's *StepError. Like every step, a losing producer is waited
// for before Execute returns, so racers must return promptly when their
// context is cancelled.
func Race() StepOption {
	return stepFunc(func(c *stepConfig) { c.race = true })
}

// Cached turns on result caching for a step: its output is stored in the
// graph's Cache under the step's name and a hash of its encoded inputs, and
// reused for ttl by any execution that calls the step with equal inputs. A
// cache hit does not run the step. Inputs and output must be encodable by the
// graph's codec (JSON by default).
func Cached(ttl time.Duration) StepOption {
	return stepFunc(func(c *stepConfig) { c.cacheTTL = ttl })
}

// HeartbeatTimeout fails an attempt of the step that goes longer than d
// without calling Heartbeat. Use it for long steps, so a hung attempt is
// noticed long before its Timeout.
func HeartbeatTimeout(d time.Duration) StepOption {
	return stepFunc(func(c *stepConfig) { c.heartbeatTimeout = d })
}

// StepTimeout bounds a durable step across all its attempts and backoffs,
// counted from when it first became ready: once it has passed, a failed
// attempt is not retried.
func StepTimeout(d time.Duration) StepOption {
	return stepFunc(func(c *stepConfig) { c.stepTimeout = d })
}

type policyOption struct {
	step  func(*stepConfig)
	graph func(*graphConfig)
	run   func(*runConfig)
}

func (o policyOption) applyStep(c *stepConfig)   { o.step(c) }
func (o policyOption) applyGraph(c *graphConfig) { o.graph(c) }
func (o policyOption) applyRun(c *runConfig)     { o.run(c) }

// Retry sets the retry policy of a step, or, on NewGraph, the default policy.
func Retry(p RetryPolicy) PolicyOption {
	return policyOption{
		step:  func(c *stepConfig) { c.retry = &p },
		graph: func(c *graphConfig) { c.retry = &p },
		run:   func(c *runConfig) { c.retry = &p },
	}
}

// Timeout bounds each attempt of a step (a retry gets a fresh timeout), or,
// on NewGraph, sets the default for every step. Zero means no limit. The
// step's context is cancelled when the time is up; a step that ignores its
// context cannot be stopped, and the execution waits for it.
func Timeout(d time.Duration) PolicyOption {
	return policyOption{
		step:  func(c *stepConfig) { c.timeout = d },
		graph: func(c *graphConfig) { c.timeout = d },
		run:   func(c *runConfig) { c.timeout = d },
	}
}

type limitOption int

func (n limitOption) applyStep(c *stepConfig)    { c.concurrency = int(n) }
func (n limitOption) applyExecute(c *execConfig) { c.concurrency = int(n) }

// Concurrency limits how many items of a Map step, or executions of an
// ExecuteBatch, run at once. Zero or less means no limit. Other steps run one
// call at a time, so on them it has no effect.
func Concurrency(n int) LimitOption { return limitOption(n) }

// Input declares a type that executions of the graph provide as input rather
// than a step producing it.
func Input[T any]() GraphOption {
	t := reflect.TypeFor[T]()
	return graphFunc(func(c *graphConfig) { c.inputs = append(c.inputs, t) })
}

// WithObserver sets the observer that is told about executions, attempts,
// retries and cache lookups.
func WithObserver(o Observer) GraphOption {
	return graphFunc(func(c *graphConfig) { c.observer = o })
}

// WithLogger sets the logger that Logger(ctx) builds on (slog.Default() when unset).
func WithLogger(l *slog.Logger) GraphOption {
	return graphFunc(func(c *graphConfig) { c.logger = l })
}

// WithCache sets the cache that Cached steps use. Without it, a graph with a
// Cached step gets its own in-memory cache.
func WithCache(c Cache) GraphOption {
	return graphFunc(func(g *graphConfig) { g.cache = c })
}

// WithCodec sets the codec that encodes values for the cache (codec.Default).
func WithCodec(c codec.Codec) GraphOption {
	return graphFunc(func(g *graphConfig) { g.codec = c })
}

// ExecutionID names an execution in logs and observer events. Ephemeral
// executions otherwise get a process-unique ID when one is first needed.
func ExecutionID(id string) ExecuteOption {
	return execFunc(func(c *execConfig) { c.id = id })
}

// ExecutionTimeout bounds a whole execution (each execution, in a batch).
func ExecutionTimeout(d time.Duration) ExecuteOption {
	return execFunc(func(c *execConfig) { c.timeout = d })
}

// With adds inputs to an execution; in ExecuteBatch they are shared by every item.
func With(inputs ...any) ExecuteOption {
	return execFunc(func(c *execConfig) { c.shared = append(c.shared, inputs...) })
}
