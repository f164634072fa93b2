package docket

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"time"
)

var errDeadline = context.DeadlineExceeded

// RetryPolicy says how often and how patiently a failed step is tried again.
// The zero value makes one attempt and never retries.
//
// The wait before attempt n+1 is InitialInterval * BackoffCoefficient^(n-1),
// capped at MaxInterval, then spread by ±Jitter (a fraction, 0.2 = ±20%).
type RetryPolicy struct {
	// MaxAttempts counts the first attempt: 3 means up to two retries.
	// Zero or one means a single attempt; a negative value retries forever.
	MaxAttempts int
	// InitialInterval is the wait before the first retry (default 100ms).
	InitialInterval time.Duration
	// BackoffCoefficient multiplies the wait after each retry (default 2).
	BackoffCoefficient float64
	// MaxInterval caps the wait (default 100 × InitialInterval).
	MaxInterval time.Duration
	// Jitter spreads each wait uniformly by this fraction of it, from 0 to 1.
	Jitter float64
	// NonRetryable lists errors that end the step at once; an error matches
	// when errors.Is(err, target) holds.
	NonRetryable []error
	// Retryable, when set, classifies every error: false ends the step.
	Retryable func(error) bool
}

// attempts reports how many attempts the policy allows; -1 means no limit.
func (p *RetryPolicy) attempts() int {
	switch {
	case p == nil || p.MaxAttempts == 0:
		return 1
	case p.MaxAttempts < 0:
		return -1
	default:
		return p.MaxAttempts
	}
}

// next decides, after attempt number attempt (1-based) failed with err,
// whether to try again and after which wait. Both the ephemeral and the
// durable scheduler use it, so retry decisions are the same in both modes.
func (p *RetryPolicy) next(attempt int, err error) (time.Duration, bool) {
	if p == nil || isPermanent(err) {
		return 0, false
	}
	if _, ok := asContinue(err); ok {
		return 0, false
	}
	if max := p.attempts(); max >= 0 && attempt >= max {
		return 0, false
	}
	for _, target := range p.NonRetryable {
		if errors.Is(err, target) {
			return 0, false
		}
	}
	if p.Retryable != nil && !p.Retryable(err) {
		return 0, false
	}
	return p.backoff(attempt), true
}

func (p *RetryPolicy) backoff(attempt int) time.Duration {
	initial := p.InitialInterval
	if initial <= 0 {
		initial = 100 * time.Millisecond
	}
	coef := p.BackoffCoefficient
	if coef < 1 {
		coef = 2
	}
	max := p.MaxInterval
	if max <= 0 {
		max = 100 * initial
	}
	d := float64(initial) * math.Pow(coef, float64(attempt-1))
	if d > float64(max) {
		d = float64(max)
	}
	if j := min(p.Jitter, 1); j > 0 {
		d += d * j * (2*rand.Float64() - 1)
	}
	return time.Duration(d)
}

// NonRetryable marks err so that no retry policy tries the step again.
func NonRetryable(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// Abort marks err so that it stops the whole execution at once: the step is
// not retried, every running step's context is cancelled and no other step
// starts. In ExecuteBatch it stops the whole batch. Use it for failures that
// make the rest of the work pointless (the caller is gone, the input is bad).
func Abort(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err, abort: true}
}

type permanentError struct {
	err   error
	abort bool
}

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// IsAbort reports whether err carries an Abort mark.
func IsAbort(err error) bool {
	var p *permanentError
	for e := err; errors.As(e, &p); e = p.err {
		if p.abort {
			return true
		}
	}
	return false
}
