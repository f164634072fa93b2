package docket

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// ValidationError lists every problem Validate found in a graph. Each problem
// is one of the typed errors below and can be matched with errors.As.
type ValidationError struct {
	Graph    string
	Problems []error
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "docket: graph %q is invalid (%d problem", e.Graph, len(e.Problems))
	if len(e.Problems) != 1 {
		b.WriteString("s")
	}
	b.WriteString(")")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the individual problems so errors.As can find each one.
func (e *ValidationError) Unwrap() []error { return e.Problems }

// SignatureError reports a function that cannot be a step.
type SignatureError struct {
	Step   string
	Reason string
}

func (e *SignatureError) Error() string {
	return fmt.Sprintf("step %q has an unsupported signature: %s", e.Step, e.Reason)
}

// DuplicateStepError reports two steps registered under one name.
type DuplicateStepError struct {
	Step string
}

func (e *DuplicateStepError) Error() string {
	return fmt.Sprintf("two steps are named %q; give one of them another name with docket.Name", e.Step)
}

// MissingProducerError reports a step input that no step produces and that
// is not a declared graph input.
type MissingProducerError struct {
	Step string
	Type reflect.Type
}

func (e *MissingProducerError) Error() string {
	return fmt.Sprintf("step %q needs %s, which no step produces and which is not a declared input; "+
		"register a step that returns it or declare it with docket.Input[%s]()", e.Step, e.Type, e.Type)
}

// DuplicateProducerError reports a type produced by more than one step
// outside a race group.
type DuplicateProducerError struct {
	Type  reflect.Type
	Steps []string
}

func (e *DuplicateProducerError) Error() string {
	return fmt.Sprintf("%s is produced by %d steps (%s); a type needs exactly one producer "+
		"unless every producer is registered with docket.Race()", e.Type, len(e.Steps), strings.Join(quoteAll(e.Steps), ", "))
}

// CycleError reports steps that depend on each other in a loop. Steps lists
// the loop in dependency order, starting and ending with the same step.
type CycleError struct {
	Steps []string
}

func (e *CycleError) Error() string {
	return "steps form a cycle: " + strings.Join(quoteAll(e.Steps), " -> ")
}

// MissingInputError reports that a request did not provide a declared input
// that the steps it would run need.
type MissingInputError struct {
	Graph string
	Type  reflect.Type
	Steps []string // the steps that need it
}

func (e *MissingInputError) Error() string {
	return fmt.Sprintf("docket: graph %q needs input %s (for %s) but the request did not provide it",
		e.Graph, e.Type, strings.Join(quoteAll(e.Steps), ", "))
}

// UnknownInputError reports a request input whose type the graph neither
// declares, consumes nor produces.
type UnknownInputError struct {
	Graph string
	Type  reflect.Type
}

func (e *UnknownInputError) Error() string {
	if e.Type == nil {
		return fmt.Sprintf("docket: graph %q got a nil input; pass a typed value, e.g. docket.As[*T](nil)", e.Graph)
	}
	return fmt.Sprintf("docket: graph %q has no use for an input of type %s; declare it with docket.Input[%s]() "+
		"or pass a value of a type a step takes", e.Graph, e.Type, e.Type)
}

// UnknownTargetError reports a requested result type that no step produces.
type UnknownTargetError struct {
	Graph string
	Type  reflect.Type
}

func (e *UnknownTargetError) Error() string {
	return fmt.Sprintf("docket: graph %q has no step that produces %s", e.Graph, e.Type)
}

// StepError is how a failed step surfaces from Execute: which step, after how
// many attempts, and the last attempt's error (wrapped, for errors.Is/As).
type StepError struct {
	Graph    string
	Step     string
	Attempts int
	Err      error
}

func (e *StepError) Error() string {
	a := "attempts"
	if e.Attempts == 1 {
		a = "attempt"
	}
	return fmt.Sprintf("docket: graph %q: step %q failed after %d %s: %v", e.Graph, e.Step, e.Attempts, a, e.Err)
}

func (e *StepError) Unwrap() error { return e.Err }

// RaceError reports a race group in which every producer failed. Errs holds
// one *StepError per producer, in the order they failed.
type RaceError struct {
	Graph string
	Type  reflect.Type
	Errs  []error
}

func (e *RaceError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return fmt.Sprintf("docket: graph %q: every producer of %s failed:\n  %s", e.Graph, e.Type, strings.Join(msgs, "\n  "))
}

// Unwrap returns the producers' errors.
func (e *RaceError) Unwrap() []error { return e.Errs }

// PanicError is the error of a step attempt that panicked. It carries the
// panic value and the stack of the panicking goroutine.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// TimeoutError is the error of a step attempt that ran past its timeout.
// It matches context.DeadlineExceeded with errors.Is.
type TimeoutError struct {
	Step    string
	Timeout time.Duration
	// Heartbeat is set when the step went Timeout without a heartbeat.
	Heartbeat bool
	Err       error // what the step returned when its context ended
}

func (e *TimeoutError) Error() string {
	if e.Heartbeat {
		return fmt.Sprintf("step %q sent no heartbeat for %s", e.Step, e.Timeout)
	}
	return fmt.Sprintf("step %q timed out after %s", e.Step, e.Timeout)
}

// Is makes errors.Is(err, context.DeadlineExceeded) hold for timeouts.
func (e *TimeoutError) Is(target error) bool { return target == errDeadline }

// Unwrap returns the step's own error.
func (e *TimeoutError) Unwrap() error { return e.Err }

// ItemError is the error of one item of a Map step.
type ItemError struct {
	Index int
	Err   error
}

func (e *ItemError) Error() string { return fmt.Sprintf("item %d: %v", e.Index, e.Err) }
func (e *ItemError) Unwrap() error { return e.Err }

// BatchError reports the items of ExecuteBatch that failed. Errs has one entry
// per input item, nil for the items that succeeded.
type BatchError struct {
	Errs []error
}

func (e *BatchError) Error() string {
	n, first := 0, -1
	for i, err := range e.Errs {
		if err != nil {
			n++
			if first < 0 {
				first = i
			}
		}
	}
	return fmt.Sprintf("docket: %d of %d batch items failed; first, item %d: %v", n, len(e.Errs), first, e.Errs[first])
}

// Unwrap returns the errors of the failed items.
func (e *BatchError) Unwrap() []error {
	var out []error
	for _, err := range e.Errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}

// ErrGoexit is the error of a step that called runtime.Goexit (for example
// through t.FailNow) instead of returning.
var ErrGoexit = errors.New("step called runtime.Goexit instead of returning")

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}

// UnnamedStepError reports an anonymous function registered without a Name
// in a graph that runs durably: stored history refers to steps by name, and
// a closure's generated name changes when the code around it does.
type UnnamedStepError struct {
	Step string
}

func (e *UnnamedStepError) Error() string {
	return fmt.Sprintf("step %q is an anonymous function; durable graphs need docket.Name(...) on it", e.Step)
}

// UnknownGraphError reports a graph name the engine does not serve.
type UnknownGraphError struct {
	Graph string
}

func (e *UnknownGraphError) Error() string {
	return fmt.Sprintf("docket: no graph named %q is registered with this engine (Config.Graphs)", e.Graph)
}

// NotFoundError reports an execution ID that does not exist.
type NotFoundError struct {
	ID string
}

func (e *NotFoundError) Error() string { return fmt.Sprintf("docket: no execution %q", e.ID) }

// AlreadyStartedError is returned by Start with FailIfExists when the ID is taken.
type AlreadyStartedError struct {
	ID    string
	Graph string
}

func (e *AlreadyStartedError) Error() string {
	return fmt.Sprintf("docket: execution %q already exists (graph %q)", e.ID, e.Graph)
}

// FinishedError reports an operation on an execution that has already ended.
type FinishedError struct {
	ID     string
	Status string
}

func (e *FinishedError) Error() string {
	return fmt.Sprintf("docket: execution %q has already finished (%s)", e.ID, e.Status)
}

// ExecutionError is the outcome of a durable execution that failed or was
// cancelled, as Result reports it.
type ExecutionError struct {
	ID      string
	Graph   string
	Status  string // "failed" or "cancelled"
	Message string // the recorded error
}

func (e *ExecutionError) Error() string {
	return fmt.Sprintf("docket: execution %q %s: %s", e.ID, e.Status, e.Message)
}

// Is lets errors.Is(err, ErrCancelled) match cancelled executions.
func (e *ExecutionError) Is(target error) bool {
	return target == ErrCancelled && e.Status == "cancelled"
}

// ErrCancelled matches (with errors.Is) the error of a cancelled execution.
var ErrCancelled = errors.New("docket: execution cancelled")

// CorruptPayloadError reports a stored value that cannot be decoded.
type CorruptPayloadError struct {
	Type string
	Err  error
}

func (e *CorruptPayloadError) Error() string {
	return fmt.Sprintf("docket: stored %s cannot be decoded: %v", e.Type, e.Err)
}

func (e *CorruptPayloadError) Unwrap() error { return e.Err }

// NonDeterminismError reports a step whose durable calls no longer match
// its journal: on resuming, the code made a different call at a position
// than the one recorded. The step fails without retries; fix the code (or
// branch on Patched) so replays make the same calls.
type NonDeterminismError struct {
	Step     string
	Position int    // 0-based index of the durable call within the step
	Recorded string // the call in the journal, e.g. run("charge")
	Called   string // the call the code made now
}

func (e *NonDeterminismError) Error() string {
	return fmt.Sprintf("docket: non-determinism in step %q: durable call #%d is %s now but the journal recorded %s",
		e.Step, e.Position, e.Called, e.Recorded)
}
