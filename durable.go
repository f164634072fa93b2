package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/docket-run/docket/codec"
	"github.com/docket-run/docket/store"
)

// taskDeadline fires when an execution's timeout runs out.
const taskDeadline store.TaskKind = "deadline"

// taskSettle tells a finished execution's parent and children (see endTasks).
const taskSettle store.TaskKind = "settle"

// durableStep is the durable side of a step's frame: the task being run,
// the step's journal of durable calls, and the position reached in it.
type durableStep struct {
	w       *worker
	task    store.Task
	exec    *store.Execution
	step    string
	journal []store.JournalEntry // as loaded, then extended by new calls
	loaded  int                  // entries that came from the store
	saved   int                  // entries that are in the store
	dirty   []int                // stored entries changed since (futures, selects)
	seq     int                  // position of the next durable call
	// suspended is set once a durable call has recorded a suspension and
	// is about to end the step's goroutine.
	suspended bool
	nd        error // a non-determinism error, which fails the step whatever it returns
	// broken is the first failure to record a durable call: the attempt is
	// handed back to run again rather than judged on what it returns.
	broken error
	// started is when this attempt began: the step's StartedAt, if it is
	// the first one recorded.
	started time.Time
	// inHandler is set while an update handler runs: handlers run inside
	// a wait and cannot make durable calls of their own.
	inHandler bool
	lastBeat  time.Time
	// query is set when the step is replayed to answer a query: it stops
	// (see waitPoint) where it would make a call not yet journaled or wait,
	// and writes nothing.
	query   bool
	queries map[string]func() (any, error) // handlers registered with HandleQuery
	updates map[string]*updateHandler      // handlers registered with HandleUpdate
}

// waitPoint ends a query replay where the step would go past its journal
// or wait; in a live step it does nothing.
func (d *durableStep) waitPoint() {
	if d.query {
		exitStep()
	}
}

func (d *durableStep) codec() codec.Codec { return d.w.eng.codec }

// replaying reports whether the step is still re-running recorded calls.
func (d *durableStep) replaying() bool { return d.seq < d.loaded }

// next returns the recorded entry for the next durable call, checking that
// the code makes the same call it made before, or nil if the call is new.
func (d *durableStep) next(kind, name string) (*store.JournalEntry, error) {
	if d.nd != nil {
		return nil, d.nd
	}
	if d.inHandler {
		return nil, ErrDurableCallInHandler
	}
	pos := d.seq
	if pos >= len(d.journal) {
		d.waitPoint()
	}
	d.seq++
	if pos >= len(d.journal) {
		return nil, nil
	}
	e := &d.journal[pos]
	if e.Kind != kind || e.Name != name {
		d.nd = &NonDeterminismError{Step: d.step, Position: pos, Recorded: callString(e.Kind, e.Name), Called: callString(kind, name)}
		return nil, d.nd
	}
	return e, nil
}

func callString(kind, name string) string {
	if name == "" {
		return kind + "()"
	}
	return fmt.Sprintf("%s(%q)", kind, name)
}

// add appends the entry of the call just made. It is stored with the next
// save; Run saves at once, because its side effect has happened.
func (d *durableStep) add(e store.JournalEntry) {
	e.Exec, e.Step, e.Seq = d.exec.ID, d.step, len(d.journal)
	d.journal = append(d.journal, e)
}

// writeJournal stores the entries not yet stored, inside tx.
func (d *durableStep) writeJournal(tx store.Tx) error {
	for _, i := range d.dirty {
		if i < d.saved {
			if err := tx.PutJournal(&d.journal[i]); err != nil {
				return err
			}
		}
	}
	for i := d.saved; i < len(d.journal); i++ {
		if err := tx.PutJournal(&d.journal[i]); err != nil {
			return err
		}
	}
	return nil
}

// save stores unsaved journal entries and fresh heartbeat details, and
// applies change to the step record and task, in one transaction fenced by
// the task's lease.
func (d *durableStep) save(ctx context.Context, f *frame, change func(tx store.Tx, rec *store.Step, task *store.Task) error) error {
	if d.query {
		return errors.New("docket: a query replay writes nothing")
	}
	if d.broken != nil {
		// An earlier save failed, and it may have committed all the same
		// (its connection was lost at COMMIT), so the journal in memory
		// may be older than the stored one: writing it could undo what
		// that save recorded, such as a signal taken. The attempt is over.
		return d.broken
	}
	err := d.w.eng.st.Update(ctx, d.exec.ID, func(tx store.Tx) error {
		task, tasks, err := d.w.fenced(tx, d.task.ID)
		if err != nil {
			return err
		}
		if err := d.writeJournal(tx); err != nil {
			return err
		}
		data := f.beatData()
		if change == nil && data == nil {
			return nil
		}
		recs, err := records(tx, f.r.p, d.exec, tasks)
		if err != nil {
			return err
		}
		rec := recs[d.step]
		if rec == nil {
			rec = &store.Step{Name: d.step}
		}
		if data != nil {
			rec.Heartbeat = data
		}
		if change != nil {
			if err := change(tx, rec, task); err != nil {
				return err
			}
		}
		return tx.PutStep(rec)
	})
	if err != nil {
		d.storeFailed(err)
	}
	if err == nil {
		d.saved, d.dirty = len(d.journal), d.dirty[:0]
		if hb := f.hb.Load(); hb != nil {
			hb.mu.Lock()
			hb.dirty = false
			hb.mu.Unlock()
		}
	}
	return err
}

// storeFailed records err, a failure of the store under a durable call
// (a lost connection, say), as the attempt's breakage, and returns it: the
// attempt is then run again from its journal, not failed for it.
func (d *durableStep) storeFailed(err error) error {
	if d.broken == nil {
		d.broken = err
	}
	return err
}

// heartbeat stores heartbeat details, at most once a tenth of a lease.
func (d *durableStep) heartbeat(f *frame) {
	now := time.Now()
	if now.Sub(d.lastBeat) < d.w.eng.cfg.Lease/10 {
		return
	}
	d.lastBeat = now
	if err := d.save(f, f, nil); err != nil {
		Logger(f).Warn("docket: storing heartbeat details failed", "error", err)
	}
}

// beatData encodes the latest heartbeat details, if they changed.
func (f *frame) beatData() []byte {
	hb := f.hb.Load()
	if hb == nil {
		return nil
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if !hb.dirty {
		return nil
	}
	if hb.data == nil && hb.details != nil && f.d != nil {
		b, err := f.d.codec().Marshal(hb.details)
		if err != nil {
			return nil
		}
		hb.data = b
	}
	return hb.data
}

// suspend records that the step waits until wake (for the reason in
// wait), reschedules its task for then, and ends the step's goroutine. The
// step runs again from the top at wake, replaying its journal.
func (d *durableStep) suspend(f *frame, wake time.Time, wait string) error {
	return d.suspendFor(f, wake, wait, "", nil)
}

// suspendFor is suspend that a signal called signal may also end early.
// after, if set, runs once the suspension is recorded, before the step's
// goroutine ends.
func (d *durableStep) suspendFor(f *frame, wake time.Time, wait, signal string, after func()) error {
	d.waitPoint()
	if f.futs != nil && len(f.futs.live) > 0 {
		d.finishLive(f)
	}
	err := d.save(f, f, func(tx store.Tx, rec *store.Step, task *store.Task) error {
		wake := wake // the store may run this more than once
		if signal != "" || len(d.updates) > 0 {
			// A signal or update that arrived since the step looked wakes
			// it at once.
			sigs, err := tx.Signals()
			if err != nil {
				return err
			}
			for _, s := range sigs {
				if s.ConsumedBy == "" && (signal != "" && waitsFor(signal, s.Name) || d.handlesUpdate(s.Name)) {
					wake = d.w.eng.clock.Now()
				}
			}
		}
		rec.Status, rec.Wait, rec.WakeAt, rec.Signal, rec.Worker = store.StepSuspended, wait, wake, signal, d.w.id
		if rec.StartedAt.IsZero() {
			rec.StartedAt = d.started
		}
		if wake.Equal(forever) {
			rec.WakeAt = time.Time{}
		}
		rec.Attempt = f.attempt
		task.ReadyAt, task.Owner, task.LeaseUntil = wake, "", time.Time{}
		task.Attempt, task.Claims = f.attempt, 0 // resuming continues this attempt
		return tx.PutTask(task)
	})
	if err != nil {
		return fmt.Errorf("docket: suspending step %q: %w", d.step, err)
	}
	d.suspended = true
	if after != nil {
		after()
	}
	// No poke here: the slot's release pokes the worker once this task is
	// no longer running, so a task woken at once is claimed afresh.
	exitStep()
	return nil
}

// finishLive waits for the work the step started with Go to end before the
// step suspends, so its outcome is journaled and no goroutine is left.
//
//go:noinline
func (d *durableStep) finishLive(f *frame) {
	live := append([]*future(nil), f.futs.live...)
	for _, fu := range live {
		select {
		case <-fu.done:
		case <-f.Done():
			fu.cancel()
			<-fu.done
		}
		fu.poll()
	}
}

// waitsFor reports whether a step suspended for signals (names separated
// by newlines) waits for the signal name.
func waitsFor(signals, name string) bool {
	for signals != "" {
		var n string
		n, signals, _ = strings.Cut(signals, "\n")
		if n == name {
			return true
		}
	}
	return false
}

func stepRecord(tx store.Tx, name string) (*store.Step, error) {
	steps, err := tx.Steps()
	if err != nil {
		return nil, err
	}
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i], nil
		}
	}
	return &store.Step{Name: name}, nil
}

// planOf compiles the plan of a stored execution.
func (e *Engine) planOf(ix *index, x *store.Execution) (*plan, error) {
	target, err := ix.typeByName(x.Target)
	if err != nil {
		return nil, err
	}
	types := make([]reflect.Type, len(x.Inputs))
	for i, v := range x.Inputs {
		if types[i], err = ix.typeByName(v.Type); err != nil {
			return nil, err
		}
	}
	return ix.planFor(target, types)
}

// servedPlan is the plan of x when its graph is served here and its
// plan compiles, else nil: for reads that describe an execution whatever
// process serves its graph.
func (e *Engine) servedPlan(x *store.Execution) *plan {
	g, err := e.graph(x.Graph)
	if err != nil {
		return nil
	}
	p, _ := e.planOf(g.index(), x)
	return p
}

// load decodes the value in slot si from the execution's inputs or the
// output of the step that produced it.
func (e *Engine) load(p *plan, x *store.Execution, recs map[string]*store.Step, si int32) (any, error) {
	t := p.slots[si].typ
	for k, in := range p.inputs {
		if in == si {
			return e.decode(t, x.Inputs[k].Data)
		}
	}
	for _, pi := range p.slots[si].producers {
		if rec := recs[p.steps[pi].st.name]; rec != nil && rec.Status == store.StepDone && rec.Output != nil {
			return e.decode(t, rec.Output.Data)
		}
	}
	return nil, fmt.Errorf("docket: no value of %s is recorded", t)
}

// runFor makes the run in which step ps of stored execution x executes,
// with the step's inputs decoded from the records.
func (e *Engine) runFor(p *plan, x *store.Execution, recs map[string]*store.Step, ps *pstep) (*run, error) {
	r := &run{ix: p.ix, p: p, cfg: execConfig{id: x.ID}, vals: make([]any, len(p.slots)), cache: e.cache}
	for _, si := range ps.in {
		if r.vals[si] != nil {
			continue
		}
		v, err := e.load(p, x, recs, si)
		if err != nil {
			return nil, err
		}
		r.vals[si] = v
	}
	return r, nil
}

func byName(steps []store.Step) map[string]*store.Step {
	m := make(map[string]*store.Step, len(steps))
	for i := range steps {
		m[steps[i].Name] = &steps[i]
	}
	return m
}

// scheduled adds to recs the ready record of each step that has a step
// task and no record, and returns recs. makeReady writes no record for a
// step it leases to the worker making it ready, which records the step
// when it runs; until then the task alone says that the step is
// scheduled, so every decision that reads records (whether to make a step
// ready, which steps to cancel) reads them through scheduled. p may be nil
// (a graph not served here): the ready times are then unknown.
func scheduled(p *plan, x *store.Execution, recs map[string]*store.Step, tasks []store.Task) map[string]*store.Step {
	unrecorded(p, x, recs, tasks)
	return recs
}

// unrecorded is scheduled, returning the records it added.
func unrecorded(p *plan, x *store.Execution, recs map[string]*store.Step, tasks []store.Task) []*store.Step {
	var added []*store.Step
	for _, t := range tasks {
		if t.Kind != store.TaskStep || recs[t.Step] != nil {
			continue
		}
		rec := readyRecord(p, x, recs, t)
		recs[t.Step] = rec
		added = append(added, rec)
	}
	return added
}

// readyRecord is the ready record of the step of task t, which has none.
func readyRecord(p *plan, x *store.Execution, recs map[string]*store.Step, t store.Task) *store.Step {
	return &store.Step{Name: t.Step, Status: store.StepReady, ReadyAt: readyTime(p, x, recs, t.Step), Worker: t.Worker}
}

// readyTime works out when a step without a record was made ready: in the
// transaction that recorded the last of its inputs' producers (at that
// producer's finish), or, for a step that takes only the execution's
// inputs, when the run started.
func readyTime(p *plan, x *store.Execution, recs map[string]*store.Step, name string) time.Time {
	if p == nil {
		return time.Time{}
	}
	i, ok := p.byName[name]
	if !ok {
		return time.Time{}
	}
	var at time.Time
	for _, si := range p.steps[i].in {
		for _, pi := range p.slots[si].producers {
			if rec := recs[p.steps[pi].st.name]; rec != nil && rec.Status == store.StepDone && rec.FinishedAt.After(at) {
				at = rec.FinishedAt
			}
		}
	}
	if !at.IsZero() {
		return at
	}
	if n := len(x.Runs); n > 0 {
		return x.Runs[n-1].EndedAt
	}
	return x.CreatedAt
}

// stepsAndTasks reads execution id's step records and tasks outside a
// transaction. The tasks come first: a step scheduled without a record
// (see scheduled) that records itself in between is then found by one
// read or the other.
func (e *Engine) stepsAndTasks(ctx context.Context, id string) ([]store.Step, []store.Task, error) {
	tasks, err := e.st.Tasks(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	steps, err := e.st.Steps(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return steps, tasks, nil
}

// records reads the execution's step records in tx, with those of steps
// that have only a task among tasks, the execution's (see scheduled).
func records(tx store.Tx, p *plan, x *store.Execution, tasks []store.Task) (map[string]*store.Step, error) {
	steps, err := tx.Steps()
	if err != nil {
		return nil, err
	}
	return scheduled(p, x, byName(steps), tasks), nil
}

// stepTask runs one attempt (or the resumption) of a step.
func (w *worker) stepTask(ctx context.Context, t store.Task) *store.Task {
	e := w.eng
	// Loading is not interrupted by a cancellation that arrives meanwhile:
	// the task must get as far as recording it.
	lctx := context.WithoutCancel(ctx)
	var (
		x    *store.Execution
		p    *plan
		recs map[string]*store.Step
		ok   bool
	)
	pl := w.takePreload(t.ID)
	if pl != nil {
		// A successor this worker leased when it recorded its predecessor:
		// what that transaction saw and wrote is what there is.
		x, recs = pl.x, pl.recs
		g, err := e.graph(x.Graph)
		if err != nil {
			return nil
		}
		if p, err = e.planOf(g.index(), x); err != nil {
			pl = nil
		}
	}
	var journal []store.JournalEntry // a step just made ready (preloaded) has none yet
	if pl == nil {
		var snap *store.Snapshot
		if snap, _, p, ok = w.load(lctx, t); !ok {
			return nil
		}
		x, recs, journal = snap.Execution, byName(snap.Steps), snap.Journal
	}
	i, ok := p.byName[t.Step]
	if !ok {
		return w.finishWith(ctx, t, fmt.Sprintf("step %q is no longer in graph %q", t.Step, x.Graph))
	}
	rec := recs[t.Step]
	if rec == nil {
		rec = &store.Step{Name: t.Step}
	}
	ps := &p.steps[i]
	if key := ps.st.cfg.affinity; key != "" && t.Worker != w.id {
		if next, run := w.joinSession(lctx, p, t, key); !run {
			return next
		}
		// Joining may have restarted the session: read again.
		snap, err := e.st.Snapshot(lctx, x.ID, t.Step)
		if err != nil {
			return nil
		}
		recs, journal = byName(snap.Steps), snap.Journal
		if rec = recs[t.Step]; rec == nil {
			rec = &store.Step{Name: t.Step}
		}
	}
	r, err := e.runFor(p, x, recs, ps)
	if err != nil {
		return w.finishWith(ctx, t, fmt.Sprintf("step %q cannot start: %v", t.Step, err))
	}
	// Claims beyond the first are attempts that died without recording
	// anything; they count.
	f := &frame{Context: ctx, r: r, ps: ps, attempt: max(t.Attempt, 1) + max(t.Claims-1, 0)}
	if rec.Heartbeat != nil {
		f.hb.Store(&beat{data: rec.Heartbeat})
	}
	d := &durableStep{w: w, task: t, exec: x, step: t.Step, journal: journal, loaded: len(journal), saved: len(journal),
		started: e.clock.Now()}
	f.d = d

	if x.CancelRequested {
		return w.commitStep(ctx, r, f, d, nil, errCancelling)
	}
	if err := crashLimit(f.retryPolicy(), f.attempt, t.Claims); err != nil {
		// Earlier attempts died with their process; a step that keeps
		// killing its worker must not be run forever.
		return w.commitStep(ctx, r, f, d, nil, NonRetryable(err))
	}
	key, out, hit := r.cacheGet(f)
	var runErr error
	if !hit {
		out, runErr = w.attempt(r, f)
		if d.suspended {
			return nil
		}
		if d.nd != nil {
			runErr = NonRetryable(d.nd)
		}
		if runErr == nil {
			r.cachePut(f, key, out)
		}
	}
	if runErr != nil && context.Cause(ctx) == errShutdown {
		w.handBack(t, f, d)
		return nil
	}
	if d.broken != nil && !errors.Is(d.broken, errLeaseLost) {
		// The store failed under a durable call (a lost connection, say):
		// not the step's failure. Run it again, from its journal.
		e.log.Warn("docket: recording a durable call failed; the step will run again", "execution", x.ID, "step", t.Step, "error", d.broken)
		w.handBack(t, f, d)
		return nil
	}
	return w.commitStep(ctx, r, f, d, out, runErr)
}

// attempt runs the attempt on a goroutine of its own, so that a durable
// call can end it with runtime.Goexit when the step suspends.
func (w *worker) attempt(r *run, f *frame) (out any, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		normal := false
		defer func() {
			if !normal && !f.d.suspended {
				err = ErrGoexit
			}
		}()
		out, err = r.attemptOnce(f)
		normal = true
	}()
	<-done
	return out, err
}

// preload is what a worker knows of an execution after recording a step:
// the successor it leased to itself starts from it without reading it back.
type preload struct {
	x    *store.Execution
	recs map[string]*store.Step
}

func (w *worker) keepPreload(task int64, pl *preload) {
	w.mu.Lock()
	w.preloads[task] = pl
	w.mu.Unlock()
}

func (w *worker) takePreload(task int64) *preload {
	w.mu.Lock()
	defer w.mu.Unlock()
	pl := w.preloads[task]
	delete(w.preloads, task)
	return pl
}

// handBack gives back a task whose attempt was interrupted — by shutdown,
// keeping its journal, or by a failure of the store — to run again.
func (w *worker) handBack(t store.Task, f *frame, d *durableStep) {
	giveBack := func(tx store.Tx, _ *store.Step, task *store.Task) error {
		task.Owner, task.LeaseUntil = "", time.Time{}
		task.Attempt, task.Claims = f.attempt, 0 // interrupted, not failed: run it again as this attempt
		return tx.PutTask(task)
	}
	if d.broken == nil {
		// Shut down: the journal in memory is kept with the task.
		_ = d.save(context.Background(), f, giveBack)
		return
	}
	// A save failed: nothing of the attempt's memory is written (see
	// save); the task alone is given back, and the next attempt replays
	// the journal as it is stored.
	_ = w.eng.st.Update(context.Background(), t.Exec, func(tx store.Tx) error {
		task, err := w.fence(tx, t.ID)
		if err != nil {
			return err
		}
		return giveBack(tx, nil, task)
	})
}

// commitStep records an attempt's outcome: the output and the steps it
// makes ready, a retry on a durable timer, or the step's (and maybe the
// execution's) failure — all in one transaction. It returns a successor
// leased to this worker to run next on the same goroutine.
func (w *worker) commitStep(ctx context.Context, r *run, f *frame, d *durableStep, out any, runErr error) *store.Task {
	e := w.eng
	ps := f.ps
	p := r.p
	now := e.clock.Now()
	var outVal *store.Value
	if runErr == nil {
		data, err := e.codec.Marshal(out)
		if err != nil {
			runErr = NonRetryable(fmt.Errorf("its output cannot be encoded: %w", err))
		} else {
			outVal = &store.Value{Type: ps.st.out.String(), Data: data}
		}
	}
	var (
		next     *store.Task
		finished bool
		delay    time.Duration
		retry    bool
	)
	var carry *preload
	var final *store.Execution // the execution as its end was committed
	record := func(tx store.Tx) error {
		next, finished, retry, carry = nil, false, false, nil
		task, tasks, err := w.fenced(tx, d.task.ID)
		if err != nil {
			return err
		}
		if err := d.writeJournal(tx); err != nil {
			return err
		}
		x, err := tx.Execution()
		if err != nil {
			return err
		}
		recs, err := records(tx, p, x, tasks)
		if err != nil {
			return err
		}
		rec := recs[ps.st.name]
		if rec == nil {
			rec = &store.Step{Name: ps.st.name}
			recs[rec.Name] = rec
		}
		rec.Attempt, rec.Worker = f.attempt, w.id
		if data := f.beatData(); data != nil {
			rec.Heartbeat = data
		}
		if rec.StartedAt.IsZero() {
			rec.StartedAt = d.started
		}
		if x.Status.Finished() {
			return tx.DeleteTask(task.ID)
		}
		if x.CancelRequested {
			rec.Status, rec.FinishedAt, rec.Error = store.StepCancelled, now, "execution cancelled"
			if err := putAndDelete(tx, rec, task.ID); err != nil {
				return err
			}
			return settleCancel(e, tx, p, x, recs, now, &finished)
		}
		if runErr == nil {
			if slotFilled(p, recs, ps.out, rec.Name) {
				rec.Status, rec.FinishedAt, rec.Error = store.StepCancelled, now, "another producer won the race"
				return putAndDelete(tx, rec, task.ID)
			}
			x.Seq++
			rec.Status, rec.Output, rec.Seq, rec.FinishedAt = store.StepDone, outVal, x.Seq, now
			rec.Error, rec.Wait, rec.WakeAt = "", "", time.Time{}
			x.UpdatedAt = now
			if ps.out == p.target {
				if err := putAndDelete(tx, rec, task.ID); err != nil {
					return err
				}
				x.Status, x.Result, x.FinishedAt = store.Completed, outVal, now
				finished = true
				if err := endTasks(tx, p, x, now); err != nil {
					return err
				}
				return tx.PutExecution(x)
			}
			if err := tx.PutStep(rec); err != nil {
				return err
			}
			o := w.leaseTo(true, d.task.Queue)
			o.reuse = task
			if next, err = w.schedule(tx, p, recs, ps.out, now, o); err != nil {
				return err
			}
			if next == nil || next.ID != task.ID {
				if err := tx.DeleteTask(task.ID); err != nil {
					return err
				}
			}
			if next != nil {
				carry = &preload{x: x, recs: recs}
			}
			return tx.PutExecution(x)
		}
		if can, ok := asContinue(runErr); ok {
			next, err = w.continueRun(tx, r, x, can, now, d.task.Queue)
			return err
		}
		// The attempt failed: retry on a durable timer, or fail the step.
		rec.Error = runErr.Error()
		if delay, retry = w.retryDelay(f, rec, runErr, now); retry {
			rec.Status, rec.WakeAt = store.StepSuspended, now.Add(delay)
			rec.Wait = fmt.Sprintf("retry backoff after attempt %d", f.attempt)
			task.ReadyAt, task.Owner, task.LeaseUntil = rec.WakeAt, "", time.Time{}
			task.Attempt, task.Claims = f.attempt+1, 0
			if err := truncateFailedCalls(tx, d); err != nil {
				return err
			}
			if err := tx.PutTask(task); err != nil {
				return err
			}
			return tx.PutStep(rec)
		}
		rec.Status, rec.FinishedAt = store.StepFailed, now
		if err := putAndDelete(tx, rec, task.ID); err != nil {
			return err
		}
		if racersLeft(p, recs, ps.out) {
			return nil
		}
		msg := (&StepError{Graph: r.ix.g.name, Step: ps.st.name, Attempts: f.attempt, Err: runErr}).Error()
		return failExecution(e, tx, p, x, recs, msg, now, &finished)
	}
	err := e.st.Update(context.WithoutCancel(ctx), d.exec.ID, func(tx store.Tx) error {
		final = nil
		err := record(tx)
		if err == nil && finished {
			final, err = tx.Execution() // as the store gives it back, and Result would read it
		}
		return err
	})
	if err != nil {
		if !errors.Is(err, errLeaseLost) {
			e.log.Error("docket: recording a step's outcome failed; the step will run again", "execution", d.exec.ID, "step", ps.st.name, "error", err)
		}
		return nil
	}
	d.saved = len(d.journal)
	if carry != nil && next != nil {
		w.keepPreload(next.ID, carry)
	}
	if retry {
		r.retryScheduled(f, f.attempt, runErr, delay)
	}
	if finished {
		e.finished(d.exec.ID, final)
	}
	e.committed()
	return next
}

// retryDelay applies the step's retry policy, and its step timeout, to a
// failed attempt.
func (w *worker) retryDelay(f *frame, rec *store.Step, err error, now time.Time) (time.Duration, bool) {
	delay, ok := f.retryPolicy().next(f.attempt, err)
	if !ok {
		return 0, false
	}
	if st := f.ps.st.cfg.stepTimeout; st > 0 && !rec.ReadyAt.IsZero() && now.Add(delay).Sub(rec.ReadyAt) >= st {
		return 0, false
	}
	return delay, true
}

// truncateFailedCalls forgets the durable calls that failed in this
// attempt, so the next attempt makes them again; successful ones stay.
func truncateFailedCalls(tx store.Tx, d *durableStep) error {
	for i, e := range d.journal {
		if e.Error != "" {
			return tx.TruncateJournal(d.step, i)
		}
	}
	return nil
}

func putAndDelete(tx store.Tx, rec *store.Step, task int64) error {
	if err := tx.PutStep(rec); err != nil {
		return err
	}
	return tx.DeleteTask(task)
}

// slotFilled reports whether a step other than self already produced slot si.
func slotFilled(p *plan, recs map[string]*store.Step, si int32, self string) bool {
	for _, pi := range p.slots[si].producers {
		name := p.steps[pi].st.name
		if rec := recs[name]; name != self && rec != nil && rec.Status == store.StepDone {
			return true
		}
	}
	return false
}

// racersLeft reports whether another producer of slot si may still succeed.
func racersLeft(p *plan, recs map[string]*store.Step, si int32) bool {
	for _, pi := range p.slots[si].producers {
		rec := recs[p.steps[pi].st.name]
		if rec == nil || (rec.Status != store.StepFailed && rec.Status != store.StepCancelled) {
			return true
		}
	}
	return false
}

// schedule makes ready the consumers of slot si whose inputs are now all
// recorded. With eager set, the first of them is leased to this worker and
// returned so the caller can run it at once.
func (w *worker) schedule(tx store.Tx, p *plan, recs map[string]*store.Step, si int32, now time.Time, o offer) (*store.Task, error) {
	var next *store.Task
	for _, c := range p.slots[si].consumers {
		cs := &p.steps[c]
		if recs[cs.st.name] != nil || !inputsReady(p, recs, cs) {
			continue
		}
		if err := makeReady(w.eng, tx, p, recs, c, now, o.unless(next != nil), &next); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// offer says who leases a task that makeReady makes: a worker holding a
// slot of queue, to run the task next on the same goroutine — or nobody.
// reuse, when set, is the task of the step just recorded, which the
// leased task may take over (see makeReady).
type offer struct {
	w     *worker
	queue string
	reuse *store.Task
}

// leaseTo offers tasks of queue to w when lease is true.
func (w *worker) leaseTo(lease bool, queue string) offer {
	if w == nil || !lease {
		return offer{}
	}
	return offer{w: w, queue: queue}
}

// unless withdraws the offer when taken is true (one task per slot).
func (o offer) unless(taken bool) offer {
	if taken {
		return offer{}
	}
	return o
}

// makeReady records step i as ready and queues its task in the step's
// queue, pinned to its session's worker if it has an affinity, and leased
// under o when the offer fits; the leased task is returned through leased.
func makeReady(e *Engine, tx store.Tx, p *plan, recs map[string]*store.Step, i int32, now time.Time, o offer, leased **store.Task) error {
	st := p.steps[i].st
	name := st.name
	if recs[name] != nil {
		return nil
	}
	rec := &store.Step{Name: name, Status: store.StepReady, ReadyAt: now}
	t := &store.Task{Step: name, Kind: store.TaskStep, ReadyAt: now, Attempt: 1, Queue: st.cfg.queue}
	if key := st.cfg.affinity; key != "" {
		t.Worker = sessionOwner(p, recs, key)
		if t.Worker == "" && o.w.serves(t.Queue) {
			t.Worker = o.w.id // the session starts here
		}
		rec.Worker = t.Worker
	}
	recs[name] = rec
	lease := o.w != nil && t.Queue == o.queue && (t.Worker == "" || t.Worker == o.w.id)
	// A step leased here runs at once, and its first record is written
	// when it records something: a ready record now would only be
	// written over then. Its task says it is scheduled (see scheduled). A
	// session's steps keep theirs, which name the session's worker.
	if !lease || st.cfg.affinity != "" {
		if err := tx.PutStep(rec); err != nil {
			return err
		}
	}
	if lease {
		t.Owner, t.LeaseUntil, t.Claims = o.w.id, now.Add(e.cfg.Lease), 1
	}
	if r := o.reuse; lease && r != nil && r.LeaseUntil.After(now.Add(e.cfg.Lease/2)) { // lease: same queue
		// The task of the step just recorded, leased here, carries on as
		// its successor's: a store updates one row, keeping its indexed
		// columns (ready time, lease, queue) as they are — the lease is
		// renewed with the others — rather than deleting one and adding
		// another.
		t.ID, t.Exec, t.ReadyAt, t.LeaseUntil = r.ID, r.Exec, r.ReadyAt, r.LeaseUntil
		if err := tx.PutTask(t); err != nil {
			return err
		}
	} else if err := tx.AddTask(t); err != nil {
		return err
	}
	if lease {
		*leased = t
	}
	return nil
}

// joinSession decides, before a session step runs, whether it runs here.
// A task not yet pinned joins the session's worker: this one if the
// session has none yet (and every task of the session is pinned here), or
// else the task is pinned to that worker and handed back. A task pinned
// to another worker reached this one because that worker died: the
// session is recovered by discarding its steps and starting it again from
// its first steps here; the first of them is returned to run next.
func (w *worker) joinSession(ctx context.Context, p *plan, t store.Task, key string) (next *store.Task, run bool) {
	e := w.eng
	recovered := false
	err := e.st.Update(ctx, t.Exec, func(tx store.Tx) error {
		next, run, recovered = nil, false, false
		task, tasks, err := w.fenced(tx, t.ID)
		if err != nil {
			return err
		}
		x, err := tx.Execution()
		if err != nil {
			return err
		}
		recs, err := records(tx, p, x, tasks)
		if err != nil {
			return err
		}
		owner := sessionOwner(p, recs, key)
		session := map[string]bool{}
		for k := range p.steps {
			if p.steps[k].st.cfg.affinity == key {
				session[p.steps[k].st.name] = true
			}
		}
		now := e.clock.Now()
		switch {
		case task.Worker == "" && owner != "" && owner != w.id:
			// The session lives elsewhere: follow it.
			task.Worker, task.Owner, task.LeaseUntil, task.ReadyAt, task.Claims = owner, "", time.Time{}, now, 0
			return tx.PutTask(task)
		case task.Worker == "" || task.Worker == w.id:
			// The session starts here.
			for _, o := range tasks {
				if o.Kind == store.TaskStep && session[o.Step] && o.Worker == "" {
					o.Worker = w.id
					if err := tx.PutTask(&o); err != nil {
						return err
					}
				}
			}
			rec := recs[t.Step]
			if rec == nil {
				rec = &store.Step{Name: t.Step, Status: store.StepReady, ReadyAt: now}
			}
			rec.Worker, run = w.id, true
			return tx.PutStep(rec)
		}
		// The session's worker died: start the session again here.
		recovered = true
		if err := deleteTasks(tx, func(o store.Task) bool { return o.Kind != store.TaskStep || !session[o.Step] }); err != nil {
			return err
		}
		for name := range session {
			if recs[name] != nil {
				if err := tx.DeleteStep(name); err != nil {
					return err
				}
				delete(recs, name)
			}
		}
		o := offer{w: w, queue: t.Queue}
		for k := range p.steps {
			ps := &p.steps[k]
			if session[ps.st.name] && inputsReady(p, recs, ps) {
				// The first root pins the session here; the others follow it.
				if err := makeReady(e, tx, p, recs, int32(k), now, o.unless(next != nil), &next); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		if !errors.Is(err, errLeaseLost) {
			e.log.Warn("docket: joining a session failed; the task will be tried again", "execution", t.Exec, "step", t.Step, "error", err)
		}
		return nil, false
	}
	if recovered {
		e.log.Warn("docket: the worker of a session died; running the session again from its first steps",
			"execution", t.Exec, "session", key, "dead_worker", t.Worker, "worker", w.id)
	}
	e.committed()
	return next, run
}

// sessionOwner returns the worker of the session key: the worker recorded
// on any of the session's steps.
func sessionOwner(p *plan, recs map[string]*store.Step, key string) string {
	for k := range p.steps {
		st := p.steps[k].st
		if st.cfg.affinity != key {
			continue
		}
		if rec := recs[st.name]; rec != nil && rec.Worker != "" {
			return rec.Worker
		}
	}
	return ""
}

func inputsReady(p *plan, recs map[string]*store.Step, ps *pstep) bool {
	for _, si := range ps.in {
		if p.slots[si].input {
			continue
		}
		done := false
		for _, pi := range p.slots[si].producers {
			if rec := recs[p.steps[pi].st.name]; rec != nil && rec.Status == store.StepDone {
				done = true
			}
		}
		if !done {
			return false
		}
	}
	return true
}

// deleteTasks deletes the execution's tasks, all or those of one kind.
func deleteTasks(tx store.Tx, keep func(store.Task) bool) error {
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	return deleteEach(tx, tasks, keep)
}

// deleteEach deletes tasks, the execution's as tx read them, but those
// that keep (if not nil) keeps.
func deleteEach(tx store.Tx, tasks []store.Task, keep func(store.Task) bool) error {
	for _, t := range tasks {
		if keep != nil && keep(t) {
			continue
		}
		if err := tx.DeleteTask(t.ID); err != nil {
			return err
		}
	}
	return nil
}

// failExecution ends an execution that failed (or was cancelled, or timed
// out): pending steps are cancelled and, if completed steps have
// compensations, a compensation task undoes them before the final status
// is set.
func failExecution(e *Engine, tx store.Tx, p *plan, x *store.Execution, recs map[string]*store.Step, msg string, now time.Time, finished *bool) error {
	if x.Error == "" {
		x.Error = msg
	}
	if err := deleteTasks(tx, func(t store.Task) bool { return t.Kind == store.TaskCompensate }); err != nil {
		return err
	}
	var comps int
	for _, rec := range recs {
		switch rec.Status {
		case store.StepReady, store.StepSuspended, store.StepRunning:
			rec.Status, rec.FinishedAt = store.StepCancelled, now
			if x.CancelRequested {
				rec.Error = "execution cancelled"
			} else {
				rec.Error = "execution failed"
			}
		case store.StepDone:
			if i, ok := p.byName[rec.Name]; ok && p.steps[i].st.cfg.compensate != nil && rec.Comp == "" {
				rec.Comp = store.CompPending
				comps++
			}
		default:
			continue
		}
		if err := tx.PutStep(rec); err != nil {
			return err
		}
	}
	x.UpdatedAt = now
	if comps > 0 {
		if err := tx.AddTask(&store.Task{Kind: store.TaskCompensate, ReadyAt: now}); err != nil {
			return err
		}
		return tx.PutExecution(x)
	}
	return finish(tx, p, x, now, finished)
}

// finish sets a failed or cancelled execution's final status.
func finish(tx store.Tx, p *plan, x *store.Execution, now time.Time, finished *bool) error {
	x.Status, x.FinishedAt, x.UpdatedAt = store.Failed, now, now
	if x.CancelRequested {
		x.Status = store.Cancelled
	}
	*finished = true
	if err := endTasks(tx, p, x, now); err != nil {
		return err
	}
	return tx.PutExecution(x)
}

// endTasks replaces the tasks of an execution that has just ended with a
// settle task when its family must hear of the end: a parent step waits
// for it, or (when it did not complete) children it waits for are to be
// cancelled. Being a task, the telling survives a crash right after the
// end. A step scheduled without a record (see scheduled) keeps its ready
// record, written now, as every other step scheduled and not run keeps
// its own; p may be nil (its ready time is then unknown).
func endTasks(tx store.Tx, p *plan, x *store.Execution, now time.Time) error {
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	if slices.ContainsFunc(tasks, func(t store.Task) bool { return t.Kind == store.TaskStep }) {
		steps, err := tx.Steps()
		if err != nil {
			return err
		}
		for _, rec := range unrecorded(p, x, byName(steps), tasks) {
			if err := tx.PutStep(rec); err != nil {
				return err
			}
		}
	}
	if err := deleteEach(tx, tasks, nil); err != nil {
		return err
	}
	if x.Parent == "" && x.Status == store.Completed {
		return nil
	}
	return tx.AddTask(&store.Task{Kind: taskSettle, ReadyAt: now})
}

// settleCancel finishes a cancellation once no step of the execution is
// running any more.
func settleCancel(e *Engine, tx store.Tx, p *plan, x *store.Execution, recs map[string]*store.Step, now time.Time, finished *bool) error {
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.Kind == store.TaskCompensate {
			return nil // already compensating
		}
		if t.Kind == store.TaskStep && t.Owner != "" && t.LeaseUntil.After(now) {
			return nil // still running somewhere; its commit settles
		}
	}
	return failExecution(e, tx, p, x, recs, "cancelled", now, finished)
}

// finishWith ends the execution of task t now, as failed (or cancelled, if
// that was asked), without compensations: the compensations are done, or
// its code no longer fits what was recorded, or a value cannot be decoded.
// A non-empty msg becomes the execution's error.
func (w *worker) finishWith(ctx context.Context, t store.Task, msg string) *store.Task {
	e := w.eng
	finished := false
	err := e.st.Update(context.WithoutCancel(ctx), t.Exec, func(tx store.Tx) error {
		finished = false
		if _, err := w.fence(tx, t.ID); err != nil {
			return err
		}
		x, err := tx.Execution()
		if err != nil {
			return err
		}
		if msg != "" {
			x.Error = msg
		}
		return finish(tx, nil, x, e.clock.Now(), &finished) // its plan may be what failed
	})
	if err == nil && finished {
		e.finished(t.Exec, nil)
	}
	return nil
}

// load reads what a task needs to run, in one store call: its execution
// (unless finished, in which case the task is dropped), the execution's
// steps and the journal of the task's step; and finds the graph index and
// plan. ok is false when the task was dealt with here.
func (w *worker) load(ctx context.Context, t store.Task) (snap *store.Snapshot, ix *index, p *plan, ok bool) {
	e := w.eng
	var err error
	if snap = w.takeClaimed(t.ID); snap == nil {
		snap, err = e.st.Snapshot(ctx, t.Exec, t.Step)
	}
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			w.dropTask(ctx, t)
		}
		return nil, nil, nil, false // otherwise the lease runs out and it is tried again
	}
	x := snap.Execution
	if x.Status.Finished() {
		w.dropTask(ctx, t)
		return nil, nil, nil, false
	}
	g, err := e.graph(x.Graph)
	if err != nil {
		e.log.Warn("docket: task of a graph this engine does not serve; deferring it", "execution", x.ID, "graph", x.Graph)
		w.deferTask(ctx, t, time.Minute)
		return nil, nil, nil, false
	}
	ix = g.index()
	if p, err = e.planOf(ix, x); err != nil {
		w.finishWith(ctx, t, err.Error())
		return nil, nil, nil, false
	}
	return snap, ix, p, true
}

// crashAllowance is how many claims in a row a step without a retry policy
// may lose to dying workers: a crash is not the step's failure, so it runs
// again, but a step that kills every worker that runs it must end.
const crashAllowance = 10

// crashLimit returns the error that ends a step about to start attempt
// number attempt on its claims-th claim since it last recorded progress
// (a suspension), or nil if it may run. With MaxAttempts, attempts that
// died count against it, as failed ones do. Without, only claims lost in a
// row count: a step that waits for signals and updates for months may see
// many workers die over its life without being the cause.
func crashLimit(p *RetryPolicy, attempt, claims int) error {
	if p == nil || p.MaxAttempts == 0 {
		if lost := claims - 1; lost >= crashAllowance {
			return fmt.Errorf("%d claims in a row ended without a result (their worker died); the step may be killing its workers", lost)
		}
		return nil
	}
	if limit := p.attempts(); limit > 0 && attempt > limit {
		return fmt.Errorf("attempt %d exceeds the %d allowed: earlier attempts ended without a result (their worker died)", attempt, limit)
	}
	return nil
}
