package docket

import "time"

// Clock is the engine's source of time: durable timers, retry backoffs,
// leases and Now all read it. The default is the system clock; docktest
// provides a virtual one, so tests can skip over days of sleeping.
type Clock interface {
	Now() time.Time
	// TimerAt returns a timer that fires once the clock reaches t (at once
	// if it already has). Timers are set for a moment, not a duration, so
	// that a clock moved between reading it and setting the timer cannot
	// make the timer late.
	TimerAt(t time.Time) Timer
}

// Timer is a Clock's one-shot timer.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
}

// IdleClock is implemented by clocks that want to hear when the engine's
// worker has nothing to do until next. A virtual clock may jump to next and
// report true, and the worker looks for work again at once.
type IdleClock interface {
	Clock
	Idle(next time.Time) bool
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

func (systemClock) TimerAt(t time.Time) Timer { return sysTimer{time.NewTimer(time.Until(t))} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time { return t.t.C }
func (t sysTimer) Stop() bool          { return t.t.Stop() }
