// Package docktest runs Docket engines in tests on virtual time, so a test
// of "sleep for thirty days, then act" finishes in milliseconds.
//
// New opens an engine on a fresh store with a virtual Clock. By default the
// clock skips ahead whenever the engine has nothing to run before its next
// timer, the way a fast-forwarding test server would: durable sleeps, retry
// backoffs and execution timeouts pass at once, in order. Turn that off with
// Options.ManualTime and move time yourself with Clock.Advance.
package docktest

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

// Clock is a virtual docket.Clock. Its time moves only when told to: by
// Advance or Set, or, in automatic mode, when the engine is idle.
type Clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*timer
	manual bool
}

// NewClock returns a clock that starts at start and skips ahead when the
// engine is idle.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now implements docket.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// TimerAt implements docket.Clock.
func (c *Clock) TimerAt(at time.Time) docket.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{c: c, at: at, ch: make(chan time.Time, 1)}
	if !at.After(c.now) {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves the clock forward by d, firing the timers that come due.
func (c *Clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (never backwards), firing the timers that come due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !t.After(c.now) {
		return
	}
	c.now = t
	sort.Slice(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	kept := c.timers[:0]
	for _, tm := range c.timers {
		if !tm.at.After(t) {
			tm.ch <- tm.at
			continue
		}
		kept = append(kept, tm)
	}
	c.timers = kept
}

// Idle implements docket.IdleClock: unless the clock is manual, it jumps
// to next.
func (c *Clock) Idle(next time.Time) bool {
	c.mu.Lock()
	manual := c.manual
	c.mu.Unlock()
	if manual || !next.After(c.Now()) {
		return false
	}
	c.Set(next)
	return true
}

type timer struct {
	c  *Clock
	at time.Time
	ch chan time.Time
}

func (t *timer) C() <-chan time.Time { return t.ch }

func (t *timer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	for i, tm := range t.c.timers {
		if tm == t {
			t.c.timers = append(t.c.timers[:i], t.c.timers[i+1:]...)
			return true
		}
	}
	return false
}

// Options configure New.
type Options struct {
	// Store is the engine's store URL (default "memory:"); use
	// "sqlite:"+filepath.Join(t.TempDir(), "x.db") to test on SQLite.
	Store string
	// Start is the virtual time at which the clock starts (default
	// 2030-01-01 00:00 UTC, so tests do not depend on the real date).
	Start time.Time
	// ManualTime stops the clock from skipping ahead on its own.
	ManualTime bool
	// Workers is the engine's worker count (default 4).
	Workers int
}

// Env is an engine on virtual time, closed when the test ends.
type Env struct {
	*docket.Engine
	Clock *Clock
}

// New opens an engine for graphs on a fresh store and a virtual clock. The
// engine is closed when the test ends.
func New(t testing.TB, opts Options, graphs ...*docket.Graph) *Env {
	t.Helper()
	if opts.Start.IsZero() {
		opts.Start = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	if opts.Store == "" {
		opts.Store = "memory:"
	}
	if opts.Workers == 0 {
		opts.Workers = 4
	}
	clock := NewClock(opts.Start)
	clock.manual = opts.ManualTime
	eng, err := docket.Open(context.Background(), docket.Config{
		Store: opts.Store, Graphs: graphs, Clock: clock, Workers: opts.Workers,
		PollInterval: 10 * time.Millisecond, ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatalf("docktest: %v", err)
	}
	t.Cleanup(func() {
		if err := eng.Close(); err != nil {
			t.Errorf("docktest: closing the engine: %v", err)
		}
	})
	return &Env{Engine: eng, Clock: clock}
}
