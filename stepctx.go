package docket

import "context"

// Heartbeat tells Docket that the calling step is alive and records details
// of its progress. It restarts the step's HeartbeatTimeout, and the last
// details are handed to the step's next attempt (HeartbeatDetails) if this
// one fails — in durable mode even if the worker running it dies — so a long
// step can resume where it got to. Outside a step it does nothing.
func Heartbeat(ctx context.Context, details any) {
	f := frameOf(ctx)
	if f == nil {
		return
	}
	hb := f.beat()
	hb.mu.Lock()
	hb.details, hb.data, hb.dirty = details, nil, true
	if hb.timer != nil {
		hb.timer.Reset(f.ps.st.cfg.heartbeatTimeout)
	}
	hb.mu.Unlock()
	if f.d != nil && !f.isItem && !f.d.query {
		f.d.heartbeat(f)
	}
}

// HeartbeatDetails returns the details of the last Heartbeat of the calling
// step, made by this attempt or an earlier one, and whether there were any
// of type T.
func HeartbeatDetails[T any](ctx context.Context) (T, bool) {
	var zero T
	f := frameOf(ctx)
	if f == nil {
		return zero, false
	}
	hb := f.hb.Load()
	if hb == nil {
		return zero, false
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if v, ok := hb.details.(T); ok {
		return v, true
	}
	if hb.data != nil && f.d != nil {
		var v T
		if err := f.d.codec().Unmarshal(hb.data, &v); err == nil {
			hb.details = v
			return v, true
		}
	}
	return zero, false
}

// ExecutionIDOf returns the ID of the execution the calling step belongs
// to, or "" outside a step.
func ExecutionIDOf(ctx context.Context) string {
	if f := frameOf(ctx); f != nil {
		return f.r.id()
	}
	return ""
}

// Replaying reports whether the calling step is re-executing durable calls
// it already made (after resuming from a suspension, a retry or a crash),
// or is being replayed to answer a query. Code with effects outside Run —
// metrics, notifications to the same process — can skip them then.
func Replaying(ctx context.Context) bool {
	f := frameOf(ctx)
	return f != nil && f.d != nil && (f.d.replaying() || f.d.query)
}

// Attempt returns which attempt of the calling step this is, from 1. In
// durable mode attempts count across processes; a step resumed after a
// durable sleep is still in the same attempt. Outside a step it returns 0.
func Attempt(ctx context.Context) int {
	if f := frameOf(ctx); f != nil {
		return f.attempt
	}
	return 0
}

func frameOf(ctx context.Context) *frame {
	f, _ := ctx.Value(frameKey{}).(*frame)
	return f
}
