package docket

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docket-run/docket/internal/stack"
	"github.com/docket-run/docket/store"
)

// Causes with which a worker cancels a running step's context.
var (
	errShutdown   = errors.New("docket: worker shutting down")
	errLeaseLost  = errors.New("docket: the task's lease was lost to another worker")
	errCancelling = errors.New("docket: execution cancelled")
)

// worker claims tasks from the store and runs them, at most a queue's
// limit at a time from each queue it serves. It holds no state about
// executions between tasks: a step that suspends leaves nothing behind but
// its rows.
type worker struct {
	eng    *Engine
	id     string
	queues map[string]*queueSlots
	order  []*queueSlots // the queues in claiming order
	wake   chan struct{}

	mu       sync.Mutex
	stopping bool // set by stop: no new task goroutines
	active   map[int64]*activeTask
	// reclaimed holds tasks claimed again while this worker was still
	// finishing them, with their claim count then (see reclaimLater).
	reclaimed map[int64]int
	// preloads holds, by task, what the worker saw when it leased a
	// successor to itself (see preload).
	preloads map[int64]*preload
	// claimed holds, by task, what the store read with the claim
	// (store.Claimed.Snapshots), until the task's run takes it.
	claimed map[int64]*store.Snapshot

	ctx      context.Context // ends when the worker stops claiming
	stopLoop context.CancelFunc
	drained  chan struct{} // closed once stopped and no task runs
	tasks    sync.WaitGroup
	loops    sync.WaitGroup
}

// queueSlots holds one token per running task of a queue.
type queueSlots struct {
	name  string
	cap   int
	slots chan struct{}
	// wanting is set while tasks of the queue may wait for a free slot:
	// from before the claim loop counts the free slots until a claim
	// leaves some unused. Only then does a released slot wake the loop
	// (or when an IdleClock must hear that the worker fell idle); otherwise
	// each task's end would cost the store an empty claim.
	wanting atomic.Bool
}

type activeTask struct {
	exec   string
	kind   store.TaskKind
	cancel context.CancelCauseFunc
}

func newWorker(e *Engine, id string, queues map[string]int) *worker {
	w := &worker{eng: e, id: id, queues: map[string]*queueSlots{}, wake: make(chan struct{}, 1),
		active: map[int64]*activeTask{}, reclaimed: map[int64]int{}, preloads: map[int64]*preload{}, claimed: map[int64]*store.Snapshot{}, drained: make(chan struct{})}
	for name, n := range queues {
		q := &queueSlots{name: name, cap: n, slots: make(chan struct{}, n)}
		w.queues[name] = q
		w.order = append(w.order, q)
	}
	slices.SortFunc(w.order, func(a, b *queueSlots) int { return strings.Compare(a.name, b.name) })
	w.ctx, w.stopLoop = context.WithCancel(context.Background())
	return w
}

// serves reports whether the worker runs tasks of queue q.
func (w *worker) serves(q string) bool { return w != nil && w.queues[q] != nil }

// busy reports whether any task runs.
func (w *worker) busy() bool {
	for _, q := range w.order {
		if len(q.slots) > 0 {
			return true
		}
	}
	return false
}

func (w *worker) start() {
	// Say this worker is alive before it claims anything, so sessions
	// pinned to it are not taken for orphans.
	if _, err := w.eng.st.ExtendLeases(w.ctx, w.id, nil, w.eng.clock.Now().Add(w.eng.cfg.Lease)); err != nil {
		w.eng.log.Warn("docket: registering the worker failed", "worker", w.id, "error", err)
	}
	w.loops.Add(2)
	go func() { defer w.loops.Done(); w.claimLoop() }()
	go func() { defer w.loops.Done(); w.leaseLoop() }()
}

// track counts a task about to run on a goroutine of its own, unless the
// worker is stopping. Counting and the stop's flag share the mutex, so no
// task is counted once stop waits for the count to drain.
func (w *worker) track() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopping {
		return false
	}
	w.tasks.Add(1)
	return true
}

// stopWait bounds the calls to the store that a stopping worker still
// makes: the claim in flight, handing tasks back.
const stopWait = 5 * time.Second

// giveBack releases the leases of tasks the stopping worker will not run,
// so another worker takes them at once rather than after the lease.
func (w *worker) giveBack(ts ...store.Task) {
	if len(ts) == 0 {
		return
	}
	ids := make([]int64, len(ts))
	for i, t := range ts {
		ids[i] = t.ID
		w.takeClaimed(t.ID)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	_ = w.eng.st.Release(ctx, w.id, ids)
}

// stop ends claiming, lets running tasks finish for up to grace, then
// cancels them; their tasks are handed back, not failed.
func (w *worker) stop(grace time.Duration) {
	w.stopLoop()
	w.mu.Lock()
	w.stopping = true
	w.mu.Unlock()
	done := make(chan struct{})
	go func() { w.tasks.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		w.mu.Lock()
		for _, a := range w.active {
			a.cancel(errShutdown)
		}
		w.mu.Unlock()
		<-done
	}
	close(w.drained)
	w.loops.Wait()
}

// interrupted reports whether err is the end of work that the worker's
// shutdown cut short: such an outcome is not recorded, so that the step's
// next attempt (on this or another worker) does the work again.
func interrupted(f *frame, err error) bool {
	return err != nil && context.Cause(f) == errShutdown
}

// poke wakes the claim loop.
func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// takeClaimed returns what the store read of task id with its claim, or
// nil.
func (w *worker) takeClaimed(id int64) *store.Snapshot {
	w.mu.Lock()
	defer w.mu.Unlock()
	snap := w.claimed[id]
	delete(w.claimed, id)
	return snap
}

// tryAcquire takes a slot of queue q if one is free, for a task this
// process leases itself (eager start).
func (w *worker) tryAcquire(q string) bool {
	qs := w.queues[q]
	if qs == nil || w.ctx.Err() != nil {
		return false
	}
	select {
	case qs.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (w *worker) releaseSlot(q string) {
	qs := w.queues[q]
	<-qs.slots
	if _, virtual := w.eng.clock.(IdleClock); virtual || qs.wanting.Load() {
		w.poke()
	}
}

// launch runs a task (and the tasks it hands on) on a new goroutine; the
// caller holds a slot for it.
func (w *worker) launch(t store.Task) {
	if !w.track() {
		w.releaseSlot(t.Queue)
		w.giveBack(t)
		return
	}
	go w.runTask(t, false)
}

// runTask is the goroutine of a task that launch (held false: the caller
// holds its slot) or launchHeld (held: it waits for a slot) started: it
// runs the task and the tasks it hands on.
func (w *worker) runTask(t store.Task, held bool) {
	stack.Grow() // a task goes deep: its step, then its commit, often leading a group
	defer w.tasks.Done()
	if held {
		w.queues[t.Queue].slots <- struct{}{}
	}
	defer w.releaseSlot(t.Queue)
	for next := &t; next != nil; {
		next = w.run(*next)
	}
	if !held {
		w.takeClaimed(t.ID) // if its run did not need it
	}
}

func (w *worker) claimLoop() {
	e := w.eng
	defer w.stopWaiting()
	for w.ctx.Err() == nil {
		// One reading of the clock for the claim and the wait: with a later
		// reading, a clock moved in between could hide a task that became
		// ready after the claim and before that reading.
		now := e.clock.Now()
		claimed, more := 0, false
		var next nextReady // from the last claim, when the store tells it
		for _, q := range w.order {
			q.wanting.Store(true) // before counting: a slot released later wakes the loop
			free := q.cap - len(q.slots)
			if free <= 0 {
				continue
			}
			tasks, err := w.claim(q.name, now, free, &next)
			if w.ctx.Err() != nil {
				// Stopped meanwhile: what the claim took is not for this
				// worker to run, but a task still running here stays with
				// its run (see reclaimLater).
				var back []store.Task
				for _, t := range tasks {
					if !w.reclaimLater(t) {
						back = append(back, t)
					}
				}
				w.giveBack(back...)
				return
			}
			if err != nil {
				e.log.Error("docket: claiming tasks failed", "worker", w.id, "queue", q.name, "error", err)
			}
			reclaimed := 0
			for _, t := range tasks {
				if w.reclaimLater(t) {
					reclaimed++
					continue
				}
				q.slots <- struct{}{}
				w.launch(t)
			}
			claimed += len(tasks) - reclaimed
			if len(tasks) < free && err == nil {
				q.wanting.Store(false) // none left to wait for a slot
			}
			more = more || len(tasks)-reclaimed == free
		}
		if more {
			continue // there may be more
		}
		wake := now.Add(e.cfg.PollInterval)
		if !next.known {
			if at, ok, err := e.st.NextReadyAt(w.ctx, now); err == nil {
				next = nextReady{known: true, ok: ok, at: at}
			}
		}
		if at := next.at; next.known && next.ok {
			if at.Before(wake) {
				wake = at
			}
			// Tasks that only a signal wakes sit at forever: no clock
			// reaches it, a virtual one included.
			if ic, ok := e.clock.(IdleClock); ok && claimed == 0 && !w.busy() && at.Before(forever) && ic.Idle(at) {
				continue
			}
		}
		t := e.clock.TimerAt(wake)
		select {
		case <-w.ctx.Done():
		case <-w.wake:
		case <-t.C():
		}
		t.Stop()
	}
}

// stopWaiting tells a store that hands tasks to waiting workers (see
// store/postgres) that this one, which has stopped claiming, waits for
// none: a claim with no slot free.
func (w *worker) stopWaiting() {
	nc, ok := w.eng.st.(store.NextClaimer)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopWait)
	defer cancel()
	for _, q := range w.order {
		_, _ = nc.ClaimNext(ctx, w.id, q.name, w.eng.clock.Now(), w.eng.cfg.Lease, 0)
	}
}

// nextReady is the answer of Store.NextReadyAt, once known.
type nextReady struct {
	known, ok bool
	at        time.Time
}

// claim claims up to limit tasks of queue. A store that can also tell when
// the next task will be ready does so in the same round trip, into next.
func (w *worker) claim(queue string, now time.Time, limit int, next *nextReady) ([]store.Task, error) {
	e := w.eng
	// The worker's stop does not cut a claim short (it has stopWait more):
	// the store may have committed it already, and a claim whose answer is
	// lost leaves its tasks leased to a worker that will never run them,
	// for a whole lease. The claim loop hands back what a claim returns
	// after the stop.
	ctx, cancel := context.WithCancel(context.WithoutCancel(w.ctx))
	defer cancel()
	defer context.AfterFunc(w.ctx, func() { time.AfterFunc(stopWait, cancel) })()
	nc, ok := e.st.(store.NextClaimer)
	if !ok {
		return e.st.Claim(ctx, w.id, queue, now, e.cfg.Lease, limit)
	}
	c, err := nc.ClaimNext(ctx, w.id, queue, now, e.cfg.Lease, limit)
	if err == nil {
		*next = nextReady{known: true, ok: c.HasNext, at: c.Next}
		if len(c.Snapshots) > 0 {
			w.mu.Lock()
			for id, snap := range c.Snapshots {
				w.claimed[id] = snap
			}
			w.mu.Unlock()
		}
	}
	return c.Tasks, err
}

// leaseLoop extends the leases of running tasks, cancels those whose lease
// was lost, and passes on cancellation requested by other processes.
func (w *worker) leaseLoop() {
	e := w.eng
	every := e.cfg.Lease / 3
	for {
		// This runs until the running tasks have drained after stop, not
		// merely until claiming stops: leases must outlive their tasks.
		t := e.clock.TimerAt(e.clock.Now().Add(every))
		select {
		case <-w.drained:
			t.Stop()
			return
		case <-t.C():
		}
		// Extending with no tasks still tells the store this worker is
		// alive, which keeps the sessions pinned to it.
		active := w.snapshot()
		ids := make([]int64, 0, len(active))
		execs := map[string]bool{}
		for id, a := range active {
			ids = append(ids, id)
			if a.kind == store.TaskStep {
				execs[a.exec] = true
			}
		}
		ctx := context.Background()
		lost, err := e.st.ExtendLeases(ctx, w.id, ids, e.clock.Now().Add(e.cfg.Lease))
		if err != nil {
			e.log.Error("docket: extending leases failed", "worker", w.id, "error", err)
			continue
		}
		for _, id := range lost {
			if a := active[id]; a != nil {
				a.cancel(errLeaseLost)
			}
		}
		for id := range execs {
			if x, err := e.st.Execution(ctx, id); err == nil && x.CancelRequested {
				w.cancelExec(id, errCancelling)
			}
		}
	}
}

func (w *worker) snapshot() map[int64]*activeTask {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[int64]*activeTask, len(w.active))
	for k, v := range w.active {
		out[k] = v
	}
	return out
}

// reclaimLater handles a claimed task that this worker is still running:
// one that has just suspended and become ready again at once, or whose
// lease ran out while it runs. The claim is noted, and when the running
// task ends, run looks again: if the task is still leased to this worker
// under that same claim, the run that ended did not touch it, and it runs
// now; otherwise the claim is moot.
func (w *worker) reclaimLater(t store.Task) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.active[t.ID] == nil {
		return false
	}
	w.reclaimed[t.ID] = t.Claims
	delete(w.claimed, t.ID) // read for a run that is not this one
	return true
}

// takeReclaimed returns task id for another run if reclaimLater noted it
// and it is still leased to this worker under the noted claim.
func (w *worker) takeReclaimed(exec string, id int64) *store.Task {
	w.mu.Lock()
	claims, ok := w.reclaimed[id]
	delete(w.reclaimed, id)
	w.mu.Unlock()
	if !ok {
		return nil
	}
	tasks, err := w.eng.st.Tasks(context.Background(), exec)
	if err != nil {
		return nil
	}
	for _, t := range tasks {
		if t.ID == id && t.Owner == w.id && t.Claims == claims {
			return &t
		}
	}
	return nil
}

// cancelExec cancels this worker's running steps of one execution.
func (w *worker) cancelExec(exec string, cause error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.active {
		if a.exec == exec && a.kind == store.TaskStep {
			a.cancel(cause)
		}
	}
}

// run runs one task and returns the task to continue with on this
// goroutine, if committing it made one ready for us.
func (w *worker) run(t store.Task) *store.Task {
	ctx, cancel := context.WithCancelCause(context.Background())
	w.mu.Lock()
	w.active[t.ID] = &activeTask{exec: t.Exec, kind: t.Kind, cancel: cancel}
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.active, t.ID)
		w.mu.Unlock()
		cancel(nil)
	}()
	var next *store.Task
	switch t.Kind {
	case store.TaskStep:
		next = w.stepTask(ctx, t)
	case store.TaskCompensate:
		next = w.compensateTask(ctx, t)
	case taskDeadline:
		w.deadlineTask(ctx, t)
	case taskSettle:
		w.settleTask(ctx, t)
	default:
		w.eng.log.Error("docket: unknown task kind; dropping it", "kind", t.Kind, "execution", t.Exec)
		w.dropTask(ctx, t)
	}
	w.mu.Lock()
	delete(w.active, t.ID) // before looking for a claim made meanwhile
	w.mu.Unlock()
	if again := w.takeReclaimed(t.Exec, t.ID); again != nil {
		if next != nil {
			w.launchHeld(*next)
		}
		return again
	}
	return next
}

// launchHeld runs a task this worker already leased on a goroutine of its
// own, waiting for a slot.
func (w *worker) launchHeld(t store.Task) {
	if !w.track() {
		w.giveBack(t)
		return
	}
	go w.runTask(t, true)
}

// fence fails the transaction unless this worker still holds task id.
func (w *worker) fence(tx store.Tx, id int64) (*store.Task, error) {
	t, _, err := w.fenced(tx, id)
	return t, err
}

// fenced is fence, also returning the execution's tasks that it read.
func (w *worker) fenced(tx store.Tx, id int64) (*store.Task, []store.Task, error) {
	tasks, err := tx.Tasks()
	if err != nil {
		return nil, nil, err
	}
	for i := range tasks {
		if tasks[i].ID == id {
			if tasks[i].Owner != w.id {
				return nil, nil, errLeaseLost
			}
			return &tasks[i], tasks, nil
		}
	}
	return nil, nil, errLeaseLost
}

func (w *worker) dropTask(ctx context.Context, t store.Task) {
	_ = w.eng.st.Update(ctx, t.Exec, func(tx store.Tx) error {
		if _, err := w.fence(tx, t.ID); err != nil {
			return err
		}
		return tx.DeleteTask(t.ID)
	})
}

// deferTask hands a task back to be looked at again after d.
func (w *worker) deferTask(ctx context.Context, t store.Task, d time.Duration) {
	_ = w.eng.st.Update(ctx, t.Exec, func(tx store.Tx) error {
		task, err := w.fence(tx, t.ID)
		if err != nil {
			return err
		}
		task.Owner, task.LeaseUntil, task.ReadyAt, task.Claims = "", time.Time{}, w.eng.clock.Now().Add(d), 0
		return tx.PutTask(task)
	})
}
