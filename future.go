package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/docket-run/docket/store"
)

// Future is the outcome of something a step started without waiting for
// it: work running beside the step (Go), a durable timer (NewTimer) or a
// child execution (CallAsync). Get waits for it; a Selector waits for
// whichever of several futures and signals comes first.
//
// In durable mode each future has a journal entry at the position where it
// was made, and its outcome is recorded there once the step has seen it,
// so a re-executed step gets the same outcome without redoing the work.
// Futures belong to the step that made them and must be used from the
// step's own goroutine; work still running when the step returns is
// cancelled and waited for.
type Future[T any] struct{ c *future }

type futureKind uint8

const (
	futureWork  futureKind = iota // a function on its own goroutine
	futureTimer                   // fires at wake
	futureChild                   // a child execution
)

// future is the untyped core of a Future.
type future struct {
	kind futureKind
	name string // in the journal and in errors
	f    *frame
	d    *durableStep // nil in ephemeral mode
	pos  int          // the journal entry (durable)

	// Live futures (work in both modes; timers and children in ephemeral
	// mode) end by closing done after setting liveVal and liveErr.
	done    chan struct{}
	cancel  func()
	liveVal any
	liveErr error

	wake  time.Time // timer: when it fires
	child string    // child: the execution ID

	// The outcome, once the step has seen it.
	resolved bool
	hasVal   bool
	val      any
	data     []byte // the encoded value, durable
	err      error
}

// futureSet is a frame's futures whose live part has not been seen yet.
type futureSet struct {
	live    []*future
	changed chan struct{} // a live future ended (buffered, coalescing)
}

func (f *frame) futures() *futureSet {
	if f.futs == nil {
		f.futs = &futureSet{changed: make(chan struct{}, 1)}
	}
	return f.futs
}

// stopFutures cancels the live futures a finished attempt left and waits
// for them.
//
//go:noinline
func (f *frame) stopFutures() {
	fs := f.futs
	for _, fu := range fs.live {
		fu.cancel()
	}
	for _, fu := range fs.live {
		<-fu.done
	}
	fs.live = nil
}

// startLive runs fn for fu on its own goroutine.
func (fu *future) startLive(ctx context.Context, fn func(context.Context) (any, error)) {
	fs := fu.f.futures()
	ctx, cancel := context.WithCancel(ctx)
	fu.done, fu.cancel = make(chan struct{}), cancel
	fs.live = append(fs.live, fu)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				fu.liveErr = panicError(p, nil)
			}
			cancel()
			close(fu.done)
			select {
			case fs.changed <- struct{}{}:
			default:
			}
		}()
		fu.liveVal, fu.liveErr = fn(ctx)
	}()
}

// poll reports whether fu has an outcome, taking a live future's outcome
// if it has ended. It does not wait nor read the store.
func (fu *future) poll() bool {
	if fu.resolved {
		return true
	}
	if fu.done != nil {
		select {
		case <-fu.done:
			fu.dropLive()
			fu.settle(fu.liveVal, true, fu.liveErr)
			return true
		default:
			return false
		}
	}
	if fu.kind == futureTimer && fu.d != nil && !fu.d.w.eng.clock.Now().Before(fu.wake) {
		fu.settle(fu.wake, true, nil)
		return true
	}
	return false
}

func (fu *future) dropLive() {
	fs := fu.f.futs
	for i, o := range fs.live {
		if o == fu {
			fs.live = append(fs.live[:i], fs.live[i+1:]...)
			return
		}
	}
}

// settle records fu's outcome; in durable mode its journal entry is marked
// done and stored with the step's next save.
func (fu *future) settle(v any, hasVal bool, err error) {
	fu.resolved, fu.val, fu.hasVal, fu.err = true, v, hasVal, err
	d := fu.d
	if d == nil || fu.kind == futureWork && interrupted(fu.f, err) {
		return
	}
	e := d.journal[fu.pos]
	e.Done, e.Data, e.Error = true, nil, ""
	switch {
	case err != nil && fu.kind == futureChild:
		var xe *ExecutionError
		if errors.As(err, &xe) {
			e.Data = []byte(xe.Status)
		}
		e.Error = err.Error()
	case err != nil:
		e.Error = err.Error()
	case hasVal:
		data, merr := d.codec().Marshal(v)
		if merr != nil {
			fu.err = fmt.Errorf("docket: result of %s cannot be encoded: %w", fu.describe(), merr)
			e.Error = fu.err.Error()
		}
		e.Data = data
	}
	fu.data = e.Data
	d.journal[fu.pos] = e
	d.dirty = append(d.dirty, fu.pos)
}

// fromJournal resolves fu from its recorded entry.
func (fu *future) fromJournal(e *store.JournalEntry) {
	fu.resolved, fu.data = true, e.Data
	switch {
	case e.Error == "":
	case fu.kind == futureChild:
		fu.err = &ExecutionError{ID: fu.child, Graph: fu.name, Status: string(e.Data), Message: e.Error}
	case e.Error == errFutureCancelled.Error():
		fu.err = errFutureCancelled
	default:
		fu.err = &RunError{Name: fu.name, Message: e.Error}
	}
	if fu.kind == futureChild && e.Error == "" && string(e.Data) == string(store.Cancelled) {
		fu.err = &ExecutionError{ID: fu.child, Graph: fu.name, Status: string(store.Cancelled)}
	}
}

func (fu *future) describe() string {
	switch fu.kind {
	case futureTimer:
		return "timer"
	case futureChild:
		return "call:" + fu.name
	}
	return "go:" + fu.name
}

// errFutureCancelled is the outcome of a cancelled timer or child future.
var errFutureCancelled = fmt.Errorf("docket: future cancelled: %w", ErrCancelled)

// result returns fu's outcome as a T.
func result[T any](fu *future) (T, error) {
	var zero T
	if fu.err != nil {
		return zero, fu.err
	}
	if fu.hasVal {
		v, _ := fu.val.(T)
		return v, nil
	}
	if fu.d == nil || len(fu.data) == 0 {
		return zero, nil
	}
	return decodeAs[T](fu.d, fu.data)
}

// Go starts fn beside the step and returns its future at once. fn is a
// side effect like Run's: in durable mode its outcome is journaled, and a
// re-executed step gets the recorded outcome without calling fn again.
// Retry and timeout options apply as for Run. fn's context is cancelled
// when the future is cancelled or the step ends.
func Go[T any](ctx context.Context, name string, fn func(ctx context.Context) (T, error), opts ...RunOption) *Future[T] {
	var cfg runConfig
	for _, o := range opts {
		o.applyRun(&cfg)
	}
	fu := &future{kind: futureWork, name: name}
	f, d, err := durableFrame(ctx)
	if f == nil || err != nil && !errors.Is(err, ErrNotInStep) {
		return failedFuture[T](fu, err)
	}
	fu.f, fu.d = f, d
	work := func(ctx context.Context) (any, error) { return runLive(ctx, fn, &cfg) }
	if d == nil {
		fu.startLive(ctx, work)
		return &Future[T]{fu}
	}
	e, err := d.next("go", name)
	if err != nil {
		return failedFuture[T](fu, err)
	}
	fu.pos = d.seq - 1
	if e == nil {
		d.add(store.JournalEntry{Kind: "go", Name: name})
	} else if e.Done {
		fu.fromJournal(e)
		return &Future[T]{fu}
	}
	d.waitPoint() // a query replay starts no work
	live := &frame{Context: f.Context, r: f.r, ps: f.ps, attempt: f.attempt, clock: d.w.eng.clock}
	fu.startLive(liveCtx{ctx, live}, work)
	return &Future[T]{fu}
}

// failedFuture is a future that is already resolved with err.
func failedFuture[T any](fu *future, err error) *Future[T] {
	if err == nil {
		err = ErrNotInStep
	}
	fu.resolved, fu.err = true, err
	return &Future[T]{fu}
}

// NewTimer returns a future that becomes ready once d has passed (measured
// from the first time the step made this call). In durable mode it is a
// durable timer: a step waiting only on timers, signals and children is
// suspended and holds no goroutine. A cancelled timer's outcome is an error
// matching ErrCancelled.
func NewTimer(ctx context.Context, d time.Duration) *Future[time.Time] {
	fu := &future{kind: futureTimer, name: d.String()}
	f, ds, err := durableFrame(ctx)
	if f == nil || err != nil && !errors.Is(err, ErrNotInStep) {
		return failedFuture[time.Time](fu, err)
	}
	fu.f, fu.d = f, ds
	if ds == nil {
		wake := time.Now().Add(d)
		t := time.NewTimer(d)
		fu.startLive(ctx, func(ctx context.Context) (any, error) {
			defer t.Stop()
			select {
			case <-t.C:
				return wake, nil
			case <-ctx.Done():
				return nil, errFutureCancelled
			}
		})
		return &Future[time.Time]{fu}
	}
	e, err := ds.next("timer", "")
	if err != nil {
		return failedFuture[time.Time](fu, err)
	}
	fu.pos = ds.seq - 1
	if e == nil {
		ds.add(store.JournalEntry{Kind: "timer", WakeAt: ds.w.eng.clock.Now().Add(d)})
		e = &ds.journal[fu.pos]
	}
	fu.wake = e.WakeAt
	if e.Done {
		fu.fromJournal(e)
		if fu.err == nil {
			fu.val, fu.hasVal = fu.wake, true
		}
	}
	return &Future[time.Time]{fu}
}

// CallAsync starts a child execution as Call does and returns its future
// at once, so the step can do other things or wait on several children.
func CallAsync[Out any](ctx context.Context, child *Graph, key string, inputs ...any) *Future[Out] {
	var cfg callConfig
	rest := make([]any, 0, len(inputs))
	for _, in := range inputs {
		if o, ok := in.(CallOption); ok {
			o.applyCall(&cfg)
			continue
		}
		rest = append(rest, in)
	}
	if key == "" {
		key = child.name
	}
	fu := &future{kind: futureChild, name: child.name + ":" + key}
	f, d, err := durableFrame(ctx)
	if f == nil || err != nil && !errors.Is(err, ErrNotInStep) {
		return failedFuture[Out](fu, err)
	}
	fu.f, fu.d = f, d
	target := reflect.TypeFor[Out]()
	if d == nil {
		fu.startLive(ctx, func(ctx context.Context) (any, error) { return execute(ctx, child, target, rest, nil) })
		return &Future[Out]{fu}
	}
	fu.child = d.exec.ID + "/" + d.step + "/" + key
	e, err := d.next("call", fu.name)
	if err != nil {
		return failedFuture[Out](fu, err)
	}
	fu.pos = d.seq - 1
	if e != nil {
		if e.Done {
			fu.fromJournal(e)
		}
		return &Future[Out]{fu}
	}
	d.waitPoint()
	eng := d.w.eng
	link := &store.Execution{Parent: d.exec.ID, ParentStep: d.step}
	if err := eng.startWith(f, child, fu.child, target, rest, nil, link); err != nil {
		d.seq-- // nothing was started: the call is not journaled
		err = fmt.Errorf("docket: starting child %q: %w", fu.child, err)
		var sf storeFailure
		if errors.As(err, &sf) {
			d.storeFailed(err)
		}
		return failedFuture[Out](fu, err)
	}
	entry := store.JournalEntry{Kind: "call", Name: fu.name}
	if cfg.abandon {
		entry.Data = []byte("abandon")
	}
	d.add(entry)
	return &Future[Out]{fu}
}

// childOutcome reads the child of fu and reports whether it has ended,
// with the outcome to settle.
func (fu *future) childOutcome(ctx context.Context) (bool, any, error, error) {
	eng := fu.d.w.eng
	x, err := eng.st.Execution(ctx, fu.child)
	if err != nil {
		err = fmt.Errorf("docket: reading child %q: %w", fu.child, err)
		if !errors.Is(err, store.ErrNotFound) {
			fu.d.storeFailed(err)
		}
		return false, nil, nil, err
	}
	if !x.Status.Finished() {
		return false, nil, nil, nil
	}
	if x.Status != store.Completed {
		return true, nil, &ExecutionError{ID: fu.child, Graph: x.Graph, Status: string(x.Status), Message: x.Error}, nil
	}
	return true, x.Result, nil, nil
}

// settleChild records a finished child's outcome: its encoded result.
func (fu *future) settleChild(res any, cerr error) {
	if cerr != nil {
		fu.settle(nil, false, cerr)
		return
	}
	fu.settle(nil, false, nil)
	if v, ok := res.(*store.Value); ok && v != nil {
		d := fu.d
		d.journal[fu.pos].Data = v.Data
		fu.data = v.Data
	}
}

// Get waits for the future's outcome. Waiting on work happens in place;
// waiting on a durable timer or child suspends the step (once its other
// work has ended), holding no goroutine. In durable mode Get is a wait
// point where update handlers run.
func (fut *Future[T]) Get(ctx context.Context) (T, error) {
	fu := fut.c
	if fu.poll() {
		return result[T](fu)
	}
	if fu.d == nil || fu.kind == futureWork {
		select {
		case <-fu.done:
		case <-ctx.Done():
			return *new(T), ctx.Err()
		}
		fu.poll()
		return result[T](fu)
	}
	f, d := fu.f, fu.d
	if err := d.applyUpdates(f, ""); err != nil {
		return *new(T), err
	}
	// Get makes no journal entry of its own: the future's entry records
	// the outcome, so a re-executed step that finds it there goes on.
	one := &Selector{cases: []selectCase{{fut: fu}}}
	for !fu.poll() {
		d.waitPoint()
		if fu.kind == futureChild {
			ok, res, cerr, err := fu.childOutcome(f)
			if err != nil {
				return *new(T), err
			}
			if ok {
				fu.settleChild(res, cerr)
				if err := d.save(f, f, nil); err != nil {
					return *new(T), fmt.Errorf("docket: recording child %q: %w", fu.child, err)
				}
				break
			}
		}
		if err := one.wait(f, d); err != nil {
			return *new(T), err
		}
	}
	return result[T](fu)
}

// Cancel cancels the future: work gets a cancelled context (its outcome
// is whatever it then returns), a timer resolves with an error matching
// ErrCancelled, and a child execution is cancelled. A future that already
// has an outcome is left as it is.
func (fut *Future[T]) Cancel() {
	fu := fut.c
	if fu.poll() {
		return
	}
	switch {
	case fu.done != nil:
		fu.cancel()
	case fu.kind == futureTimer:
		fu.settle(nil, false, errFutureCancelled)
	case fu.kind == futureChild:
		if err := fu.d.w.eng.Cancel(fu.f, fu.child); err != nil && !isFinishedOrMissing(err) {
			Logger(fu.f).Warn("docket: cancelling child failed", "child", fu.child, "error", err)
		}
		fu.settle(nil, false, &ExecutionError{ID: fu.child, Graph: fu.name, Status: string(store.Cancelled), Message: "cancelled by its parent"})
	}
}
