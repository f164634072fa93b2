package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/docket-run/docket/store"
)

// Signals are messages sent to a running durable execution. Each
// execution has an inbox that keeps them in arrival order; a step takes the
// next signal of a name with Receive, and suspends — holding no goroutine —
// until one arrives. A signal is delivered to exactly one Receive, and a
// received signal is journaled, so a step that resumes gets the same one.

// forever is the ReadyAt of a task that only a signal (or cancellation) wakes.
var forever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// ErrNoInbox is returned by Receive outside a durable execution: only
// durable executions have an inbox.
var ErrNoInbox = errors.New("docket: signals can only be received in a durable execution")

// ErrReceiveTimeout is returned by ReceiveTimeout when no signal came in time.
var ErrReceiveTimeout = errors.New("docket: no signal arrived before the timeout")

// SignalTypeError reports a signal whose payload is not of the type the
// graph declared for its name (SignalInput).
type SignalTypeError struct {
	Name string
	Want reflect.Type
	Got  reflect.Type
}

func (e *SignalTypeError) Error() string {
	return fmt.Sprintf("docket: signal %q takes a %s, not a %v", e.Name, e.Want, e.Got)
}

// SignalInput declares that values of type T reach executions of g as
// signals named name: steps that take a T wait, suspended, until the
// signal arrives. (In ephemeral Execute, pass the T as an input.) It also
// makes Signal check that payloads sent under name are T's.
func SignalInput[T any](g *Graph, name string) {
	t := reflect.TypeFor[T]()
	g.mu.Lock()
	if g.signals == nil {
		g.signals = map[string]reflect.Type{}
	}
	g.signals[name] = t
	g.mu.Unlock()
	Register0(g, func(ctx context.Context) (T, error) {
		v, err := Receive[T](ctx, name)
		if errors.Is(err, ErrNoInbox) {
			return v, fmt.Errorf("docket: graph %q waits for signal %q: give Execute a %s as input, or start the graph durably", g.name, name, t)
		}
		return v, err
	}, Name("signal:"+name))
}

// Receive returns the payload of the next signal called name sent to the
// calling step's execution, suspending the step until one arrives.
func Receive[T any](ctx context.Context, name string) (T, error) {
	return receive[T](ctx, name, 0, nil)
}

// ErrStopped is returned by ReceiveUnless when its stop condition became
// true before a signal arrived.
var ErrStopped = errors.New("docket: stopped waiting: the stop condition holds")

// ReceiveUnless is Receive that also stops waiting — returning ErrStopped —
// as soon as stop reports true. stop is checked when the call is made and
// after every update applied while it waits, so an update handler can end
// the wait (a checkout that ends a shopping loop). stop must only read the
// step's state.
func ReceiveUnless[T any](ctx context.Context, name string, stop func() bool) (T, error) {
	return receive[T](ctx, name, 0, stop)
}

// ReceiveTimeout is Receive that gives up after d (measured from the first
// time the step made this call) with ErrReceiveTimeout.
func ReceiveTimeout[T any](ctx context.Context, name string, d time.Duration) (T, error) {
	if d <= 0 {
		d = time.Nanosecond
	}
	return receive[T](ctx, name, d, nil)
}

func receive[T any](ctx context.Context, name string, timeout time.Duration, stop func() bool) (T, error) {
	var zero T
	f, d, err := durableFrame(ctx)
	if err != nil && !errors.Is(err, ErrNotInStep) {
		return zero, err
	}
	if d == nil {
		return zero, ErrNoInbox
	}
	if err := d.applyUpdates(f, name); err != nil {
		return zero, err
	}
	e, err := d.next("receive", name)
	if err != nil {
		return zero, err
	}
	pos := d.seq - 1
	if e == nil {
		// First time here: note the deadline, so a resumed step keeps it.
		entry := store.JournalEntry{Kind: "receive", Name: name}
		if timeout > 0 {
			entry.WakeAt = d.w.eng.clock.Now().Add(timeout)
		}
		d.add(entry)
		e = &d.journal[pos]
	}
	if !e.Done && stop != nil && stop() {
		d.waitPoint()
		stopped := d.journal[pos]
		stopped.Done, stopped.Error = true, "stopped"
		d.journal[pos] = stopped
		d.dirty = append(d.dirty, pos) // it may be stored already, pending
		if err := d.save(f, f, nil); err != nil {
			return zero, fmt.Errorf("docket: recording a stopped receive: %w", err)
		}
	}
	if !e.Done {
		d.waitPoint()
		got, err := d.takeSignal(f, pos, name)
		if err != nil {
			return zero, err
		}
		if !got {
			// Nothing yet (and, with a timeout, not timed out): suspend.
			return zero, d.awaitSignal(f, pos, name)
		}
	}
	switch d.journal[pos].Error {
	case "":
	case "stopped":
		return zero, ErrStopped
	default:
		return zero, ErrReceiveTimeout
	}
	return decodeAs[T](d, d.journal[pos].Data)
}

func decodeAs[T any](d *durableStep, data []byte) (T, error) {
	var v T
	if err := d.codec().Unmarshal(data, &v); err != nil {
		return v, &CorruptPayloadError{Type: reflect.TypeFor[T]().String(), Err: err}
	}
	return v, nil
}

// takeSignal consumes the oldest unconsumed signal called name, if any, or
// records the timeout if the entry at pos has passed its deadline, and
// completes the journal entry at pos, in one fenced transaction. It
// reports whether the entry is now done.
func (d *durableStep) takeSignal(f *frame, pos int, name string) (bool, error) {
	entry := d.journal[pos]
	now := d.w.eng.clock.Now()
	done := false
	err := d.save(f, f, func(tx store.Tx, rec *store.Step, task *store.Task) error {
		done = false
		sigs, err := tx.Signals()
		if err != nil {
			return err
		}
		e := entry
		for _, s := range sigs {
			if s.ConsumedBy == "" && s.Name == name {
				s.ConsumedBy = d.step
				if err := tx.PutSignal(&s); err != nil {
					return err
				}
				e.Data, e.Done = s.Payload.Data, true
				break
			}
		}
		if !e.Done && !e.WakeAt.IsZero() && !now.Before(e.WakeAt) {
			e.Error, e.Done = "timeout", true
		}
		if !e.Done {
			return nil
		}
		if err := tx.PutJournal(&e); err != nil {
			return err
		}
		entry, done = e, true
		rec.Signal = ""
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("docket: receiving signal %q: %w", name, err)
	}
	d.journal[pos] = entry
	return done, nil
}

// awaitSignal suspends the step until a signal called name arrives (Signal
// wakes its task) or the entry's deadline passes.
func (d *durableStep) awaitSignal(f *frame, pos int, name string) error {
	wake := forever
	wait := "signal " + name
	if dl := d.journal[pos].WakeAt; !dl.IsZero() {
		wake = dl
		wait += " until " + dl.UTC().Format(time.RFC3339)
	}
	return d.suspendFor(f, wake, wait, name, nil)
}

// Signal sends a signal to execution id: it joins the execution's inbox
// and wakes a step waiting for it. Signalling an unknown execution returns
// a *NotFoundError, a finished one a *FinishedError; a payload of the wrong
// type for a name the graph declared (SignalInput) a *SignalTypeError.
// Nothing is recorded when Signal fails.
func (e *Engine) Signal(ctx context.Context, id, name string, payload any) error {
	err := e.st.Update(ctx, id, func(tx store.Tx) error {
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
		return e.deliver(tx, x, name, payload)
	})
	if err == nil {
		e.notify(signalKey(id))
		e.committed()
	}
	return err
}

// deliver appends a signal to the inbox of x and wakes the steps waiting for it.
func (e *Engine) deliver(tx store.Tx, x *store.Execution, name string, payload any) error {
	// A client that does not have the graph cannot check the payload's
	// type; the receiving step's decoding does.
	if g, err := e.graph(x.Graph); err == nil {
		if want, ok := g.signalType(name); ok && reflect.TypeOf(payload) != want {
			return &SignalTypeError{Name: name, Want: want, Got: reflect.TypeOf(payload)}
		}
	}
	data, err := e.codec.Marshal(payload)
	if err != nil {
		return fmt.Errorf("docket: signal %q payload (%T) cannot be encoded: %w", name, payload, err)
	}
	now := e.clock.Now()
	typ := "<nil>"
	if payload != nil {
		typ = reflect.TypeOf(payload).String()
	}
	if err := tx.AddSignal(&store.Signal{Name: name, Payload: store.Value{Type: typ, Data: data}, SentAt: now}); err != nil {
		return err
	}
	steps, err := tx.Steps()
	if err != nil {
		return err
	}
	waiting := map[string]bool{}
	for _, s := range steps {
		if s.Status == store.StepSuspended && waitsFor(s.Signal, name) {
			waiting[s.Name] = true
		}
	}
	if len(waiting) == 0 {
		return nil
	}
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.Kind == store.TaskStep && waiting[t.Step] && t.Owner == "" {
			t.ReadyAt, t.Claims = now, 0
			if err := tx.PutTask(&t); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *Graph) signalType(name string) (reflect.Type, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.signals[name]
	return t, ok
}

// SignalWithStart sends a signal to execution id, starting it first (as
// Start would, with inputs) if it does not exist yet — both in one
// transaction, so the signal is never lost between the two.
func SignalWithStart[Out any](ctx context.Context, eng *Engine, g *Graph, id, name string, payload any, inputs ...any) (*Handle[Out], error) {
	sig := &pendingSignal{name: name, payload: payload}
	if err := eng.startWith(ctx, g, id, reflect.TypeFor[Out](), inputs, sig, nil); err != nil {
		return nil, err
	}
	return &Handle[Out]{eng: eng, id: id}, nil
}

type pendingSignal struct {
	name    string
	payload any
}
