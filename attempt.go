package docket

import (
	"context"
	"errors"
	"runtime/debug"
	"sync"
	"time"
)

// runStep runs a step to its end in this process: a cache lookup when the
// step is cached, then attempts under the step's retry policy, waiting out
// backoffs in place. It returns the output, the number of attempts made and
// the last error. (The durable worker makes one attempt at a time with
// attemptOnce and turns backoffs into durable timers.)
func (r *run) runStep(f *frame) (any, int, error) {
	if f.ps.st.cfg.cacheTTL <= 0 && f.retryPolicy() == nil {
		f.attempt = 1
		out, err := r.attemptOnce(f)
		if err != nil {
			return nil, 1, err
		}
		return out, 1, nil
	}
	return r.runStepFull(f)
}

// runStepFull is runStep for a cached step or one with a retry policy.
//
//go:noinline
func (r *run) runStepFull(f *frame) (any, int, error) {
	key, out, hit := r.cacheGet(f)
	if hit {
		return out, 0, nil
	}
	for attempt := 1; ; attempt++ {
		f.attempt = attempt
		out, err := r.attemptOnce(f)
		if err == nil {
			r.cachePut(f, key, out)
			return out, attempt, nil
		}
		if !r.retryWait(f, f.retryPolicy(), attempt, err) {
			return nil, attempt, err
		}
	}
}

// retryPolicy is the policy for whole attempts of the frame's step; a Map
// step retries each item instead.
func (f *frame) retryPolicy() *RetryPolicy {
	if f.ps.st.mapper != nil && !f.isItem {
		return nil
	}
	return f.ps.retry
}

// attemptOnce makes attempt number f.attempt of the frame's step, with the
// observer told before and after.
func (r *run) attemptOnce(f *frame) (any, error) {
	if r.ix.g.cfg.observer != nil {
		return r.attemptObserved(f)
	}
	return r.attemptBare(f)
}

// attemptBare is attemptOnce without the observer. The functions between a
// step's goroutine and the step keep small frames: the goroutine starts
// with a 2 KiB stack, and what they use is not left to the step.
func (r *run) attemptBare(f *frame) (any, error) {
	if f.ps.st.mapper != nil {
		return r.runMap(f)
	}
	return r.attempt(f, f.ps.st.invoke, r.vals, f.ps.in)
}

//go:noinline
func (r *run) attemptObserved(f *frame) (any, error) {
	obs := r.ix.g.cfg.observer
	start := time.Now()
	obs.StepStarted(f, r.stepEvent(f))
	out, err := r.attemptBare(f)
	e := r.stepEvent(f)
	e.Duration, e.Err = time.Since(start), err
	obs.StepFinished(f, e)
	return out, err
}

// retryWait decides whether attempt number attempt, failed with err, is
// tried again, and if so waits out the backoff. It reports false when the
// step is done for: policy exhausted, error not retryable, or the step's
// context ended.
func (r *run) retryWait(f *frame, pol *RetryPolicy, attempt int, err error) bool {
	if f.Err() != nil {
		return false
	}
	delay, ok := pol.next(attempt, err)
	if !ok {
		return false
	}
	r.retryScheduled(f, attempt, err, delay)
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-f.Done():
		return false
	}
}

func (r *run) retryScheduled(f *frame, attempt int, err error, delay time.Duration) {
	if obs := r.ix.g.cfg.observer; obs != nil {
		e := r.stepEvent(f)
		e.Attempt, e.Err, e.Delay = attempt, err, delay
		obs.RetryScheduled(f, e)
	}
}

var errHeartbeatTimeout = errors.New("heartbeat timeout")

// attempt makes one call of a step function under the step's timeout and
// heartbeat timeout, turning a panic into a *PanicError.
func (r *run) attempt(f *frame, inv invoker, vals []any, in []int32) (out any, err error) {
	if f.ps.timeout > 0 || f.ps.st.cfg.heartbeatTimeout > 0 {
		return r.attemptLimited(f, inv, vals, in)
	}
	// recover only when inv did not return: calling it costs a frame more
	// of stack on every step.
	returned := false
	defer func() {
		if !returned {
			err = panicError(recover(), err)
		}
		if f.futs != nil {
			f.stopFutures()
		}
	}()
	out, err = inv(f, vals, in)
	returned = true
	return out, err
}

// panicError turns a recovered panic value into a *PanicError (nil: the
// step called runtime.Goexit, and err stands).
func panicError(p any, err error) error {
	if p == nil {
		return err
	}
	return &PanicError{Value: p, Stack: debug.Stack()}
}

// attemptLimited is attempt for a step with a timeout or a heartbeat timeout.
//
//go:noinline
func (r *run) attemptLimited(f *frame, inv invoker, vals []any, in []int32) (out any, err error) {
	var ctx context.Context = f
	if d := f.ps.timeout; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
		defer func() {
			// Only our own deadline makes a timeout; a cancelled parent does not.
			if err != nil && f.Err() == nil && context.Cause(ctx) == context.DeadlineExceeded {
				err = &TimeoutError{Step: f.ps.st.name, Timeout: d, Err: err}
			}
		}()
	}
	if d := f.ps.st.cfg.heartbeatTimeout; d > 0 {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		hb := f.beat()
		hb.mu.Lock()
		hb.timer = time.AfterFunc(d, func() { cancel(errHeartbeatTimeout) })
		hb.mu.Unlock()
		defer func() {
			hb.mu.Lock()
			hb.timer.Stop()
			hb.timer = nil
			hb.mu.Unlock()
			cancel(nil)
			if err != nil && f.Err() == nil && context.Cause(ctx) == errHeartbeatTimeout {
				err = &TimeoutError{Step: f.ps.st.name, Timeout: d, Heartbeat: true, Err: err}
			}
		}()
	}
	returned := false
	defer func() {
		if !returned {
			err = panicError(recover(), err)
		}
		if f.futs != nil {
			f.stopFutures()
		}
	}()
	out, err = inv(ctx, vals, in)
	returned = true
	return out, err
}

// beat returns the frame's heartbeat state, making it on first use. Most
// steps never heartbeat, so frames do not carry it inline.
func (f *frame) beat() *beat {
	if hb := f.hb.Load(); hb != nil {
		return hb
	}
	f.hb.CompareAndSwap(nil, &beat{})
	return f.hb.Load()
}

// beat is a step's heartbeat state: the last details, kept across attempts,
// and the timer that a heartbeat timeout runs on.
type beat struct {
	mu      sync.Mutex
	timer   *time.Timer
	details any
	data    []byte // details as stored, for durable steps
	dirty   bool   // details not yet written to the store
}

func (r *run) stepEvent(f *frame) StepEvent {
	e := StepEvent{Graph: r.ix.g.name, Execution: r.id(), Step: f.ps.st.name, Attempt: f.attempt, Item: -1}
	if f.isItem {
		e.Item = f.item
	}
	return e
}
