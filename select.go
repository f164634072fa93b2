package docket

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/docket-run/docket/store"
)

// Selector waits for whichever comes first of several futures and signals
// and runs that case's callback. Build it with AddFuture and AddSignal,
// then call Select, once or in a loop:
//
//	sel := docket.NewSelector()
//	docket.AddFuture(sel, timer, func(time.Time, error) { late = true })
//	docket.AddSignal(sel, "cancel", func(string) { stop = true })
//	if err := sel.Select(ctx); err != nil { ... }
//
// In durable mode each Select is journaled with the case it chose (and a
// signal's payload), so a re-executed step makes the same choices. A step
// whose Select waits only on signals, timers and children is suspended
// while it waits and holds no goroutine; while work started with Go is
// running, the step waits for it in place.
type Selector struct {
	cases []selectCase
}

type selectCase struct {
	fut      *future
	onFuture func()
	signal   string
	onSignal func(d *durableStep, data []byte) error
}

// NewSelector returns an empty Selector.
func NewSelector() *Selector { return &Selector{} }

func (s *Selector) add(c selectCase) { s.cases = append(s.cases, c) }

// AddFuture adds a case that is ready when fut has an outcome; fn gets it.
// A future's case is chosen at most once per Selector.
func AddFuture[T any](s *Selector, fut *Future[T], fn func(T, error)) {
	fu := fut.c
	s.add(selectCase{fut: fu, onFuture: func() {
		if fn != nil {
			fn(result[T](fu))
		}
	}})
}

// AddSignal adds a case that is ready when a signal called name is in the
// execution's inbox; choosing it receives the signal (as Receive would) and
// passes the payload to fn. It stays in the Selector for further signals.
func AddSignal[T any](s *Selector, name string, fn func(T)) {
	s.add(selectCase{signal: name, onSignal: func(d *durableStep, data []byte) error {
		v, err := decodeAs[T](d, data)
		if err != nil {
			return err
		}
		if fn != nil {
			fn(v)
		}
		return nil
	}})
}

// ErrNothingToSelect is returned by Select on a Selector without cases left.
var ErrNothingToSelect = errors.New("docket: the selector has no cases to wait for")

// Select waits until a case is ready, runs its callback and returns. It
// returns an error only when it cannot wait: the context ended (while
// waiting in place), no cases are left, a signal case outside a durable
// execution (ErrNoInbox), or a storage or non-determinism failure.
func (s *Selector) Select(ctx context.Context) error {
	if len(s.cases) == 0 {
		return ErrNothingToSelect
	}
	f, d, err := durableFrame(ctx)
	if err != nil && !errors.Is(err, ErrNotInStep) {
		return err
	}
	if d == nil {
		return s.selectLive(ctx)
	}
	if err := d.applyUpdates(f, ""); err != nil {
		return err
	}
	desc := s.describe()
	e, err := d.next("select", desc)
	if err != nil {
		return err
	}
	pos := d.seq - 1
	if e == nil {
		d.add(store.JournalEntry{Kind: "select", Name: desc})
	}
	for !d.journal[pos].Done {
		d.waitPoint()
		if s.pickLive(d, pos) {
			break
		}
		picked, err := s.pickDurable(f, d, pos)
		if err != nil {
			return err
		}
		if picked {
			break
		}
		if err := s.wait(f, d); err != nil {
			return err
		}
	}
	return s.deliver(d, d.journal[pos].Data)
}

// describe names the cases, for the journal's determinism check.
func (s *Selector) describe() string {
	var b strings.Builder
	for i, c := range s.cases {
		if i > 0 {
			b.WriteByte('|')
		}
		if c.fut != nil {
			b.WriteString(c.fut.describe())
		} else {
			b.WriteString("signal:" + c.signal)
		}
	}
	return b.String()
}

// pickLive chooses the first future case whose outcome is known in
// memory (recorded, or live work that ended, or a timer that is due).
func (s *Selector) pickLive(d *durableStep, pos int) bool {
	for i, c := range s.cases {
		if c.fut != nil && c.fut.poll() {
			s.choose(d, pos, i, nil)
			return true
		}
	}
	return false
}

func (s *Selector) choose(d *durableStep, pos, i int, payload []byte) {
	e := d.journal[pos]
	e.Done, e.Data = true, append([]byte(strconv.Itoa(i)+"\n"), payload...)
	d.journal[pos] = e
	d.dirty = append(d.dirty, pos)
}

// pickDurable looks at children and the inbox, and in one transaction
// records the first ready case: consuming its signal, or recording the
// child's outcome.
func (s *Selector) pickDurable(f *frame, d *durableStep, pos int) (bool, error) {
	type childEnd struct {
		res  any
		cerr error
	}
	ended := map[int]childEnd{}
	signals := false
	for i, c := range s.cases {
		switch {
		case c.fut != nil && c.fut.kind == futureChild && !c.fut.resolved:
			ok, res, cerr, err := c.fut.childOutcome(f)
			if err != nil {
				return false, err
			}
			if ok {
				ended[i] = childEnd{res, cerr}
			}
		case c.fut == nil:
			signals = true
		}
	}
	if !signals && len(ended) == 0 {
		return false, nil
	}
	chosen, consumed := -1, store.Signal{}
	err := d.save(f, f, func(tx store.Tx, rec *store.Step, task *store.Task) error {
		chosen = -1
		var sigs []store.Signal
		if signals {
			var err error
			if sigs, err = tx.Signals(); err != nil {
				return err
			}
		}
		for i, c := range s.cases {
			if _, ok := ended[i]; ok {
				chosen = i
				return nil
			}
			if c.fut != nil {
				continue
			}
			for _, sg := range sigs {
				if sg.ConsumedBy == "" && sg.Name == c.signal {
					sg.ConsumedBy = d.step
					chosen, consumed = i, sg
					return tx.PutSignal(&sg)
				}
			}
		}
		return nil
	})
	if err != nil || chosen < 0 {
		return false, err
	}
	// The choice (and a consumed signal) is stored now; the select entry
	// and a child's outcome are stored with the next save, and a crash
	// before that only makes the step choose again.
	if end, ok := ended[chosen]; ok {
		s.cases[chosen].fut.settleChild(end.res, end.cerr)
		s.choose(d, pos, chosen, nil)
		return true, nil
	}
	s.choose(d, pos, chosen, consumed.Payload.Data)
	if err := d.save(f, f, nil); err != nil {
		return false, fmt.Errorf("docket: recording select: %w", err)
	}
	return true, nil
}

// wait blocks until a case may have become ready: in place while work is
// running, else by suspending the step.
func (s *Selector) wait(f *frame, d *durableStep) error {
	eng := d.w.eng
	wake := forever
	var names, children []string
	for _, c := range s.cases {
		switch {
		case c.fut == nil:
			names = append(names, c.signal)
		case c.fut.kind == futureTimer && !c.fut.resolved && c.fut.wake.Before(wake):
			wake = c.fut.wake
		case c.fut.kind == futureChild && !c.fut.resolved:
			children = append(children, c.fut.child)
		}
	}
	if f.futs != nil && len(f.futs.live) > 0 {
		return d.waitInPlace(f, wake, len(names) > 0 || len(children) > 0)
	}
	what := s.waitString(names, children, wake)
	if len(children) > 0 && wake.After(eng.clock.Now().Add(childPoll)) {
		wake = eng.clock.Now().Add(childPoll)
	}
	recheck := func() {
		// A child that ended while this step was running finds its task
		// leased and passes it by; look again now it is suspended.
		for _, id := range children {
			if x, err := eng.st.Execution(context.Background(), id); err == nil && x.Status.Finished() {
				eng.wakeStep(context.Background(), d.exec.ID, d.step)
				return
			}
		}
	}
	return d.suspendFor(f, wake, what, strings.Join(names, "\n"), recheck)
}

func (s *Selector) waitString(names, children []string, wake time.Time) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, "signal "+n)
	}
	for _, c := range children {
		parts = append(parts, "child "+c)
	}
	if !wake.Equal(forever) {
		parts = append(parts, "timer until "+wake.UTC().Format(time.RFC3339))
	}
	return "select: " + strings.Join(parts, " or ")
}

// waitInPlace waits, holding the goroutine, until live work ends, wake
// passes, a signal arrives (when durable cases watch the inbox), the poll
// interval passes or the step's context ends.
func (d *durableStep) waitInPlace(f *frame, wake time.Time, durable bool) error {
	eng := d.w.eng
	var timerC <-chan time.Time
	if !wake.Equal(forever) {
		t := eng.clock.TimerAt(wake)
		defer t.Stop()
		timerC = t.C()
	}
	var pollC <-chan time.Time
	var sigC chan struct{}
	if durable {
		poll := time.NewTimer(eng.cfg.PollInterval)
		defer poll.Stop()
		pollC = poll.C
		key := signalKey(d.exec.ID)
		sigC = eng.waitChan(key)
		defer eng.dropWait(key, sigC)
	}
	select {
	case <-f.futs.changed:
	case <-timerC:
	case <-pollC:
	case <-sigC:
	case <-f.Done():
		return f.Err()
	}
	return nil
}

// signalKey names the in-process waiters for signals to an execution.
func signalKey(exec string) string { return "signal\x00" + exec }

// deliver runs the callback of the case recorded in data.
func (s *Selector) deliver(d *durableStep, data []byte) error {
	head, payload, _ := strings.Cut(string(data), "\n")
	i, err := strconv.Atoi(head)
	if err != nil || i < 0 || i >= len(s.cases) {
		return &CorruptPayloadError{Type: "select", Err: fmt.Errorf("bad choice %q", head)}
	}
	return s.run(d, i, []byte(payload))
}

func (s *Selector) run(d *durableStep, i int, payload []byte) error {
	c := s.cases[i]
	if c.fut != nil {
		s.cases = append(s.cases[:i:i], s.cases[i+1:]...)
		if !c.fut.resolved && c.fut.done != nil {
			// Chosen before a crash, its work ran again: wait for it.
			<-c.fut.done
		}
		c.fut.poll()
		c.onFuture()
		return nil
	}
	return c.onSignal(d, payload)
}

// selectLive is Select outside a durable execution: futures only.
func (s *Selector) selectLive(ctx context.Context) error {
	for _, c := range s.cases {
		if c.fut == nil {
			return ErrNoInbox
		}
	}
	for {
		for i, c := range s.cases {
			if c.fut.poll() {
				return s.run(nil, i, nil)
			}
		}
		var changed chan struct{}
		for _, c := range s.cases {
			if c.fut.f != nil && c.fut.f.futs != nil {
				changed = c.fut.f.futs.changed
			}
		}
		if changed == nil {
			return ErrNothingToSelect
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// AwaitFirst waits for the first of futs to have an outcome, cancels the
// others, and returns the winner's index and outcome: a race whose losers
// are stopped.
func AwaitFirst[T any](ctx context.Context, futs ...*Future[T]) (int, T, error) {
	var zero T
	s := NewSelector()
	won, val, verr := -1, zero, error(nil)
	for i, fu := range futs {
		AddFuture(s, fu, func(v T, err error) { won, val, verr = i, v, err })
	}
	if err := s.Select(ctx); err != nil {
		return -1, zero, err
	}
	for i, fu := range futs {
		if i != won {
			fu.Cancel()
		}
	}
	return won, val, verr
}
