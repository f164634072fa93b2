package docket

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/docket-run/docket/store"
)

// Durable calls are made inside a step. In durable mode each is journaled
// in order, and a step that resumes (after a sleep, a crash or a retry)
// re-executes its body while the calls it already made return what the
// journal recorded. So the code of a step between durable calls must do
// the same thing each time it runs: keep side effects inside Run, and read
// time and randomness through Now, Random and UUID. In ephemeral mode the
// calls simply happen.

// RunOption configures one Run call.
type RunOption interface{ applyRun(*runConfig) }

type runConfig struct {
	retry   *RetryPolicy
	timeout time.Duration
}

// exitStep ends a suspended step's goroutine. runtime.Goexit runs the
// step's deferred calls but cannot be caught by recover, so user code
// cannot swallow a suspension.
func exitStep() { runtime.Goexit() }

// ErrNotInStep is returned by durable calls made outside a step.
var ErrNotInStep = errors.New("docket: durable calls can only be made inside a step")

// ErrDurableCallInMap is returned by durable calls made inside a Map item of
// a durable execution; Map items are not journaled one by one.
var ErrDurableCallInMap = errors.New("docket: durable calls cannot be made inside Map items of a durable execution")

func durableFrame(ctx context.Context) (*frame, *durableStep, error) {
	f := frameOf(ctx)
	if f == nil {
		return nil, nil, ErrNotInStep
	}
	if f.d != nil && f.isItem {
		return f, nil, ErrDurableCallInMap
	}
	return f, f.d, nil
}

// Run makes a journaled side effect: it calls fn (retrying it under a
// Retry option, if given) and records the outcome, so that when the step
// re-executes, Run returns the recorded value or error without calling fn
// again. name identifies the call in the journal and must be the same on
// every execution of the step. The result must be encodable by the
// engine's codec. A Run whose side effect happened but whose record did not
// (the process died in between) runs again: Run is at-least-once.
func Run[T any](ctx context.Context, name string, fn func(ctx context.Context) (T, error), opts ...RunOption) (T, error) {
	var zero T
	var cfg runConfig
	for _, o := range opts {
		o.applyRun(&cfg)
	}
	f, d, err := durableFrame(ctx)
	if err != nil && !errors.Is(err, ErrNotInStep) {
		return zero, err
	}
	if d == nil {
		return runLive(ctx, fn, &cfg)
	}
	if e, err := d.next("run", name); err != nil {
		return zero, err
	} else if e != nil {
		if e.Error != "" {
			return zero, &RunError{Name: name, Message: e.Error}
		}
		var v T
		if err := d.codec().Unmarshal(e.Data, &v); err != nil {
			return zero, &CorruptPayloadError{Type: fmt.Sprintf("%T", v), Err: err}
		}
		return v, nil
	}
	// fn is the side effect itself: durable calls inside it happen live.
	live := &frame{Context: f.Context, r: f.r, ps: f.ps, attempt: f.attempt, clock: d.w.eng.clock}
	v, runErr := runLive(context.Context(liveCtx{ctx, live}), fn, &cfg)
	if interrupted(f, runErr) {
		return v, runErr // not the call's outcome: the next attempt makes it again
	}
	entry := store.JournalEntry{Kind: "run", Name: name, Done: true}
	if runErr != nil {
		entry.Error = runErr.Error()
	} else if entry.Data, err = d.codec().Marshal(v); err != nil {
		return zero, fmt.Errorf("docket: result of Run %q cannot be encoded: %w", name, err)
	}
	d.add(entry)
	if err := d.save(f, f, nil); err != nil {
		return zero, fmt.Errorf("docket: recording Run %q: %w", name, err)
	}
	return v, runErr
}

// RunError is the recorded error of a Run call, returned when the step
// replays it. It carries only the message.
type RunError struct {
	Name    string
	Message string
}

func (e *RunError) Error() string { return e.Message }

func runLive[T any](ctx context.Context, fn func(context.Context) (T, error), cfg *runConfig) (T, error) {
	for attempt := 1; ; attempt++ {
		v, err := callRun(ctx, fn, cfg.timeout)
		if err == nil {
			return v, nil
		}
		delay, ok := cfg.retry.next(attempt, err)
		if !ok || ctx.Err() != nil {
			return v, err
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return v, err
		}
	}
}

func callRun[T any](ctx context.Context, fn func(context.Context) (T, error), timeout time.Duration) (v T, err error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p}
		}
	}()
	return fn(ctx)
}

// Sleep pauses the step for d. In durable mode the step is suspended: its
// goroutine ends, nothing of it stays in memory, and a timer task resumes it
// on whichever worker is alive once d has passed — after a restart too. In
// ephemeral mode Sleep waits in place. It returns early only with the
// context's error.
func Sleep(ctx context.Context, d time.Duration) error {
	f, ds, err := durableFrame(ctx)
	if err != nil && !errors.Is(err, ErrNotInStep) {
		return err
	}
	if ds == nil {
		if d <= 0 {
			return ctx.Err()
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return ds.sleepUntil(f, ds.w.eng.clock.Now().Add(d), true)
}

// SleepUntil pauses the step until t; see Sleep.
func SleepUntil(ctx context.Context, t time.Time) error {
	f, ds, err := durableFrame(ctx)
	if err != nil && !errors.Is(err, ErrNotInStep) {
		return err
	}
	if ds == nil {
		return Sleep(ctx, time.Until(t))
	}
	return ds.sleepUntil(f, t, false)
}

func (d *durableStep) sleepUntil(f *frame, wake time.Time, relative bool) error {
	if err := d.applyUpdates(f, ""); err != nil {
		return err
	}
	e, err := d.next("sleep", "")
	if err != nil {
		return err
	}
	if e == nil {
		// A relative sleep is measured from when it was first called; the
		// journal keeps that, so a replay does not restart the clock.
		d.add(store.JournalEntry{Kind: "sleep", WakeAt: wake})
		e = &d.journal[len(d.journal)-1]
	}
	if !d.w.eng.clock.Now().Before(e.WakeAt) {
		return f.Err()
	}
	return d.suspend(f, e.WakeAt, "sleep until "+e.WakeAt.UTC().Format(time.RFC3339))
}

// Now returns the current time, journaled: a replay gets the time of the
// first call. Outside a durable step it is the engine clock's (or system) time.
func Now(ctx context.Context) time.Time {
	f, d, _ := durableFrame(ctx)
	if d == nil {
		if f != nil && f.clock != nil {
			return f.clock.Now()
		}
		return time.Now()
	}
	v, _ := journaled(d, "now", func() time.Time { return d.w.eng.clock.Now() })
	return v
}

// Random returns a random number, journaled: a replay gets the same number.
func Random(ctx context.Context) uint64 {
	var b [8]byte
	gen := func() uint64 { _, _ = rand.Read(b[:]); return binary.LittleEndian.Uint64(b[:]) }
	_, d, _ := durableFrame(ctx)
	if d == nil {
		return gen()
	}
	v, _ := journaled(d, "random", gen)
	return v
}

// UUID returns a random (version 4) UUID, journaled: a replay gets the same one.
func UUID(ctx context.Context) string {
	_, d, _ := durableFrame(ctx)
	if d == nil {
		return newUUID()
	}
	v, _ := journaled(d, "uuid", newUUID)
	return v
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// journaled returns the recorded value of a side-effect-free call, or makes
// it and records it with the step's next save.
func journaled[T any](d *durableStep, kind string, gen func() T) (T, error) {
	var zero T
	e, err := d.next(kind, "")
	if err != nil {
		return zero, err
	}
	if e != nil {
		var v T
		if err := d.codec().Unmarshal(e.Data, &v); err != nil {
			return zero, err
		}
		return v, nil
	}
	v := gen()
	data, err := d.codec().Marshal(v)
	if err != nil {
		return zero, err
	}
	d.add(store.JournalEntry{Kind: kind, Data: data, Done: true})
	return v, nil
}

// liveCtx is the context of a Run's function: the step's context, but with
// a frame that makes durable calls happen live instead of being journaled.
type liveCtx struct {
	context.Context
	f *frame
}

func (c liveCtx) Value(key any) any {
	if key == (frameKey{}) {
		return c.f
	}
	return c.Context.Value(key)
}
