package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Execute runs the steps of g that are needed to produce an Out from inputs,
// in this process, and returns the Out. Independent steps run concurrently;
// each step runs at most once (plus retries); values pass between steps as
// Go values, never serialized.
//
// inputs are values whose types the graph declares with Input or its steps
// take; an input whose type a step produces replaces that step. ExecuteOption
// values (ExecutionTimeout, ExecutionID, ...) may be mixed in with them.
//
// The first step that fails for good stops the execution: running steps see
// their context cancelled, no new step starts, and Execute returns a
// *StepError once every started step has returned.
func Execute[Out any](ctx context.Context, g *Graph, inputs ...any) (Out, error) {
	var zero Out
	v, err := execute(ctx, g, reflect.TypeFor[Out](), inputs, nil)
	for err != nil {
		can, ok := asContinue(err)
		if !ok {
			return zero, err
		}
		v, err = execute(ctx, g, reflect.TypeFor[Out](), can.inputs, nil)
	}
	out, _ := v.(Out)
	return out, nil
}

var executionSeq atomic.Uint64

// run is one execution in progress.
type run struct {
	ix     *index
	p      *plan
	cfg    execConfig
	ctx    context.Context
	cancel context.CancelCauseFunc
	vals   []any
	frames []frame
	races  []*raceState // by slot; only for race slots
	cache  Cache        // overrides the graph's cache (durable runs use the store's)
	wg     sync.WaitGroup
	failed atomic.Bool
	errMu  sync.Mutex
	err    error
	done   []int32 // steps with compensations, in completion order
	idOnce sync.Once
}

// frame is a step's state within a run. It is also the step's context: it
// embeds the context the step runs under and answers Value(frameKey{}) with
// itself, so Logger and (in durable mode) durable calls find their step
// without an allocation per step.
type frame struct {
	context.Context
	r       *run
	ps      *pstep
	attempt int
	pending atomic.Int32
	isItem  bool // a frame for one item of a Map step
	item    int
	hb      atomic.Pointer[beat] // heartbeat state, made on first use
	d       *durableStep         // set when the step runs durably
	clock   Clock                // for Now outside the journal (inside Run)
	futs    *futureSet           // futures started by the step, made on first use
}

type frameKey struct{}

// Value returns the frame for frameKey and defers to the parent otherwise.
func (f *frame) Value(key any) any {
	if key == (frameKey{}) {
		return f
	}
	return f.Context.Value(key)
}

type raceState struct {
	won     atomic.Bool
	mu      sync.Mutex
	errs    []error
	left    int
	cancels []context.CancelFunc
}

// execute runs one execution. base, when set, is the configuration that
// options among inputs refine (ExecuteBatch's, for each item).
func execute(ctx context.Context, g *Graph, target reflect.Type, inputs []any, base *execConfig) (any, error) {
	ix := g.index()
	if ix.err != nil {
		return nil, ix.err
	}
	r := &run{ix: ix}
	if base != nil {
		r.cfg = *base
	}
	// Buffers for the common case of a few inputs, so that splitting them
	// allocates nothing.
	var (
		tbuf [4]reflect.Type
		vbuf [4]any
	)
	vals, types := splitInputs(inputs, &r.cfg, vbuf[:0], tbuf[:0])
	p, err := ix.planFor(target, types)
	if err != nil {
		return nil, err
	}
	r.p = p
	r.vals = make([]any, len(p.slots))
	for k, v := range vals {
		r.vals[p.inputs[k]] = v
	}
	if p.slots[p.target].input {
		return r.vals[p.target], nil
	}

	r.ctx, r.cancel = context.WithCancelCause(ctx)
	defer r.cancel(nil)
	if r.cfg.timeout > 0 {
		var stop context.CancelFunc
		r.ctx, stop = context.WithTimeoutCause(r.ctx, r.cfg.timeout, errExecutionTimeout)
		defer stop()
	}
	obs := ix.g.cfg.observer
	var start time.Time
	if obs != nil {
		start = time.Now()
		obs.ExecutionStarted(ctx, ExecutionEvent{Graph: g.name, Execution: r.id()})
	}

	r.frames = make([]frame, len(p.steps))
	for i := range r.frames {
		f := &r.frames[i]
		f.r, f.ps = r, &p.steps[i]
		f.pending.Store(p.steps[i].deps)
	}
	if p.hasRace {
		r.races = make([]*raceState, len(p.slots))
		for si, s := range p.slots {
			if len(s.producers) > 1 {
				r.races[si] = &raceState{left: len(s.producers)}
			}
		}
	}
	r.wg.Add(len(p.roots))
	for _, i := range p.roots[1:] {
		go r.spawned(i)
	}
	// The first root runs on the caller's goroutine. (A step that calls
	// runtime.Goexit there ends the caller's goroutine, as Goexit does.)
	var cur int32
	r.chain(p.roots[0], &cur)
	r.wg.Wait()

	err = r.result(ctx)
	if _, cont := asContinue(err); err != nil && !cont && len(r.done) > 0 {
		err = r.compensate(ctx, err)
	}
	if obs != nil {
		obs.ExecutionFinished(ctx, ExecutionEvent{Graph: g.name, Execution: r.id(), Duration: time.Since(start), Err: err})
	}
	if err != nil {
		return nil, err
	}
	return r.vals[p.target], nil
}

var errExecutionTimeout = errors.New("execution timed out")

func (r *run) result(ctx context.Context) error {
	r.errMu.Lock()
	err := r.err
	r.errMu.Unlock()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("docket: graph %q: %w (%w)", r.ix.g.name, ctx.Err(), err)
	}
	if context.Cause(r.ctx) == errExecutionTimeout {
		return fmt.Errorf("docket: graph %q: execution timed out after %s: %w", r.ix.g.name, r.cfg.timeout, err)
	}
	return err
}

// id returns the execution ID, making one up on first use.
func (r *run) id() string {
	r.idOnce.Do(func() {
		if r.cfg.id == "" {
			r.cfg.id = "x" + strconv.FormatUint(executionSeq.Add(1), 36)
		}
	})
	return r.cfg.id
}

// chain runs step i and then, on the same goroutine, one of the steps its
// output made ready; the others get goroutines of their own. A straight
// chain of steps therefore runs on the caller's goroutine with no hand-off.
// cur tracks the step being run, for spawned's Goexit report.
func (r *run) chain(i int32, cur *int32) {
	for i >= 0 {
		*cur = i
		next := r.exec(i)
		r.wg.Done()
		i = next
	}
}

// spawned is chain on a new goroutine; it also turns a step's
// runtime.Goexit into a step failure instead of a hang.
func (r *run) spawned(i int32) {
	normal := false
	cur := i
	defer func() {
		if !normal {
			r.fail(&StepError{Graph: r.ix.g.name, Step: r.p.steps[cur].st.name, Attempts: r.frames[cur].attempt, Err: ErrGoexit})
			r.wg.Done()
		}
	}()
	r.chain(i, &cur)
	normal = true
}

// exec runs step i and returns a newly ready step to continue with, or -1.
func (r *run) exec(i int32) int32 {
	if r.failed.Load() {
		return -1
	}
	f := &r.frames[i]
	if r.races != nil && r.races[f.ps.out] != nil {
		return r.execRace(i, f)
	}
	f.Context = r.ctx
	out, attempts, err := r.runStep(f)
	if err != nil {
		r.stepFailed(f, nil, attempts, err)
		return -1
	}
	return r.done1(i, f, out)
}

// done1 records a completed step and releases the steps waiting for it.
func (r *run) done1(i int32, f *frame, out any) int32 {
	if r.p.hasComp && f.ps.st.cfg.compensate != nil {
		r.errMu.Lock()
		r.done = append(r.done, i)
		r.errMu.Unlock()
	}
	return r.fill(f.ps.out, out)
}

// execRace is exec for a step of a race group.
//
//go:noinline
func (r *run) execRace(i int32, f *frame) int32 {
	rs := r.races[f.ps.out]
	if rs.won.Load() {
		return -1
	}
	ctx, cancel := context.WithCancel(r.ctx)
	f.Context = ctx
	rs.mu.Lock()
	rs.cancels = append(rs.cancels, cancel)
	rs.mu.Unlock()
	out, attempts, err := r.runStep(f)
	if err != nil {
		r.stepFailed(f, rs, attempts, err)
		return -1
	}
	if !rs.won.CompareAndSwap(false, true) {
		return -1
	}
	rs.mu.Lock()
	for _, c := range rs.cancels {
		c()
	}
	rs.mu.Unlock()
	return r.done1(i, f, out)
}

// compensate undoes the completed steps of a failed execution, newest
// first, each under its step's retry policy, and adds any compensation
// that failed for good to err.
func (r *run) compensate(ctx context.Context, err error) error {
	ctx = context.WithoutCancel(ctx)
	errs := []error{err}
	for k := len(r.done) - 1; k >= 0; k-- {
		i := r.done[k]
		ps := &r.p.steps[i]
		f := &frame{Context: ctx, r: r, ps: ps}
		for attempt := 1; ; attempt++ {
			f.attempt = attempt
			cerr := compensateOnce(f, ps.st.cfg.compensate, r.vals[ps.out])
			if cerr == nil {
				break
			}
			if !r.retryWait(f, ps.retry, attempt, cerr) {
				errs = append(errs, &CompensationError{Step: ps.st.name, Err: cerr})
				break
			}
		}
	}
	return errors.Join(errs...)
}

// fill stores a step's output and releases the steps waiting for it.
func (r *run) fill(si int32, v any) int32 {
	r.vals[si] = v
	next := int32(-1)
	for _, c := range r.p.slots[si].consumers {
		if r.frames[c].pending.Add(-1) == 0 {
			r.wg.Add(1)
			if next < 0 {
				next = c
			} else {
				go r.spawned(c)
			}
		}
	}
	return next
}

func (r *run) stepFailed(f *frame, rs *raceState, attempts int, err error) {
	se := &StepError{Graph: r.ix.g.name, Step: f.ps.st.name, Attempts: attempts, Err: err}
	if rs == nil || IsAbort(err) {
		r.fail(se)
		return
	}
	rs.mu.Lock()
	rs.errs = append(rs.errs, se)
	rs.left--
	all := rs.left == 0 && !rs.won.Load()
	errs := rs.errs
	rs.mu.Unlock()
	if all {
		r.fail(&RaceError{Graph: r.ix.g.name, Type: r.p.slots[f.ps.out].typ, Errs: errs})
	}
}

// fail records the execution's first error and stops the execution.
func (r *run) fail(err error) {
	r.errMu.Lock()
	if r.err == nil {
		r.err = err
	}
	r.errMu.Unlock()
	r.failed.Store(true)
	r.cancel(err)
}
