package docket

import (
	"context"
	"log/slog"
	"time"
)

// Observer is told what executions do. Its methods are called synchronously
// on the goroutine doing the work, so they must be quick and safe for
// concurrent use. Embed BaseObserver to implement only some of them.
type Observer interface {
	ExecutionStarted(ctx context.Context, e ExecutionEvent)
	ExecutionFinished(ctx context.Context, e ExecutionEvent)
	// StepStarted and StepFinished bracket every attempt of a step.
	StepStarted(ctx context.Context, e StepEvent)
	StepFinished(ctx context.Context, e StepEvent)
	// RetryScheduled follows a failed attempt that will be tried again after e.Delay.
	RetryScheduled(ctx context.Context, e StepEvent)
	// CacheChecked reports a lookup of a Cached step; e.CacheHit says how it went.
	CacheChecked(ctx context.Context, e StepEvent)
}

// ExecutionEvent describes an execution starting or finishing.
type ExecutionEvent struct {
	Graph     string
	Execution string
	Duration  time.Duration // set when finished
	Err       error         // set when finished with an error
}

// StepEvent describes a step attempt, a retry or a cache lookup.
type StepEvent struct {
	Graph     string
	Execution string
	Step      string
	Attempt   int           // 1-based
	Item      int           // index of a Map item, or -1
	Duration  time.Duration // StepFinished
	Err       error         // StepFinished, RetryScheduled
	Delay     time.Duration // RetryScheduled: the wait before the next attempt
	CacheHit  bool          // CacheChecked
}

// BaseObserver implements Observer with methods that do nothing.
type BaseObserver struct{}

// ExecutionStarted implements Observer.
func (BaseObserver) ExecutionStarted(context.Context, ExecutionEvent) {}

// ExecutionFinished implements Observer.
func (BaseObserver) ExecutionFinished(context.Context, ExecutionEvent) {}

// StepStarted implements Observer.
func (BaseObserver) StepStarted(context.Context, StepEvent) {}

// StepFinished implements Observer.
func (BaseObserver) StepFinished(context.Context, StepEvent) {}

// RetryScheduled implements Observer.
func (BaseObserver) RetryScheduled(context.Context, StepEvent) {}

// CacheChecked implements Observer.
func (BaseObserver) CacheChecked(context.Context, StepEvent) {}

// Logger returns a logger for use inside a step: the graph's logger (or
// slog.Default) with the graph, execution, step and attempt as attributes.
// Outside a step it returns slog.Default().
func Logger(ctx context.Context) *slog.Logger {
	f, _ := ctx.Value(frameKey{}).(*frame)
	if f == nil {
		return slog.Default()
	}
	if Replaying(ctx) {
		return discard // a replay repeats code that already logged
	}
	l := f.r.ix.g.cfg.logger
	if l == nil {
		l = slog.Default()
	}
	attrs := []any{
		slog.String("graph", f.r.ix.g.name),
		slog.String("execution", f.r.id()),
		slog.String("step", f.ps.st.name),
		slog.Int("attempt", f.attempt),
	}
	if f.isItem {
		attrs = append(attrs, slog.Int("item", f.item))
	}
	return l.With(attrs...)
}

var discard = slog.New(slog.DiscardHandler)
