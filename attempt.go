package docket

import (
	"context"
	"runtime/debug"
	"time"
)

// runStep runs a step to its end: a cache lookup when the step is cached,
// then attempts under the step's retry policy. It returns the output, the
// number of attempts made and the last error.
func (r *run) runStep(f *frame) (any, int, error) {
	st := f.ps.st
	var key string
	if st.cfg.cacheTTL > 0 {
		var hit bool
		var out any
		key, out, hit = r.cacheGet(f)
		if hit {
			return out, 0, nil
		}
	}
	pol := f.ps.retry
	if st.mapper != nil {
		pol = nil // a Map step retries each item, not the whole step
	}
	obs := r.ix.g.cfg.observer
	for attempt := 1; ; attempt++ {
		f.attempt = attempt
		var start time.Time
		if obs != nil {
			start = time.Now()
			obs.StepStarted(f, r.stepEvent(f, -1))
		}
		var out any
		var err error
		if st.mapper != nil {
			out, err = r.runMap(f)
		} else {
			out, err = r.attempt(f, f.ps.timeout, st.invoke, r.vals, f.ps.in)
		}
		if obs != nil {
			e := r.stepEvent(f, -1)
			e.Duration, e.Err = time.Since(start), err
			obs.StepFinished(f, e)
		}
		if err == nil {
			if key != "" {
				r.cachePut(f, key, out)
			}
			return out, attempt, nil
		}
		if !r.retryWait(f, pol, attempt, -1, err) {
			return nil, attempt, err
		}
	}
}

// retryWait decides whether attempt number attempt, failed with err, is
// tried again, and if so waits out the backoff. It reports false when the
// step is done for: policy exhausted, error not retryable, or the step's
// context ended.
func (r *run) retryWait(ctx context.Context, pol *RetryPolicy, attempt, item int, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	delay, ok := pol.next(attempt, err)
	if !ok {
		return false
	}
	if obs := r.ix.g.cfg.observer; obs != nil {
		f := ctx.Value(frameKey{}).(*frame)
		e := r.stepEvent(f, item)
		e.Attempt, e.Err, e.Delay = attempt, err, delay
		obs.RetryScheduled(ctx, e)
	}
	t := time.NewTimer(delay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt makes one call of a step function under the step's timeout,
// turning a panic into a *PanicError.
func (r *run) attempt(ctx context.Context, timeout time.Duration, inv invoker, vals []any, in []int32) (out any, err error) {
	if timeout > 0 {
		parent := ctx
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
		defer func() {
			// Only our own deadline makes a timeout; a cancelled parent does not.
			if err != nil && parent.Err() == nil && context.Cause(ctx) == context.DeadlineExceeded {
				err = &TimeoutError{Step: stepName(ctx), Timeout: timeout, Err: err}
			}
		}()
	}
	defer func() {
		if p := recover(); p != nil {
			err = &PanicError{Value: p, Stack: debug.Stack()}
		}
	}()
	return inv(ctx, vals, in)
}

func (r *run) stepEvent(f *frame, item int) StepEvent {
	return StepEvent{Graph: r.ix.g.name, Execution: r.id(), Step: f.ps.st.name, Attempt: f.attempt, Item: item}
}

func stepName(ctx context.Context) string {
	if f, ok := ctx.Value(frameKey{}).(*frame); ok {
		return f.ps.st.name
	}
	return ""
}
