package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/docket-run/docket/store"
)

// ConflictPolicy says what Start does when the execution ID is taken.
type ConflictPolicy int

const (
	// UseExisting returns a handle to the existing execution (the default):
	// the ID is an idempotency key, so retrying a Start is safe.
	UseExisting ConflictPolicy = iota
	// FailIfExists returns an *AlreadyStartedError.
	FailIfExists
)

// OnConflict sets Start's policy for an ID that is already taken.
func OnConflict(p ConflictPolicy) ExecuteOption {
	return execFunc(func(c *execConfig) { c.conflict = p })
}

// Handle refers to a durable execution whose result is an Out.
type Handle[Out any] struct {
	eng *Engine
	id  string
}

// ID returns the execution ID.
func (h *Handle[Out]) ID() string { return h.id }

// HandleFor returns a handle to an existing execution, e.g. one started by
// another process.
func HandleFor[Out any](eng *Engine, id string) *Handle[Out] { return &Handle[Out]{eng: eng, id: id} }

// Start records a durable execution of g with the given ID that produces an
// Out from inputs, and returns at once; the engine's workers (in this or any
// process sharing the store) run it. The ID is an idempotency key: starting
// an ID that exists returns the existing execution (see OnConflict).
// Inputs and options are given as for Execute; ExecutionTimeout bounds the
// whole execution. The inputs are checked before anything is recorded.
func Start[Out any](ctx context.Context, eng *Engine, g *Graph, id string, inputs ...any) (*Handle[Out], error) {
	if err := eng.start(ctx, g, id, reflect.TypeFor[Out](), inputs); err != nil {
		return nil, err
	}
	return &Handle[Out]{eng: eng, id: id}, nil
}

func (e *Engine) start(ctx context.Context, g *Graph, id string, target reflect.Type, inputs []any) error {
	return e.startWith(ctx, g, id, target, inputs, nil, nil)
}

// startWith starts an execution and, when sig is set, delivers a signal to
// it (new or existing) in the same transaction. parent, when set, makes the
// execution its child.
func (e *Engine) startWith(ctx context.Context, g *Graph, id string, target reflect.Type, inputs []any, sig *pendingSignal, parent *store.Execution) error {
	if id == "" {
		return errors.New("docket: an execution needs an ID")
	}
	if eg, err := e.graph(g.name); err != nil {
		return err
	} else if eg != g {
		return fmt.Errorf("docket: graph %q given to Start is not the one registered with the engine", g.name)
	}
	ix := g.index()
	var cfg execConfig
	vals, types := splitInputs(inputs, &cfg, nil, nil)
	p, err := ix.planFor(target, types)
	if err != nil {
		return err
	}
	x := &store.Execution{ID: id, Run: 1, Graph: g.name, Target: target.String(), Codec: e.codec.Name(), Status: store.Running}
	if parent != nil {
		x.Parent, x.ParentStep = parent.Parent, parent.ParentStep
	}
	for k, v := range vals {
		data, err := e.codec.Marshal(v)
		if err != nil {
			return fmt.Errorf("docket: input %d (%T) cannot be encoded: %w", k, v, err)
		}
		x.Inputs = append(x.Inputs, store.Value{Type: p.slots[p.inputs[k]].typ.String(), Data: data})
	}
	now := e.clock.Now()
	x.CreatedAt, x.UpdatedAt = now, now
	if cfg.timeout > 0 {
		x.Deadline = now.Add(cfg.timeout)
	}
	queue := ""
	if len(p.roots) > 0 {
		queue = p.steps[p.roots[0]].st.cfg.queue
	}
	eager := e.w != nil && len(p.roots) > 0 && e.w.tryAcquire(queue)
	var first *store.Task
	var carry *preload // what the first task's run needs not read again
	finished, created := false, false
	fresh := func(bool) {}
	if parent == nil { // a child's end reaches its parent's step, not Result
		fresh = e.creating(id)
	}
	err = e.create(ctx, id, func(tx store.Tx) error {
		first, finished, carry, created = nil, false, nil, false
		old, err := tx.Execution()
		if err == nil {
			if cfg.conflict == FailIfExists || old.Graph != x.Graph || old.Target != x.Target {
				return &AlreadyStartedError{ID: id, Graph: old.Graph}
			}
			if sig != nil {
				if old.Status.Finished() {
					return &FinishedError{ID: id, Status: string(old.Status)}
				}
				return e.deliver(tx, old, sig.name, sig.payload)
			}
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if err := tx.CreateExecution(x); err != nil {
			return err
		}
		created = true
		if p.slots[p.target].input {
			// Nothing to run: the result is an input.
			k := 0
			for i, si := range p.inputs {
				if si == p.target {
					k = i
				}
			}
			x.Status, x.Result, x.FinishedAt = store.Completed, &x.Inputs[k], now
			finished = true
			if err := tx.PutExecution(x); err != nil {
				return err
			}
			return endTasks(tx, p, x, now)
		}
		recs := map[string]*store.Step{}
		for _, i := range p.roots {
			if err := makeReady(e, tx, p, recs, i, now, e.w.leaseTo(eager, queue).unless(first != nil), &first); err != nil {
				return err
			}
		}
		if first != nil {
			stored, err := tx.Execution() // as the store gives it back
			if err != nil {
				return err
			}
			carry = &preload{x: stored, recs: recs}
		}
		if !x.Deadline.IsZero() {
			if err := tx.AddTask(&store.Task{Kind: taskDeadline, ReadyAt: x.Deadline}); err != nil {
				return err
			}
		}
		if sig != nil {
			return e.deliver(tx, x, sig.name, sig.payload)
		}
		return nil
	})
	fresh(err == nil && created)
	if err != nil {
		if eager {
			e.w.releaseSlot(queue)
		}
		var ase *AlreadyStartedError
		var fe *FinishedError
		var ste *SignalTypeError
		if !errors.As(err, &ase) && !errors.As(err, &fe) && !errors.As(err, &ste) && !errors.Is(err, store.ErrInvalid) {
			err = storeFailure{err}
		}
		return err
	}
	switch {
	case first != nil:
		e.w.keepPreload(first.ID, carry)
		e.w.launch(*first)
	case eager:
		e.w.releaseSlot(queue)
	}
	if finished {
		e.finished(id, nil)
	}
	e.committed()
	return nil
}

// create runs fn as Update does, through the store's Create where it has
// one: fn creates the execution, which most likely does not exist yet.
func (e *Engine) create(ctx context.Context, id string, fn func(store.Tx) error) error {
	if c, ok := e.st.(store.Creator); ok {
		return c.Create(ctx, id, fn)
	}
	return e.st.Update(ctx, id, fn)
}

// storeFailure marks an error of the store (a lost connection, say),
// rather than a refusal by the engine or of a value, so that a step that
// met it while starting a child is run again rather than failed. It reads
// and matches as the error it holds.
type storeFailure struct{ err error }

func (f storeFailure) Error() string { return f.err.Error() }
func (f storeFailure) Unwrap() error { return f.err }

// splitInputs applies the options among inputs to cfg and appends the
// inputs (cfg's shared ones first) and their types to vals and types.
func splitInputs(inputs []any, cfg *execConfig, vals []any, types []reflect.Type) ([]any, []reflect.Type) {
	for _, in := range inputs {
		if o, ok := in.(ExecuteOption); ok {
			o.applyExecute(cfg)
		}
	}
	add := func(in any) {
		t := reflect.TypeOf(in)
		if ti, ok := in.(typedInput); ok {
			in, t = ti.value()
		}
		vals, types = append(vals, in), append(types, t)
	}
	for _, in := range cfg.shared {
		add(in)
	}
	for _, in := range inputs {
		if _, ok := in.(ExecuteOption); !ok {
			add(in)
		}
	}
	return vals, types
}

// Result waits for the execution to finish and returns its result, or an
// *ExecutionError if it failed or was cancelled.
func (h *Handle[Out]) Result(ctx context.Context) (Out, error) {
	var zero Out
	e := h.eng
	var x *store.Execution
	first := true
	if err := e.watch(ctx, h.id); err != nil {
		return zero, err
	}
	err := e.await(ctx, h.id, time.Second, func() (bool, error) {
		final, unread := e.lookup(h.id)
		if final != nil {
			x = final // the end's event carried it
			return true, nil
		}
		if first && unread {
			first = false
			return false, nil // created here and not ended: wait for the event
		}
		first = false
		var err error
		x, err = e.st.Execution(ctx, h.id)
		if errors.Is(err, store.ErrNotFound) {
			return false, &NotFoundError{ID: h.id}
		}
		return err == nil && x.Status.Finished(), err
	})
	if err != nil {
		return zero, err
	}
	if x.Status != store.Completed {
		return zero, &ExecutionError{ID: x.ID, Graph: x.Graph, Status: string(x.Status), Message: x.Error}
	}
	if x.Result == nil {
		return zero, nil
	}
	var out Out
	if err := e.codec.Unmarshal(x.Result.Data, &out); err != nil {
		return zero, &CorruptPayloadError{Type: x.Result.Type, Err: err}
	}
	return out, nil
}

// watch makes the store tell this process of execution id's end when
// another process ends it (see store.Watcher), before a caller waits for
// it. An execution that does not exist is left to the caller's check.
func (e *Engine) watch(ctx context.Context, id string) error {
	w, ok := e.st.(store.Watcher)
	if !ok || !e.listening {
		return nil
	}
	if err := w.Watch(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return err
	}
	return nil
}

// await calls check until it reports done (or fails), waking at once when
// this process notifies key and otherwise polling, for other processes,
// with a backoff from 1ms up to maxWait.
func (e *Engine) await(ctx context.Context, key string, maxWait time.Duration, check func() (bool, error)) error {
	backoff := time.Millisecond
	if e.listening {
		// The store's events wake this wait; polling is only the fallback.
		backoff = e.cfg.PollInterval
		maxWait = max(maxWait, backoff)
	}
	for {
		ch := e.waitChan(key)
		done, err := check()
		if err != nil || done {
			e.dropWait(key, ch)
			return err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			e.dropWait(key, ch)
			return ctx.Err()
		case <-ch:
		case <-t.C:
			e.dropWait(key, ch)
		}
		t.Stop()
		backoff = min(2*backoff, maxWait)
	}
}

// Cancel asks an execution to stop: its running steps see their context
// cancelled, suspended ones are woken and dropped, no new step starts, and
// then the compensations of its completed steps run. Its final status is
// cancelled. Cancelling a finished execution returns a *FinishedError.
func (e *Engine) Cancel(ctx context.Context, id string) error {
	finished := false
	err := e.st.Update(ctx, id, func(tx store.Tx) error {
		finished = false
		x, err := tx.Execution()
		if errors.Is(err, store.ErrNotFound) {
			return &NotFoundError{ID: id}
		}
		if err != nil {
			return err
		}
		if x.Status.Finished() {
			return &FinishedError{ID: id, Status: string(x.Status)}
		}
		if x.CancelRequested {
			return nil
		}
		x.CancelRequested, x.UpdatedAt = true, e.clock.Now()
		if err := tx.PutExecution(x); err != nil {
			return err
		}
		g, err := e.graph(x.Graph)
		if err != nil {
			// A client without the graph: a worker that has it finishes
			// the cancellation when it next runs one of the steps.
			return wakeAll(tx, e.clock.Now())
		}
		p, err := e.planOf(g.index(), x)
		if err != nil {
			return err
		}
		tasks, err := tx.Tasks()
		if err != nil {
			return err
		}
		recs, err := records(tx, p, x, tasks)
		if err != nil {
			return err
		}
		now := e.clock.Now()
		// Steps that are not running now never will: drop their tasks.
		for _, t := range tasks {
			running := t.Owner != "" && t.LeaseUntil.After(now)
			if t.Kind == store.TaskCompensate || (t.Kind == store.TaskStep && running) {
				continue
			}
			if err := tx.DeleteTask(t.ID); err != nil {
				return err
			}
			if rec := recs[t.Step]; t.Kind == store.TaskStep && rec != nil {
				rec.Status, rec.FinishedAt, rec.Error = store.StepCancelled, now, "execution cancelled"
				if err := tx.PutStep(rec); err != nil {
					return err
				}
			}
		}
		return settleCancel(e, tx, p, x, recs, now, &finished)
	})
	if err != nil {
		return err
	}
	if e.w != nil {
		e.w.cancelExec(id, errCancelling)
		e.committed()
	}
	if finished {
		e.finished(id, nil)
	}
	return nil
}

// wakeAll makes every idle step task of the execution ready now.
func wakeAll(tx store.Tx, now time.Time) error {
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.Kind == store.TaskStep && t.Owner == "" && t.ReadyAt.After(now) {
			t.ReadyAt, t.Claims = now, 0
			if err := tx.PutTask(&t); err != nil {
				return err
			}
		}
	}
	return nil
}
