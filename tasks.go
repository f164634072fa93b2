package docket

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/docket-run/docket/store"
)

// The worker's tasks other than steps: compensations and deadlines.

// compensateTask runs the next pending compensation of a failed execution,
// newest completed step first.
func (w *worker) compensateTask(ctx context.Context, t store.Task) *store.Task {
	e := w.eng
	snap, ix, p, ok := w.load(ctx, t)
	if !ok {
		return nil
	}
	x, steps := snap.Execution, snap.Steps
	var pending []*store.Step
	for i := range steps {
		if steps[i].Comp == store.CompPending {
			pending = append(pending, &steps[i])
		}
	}
	slices.SortFunc(pending, func(a, b *store.Step) int { return int(b.Seq - a.Seq) })
	if len(pending) == 0 {
		return w.finishWith(ctx, t, "")
	}
	rec := pending[0]
	i, ok := p.byName[rec.Name]
	if !ok || rec.Output == nil {
		return w.finishWith(ctx, t, fmt.Sprintf("cannot compensate step %q: it is no longer in the graph", rec.Name))
	}
	ps := &p.steps[i]
	r := &run{ix: ix, p: p, cfg: execConfig{id: x.ID}}
	f := &frame{Context: ctx, r: r, ps: ps, attempt: rec.CompAttempt + 1}
	cerr := error(nil)
	out, derr := e.decode(ps.st.out, rec.Output.Data)
	if derr != nil {
		cerr = NonRetryable(derr)
	} else {
		var cctx context.Context = f
		if ps.timeout > 0 {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(cctx, ps.timeout)
			defer cancel()
		}
		cerr = compensateOnce(cctx, ps.st.cfg.compensate, out)
	}
	now := e.clock.Now()
	var next *store.Task
	err := e.st.Update(context.WithoutCancel(ctx), x.ID, func(tx store.Tx) error {
		next = nil
		task, err := w.fence(tx, t.ID)
		if err != nil {
			return err
		}
		cur, err := stepRecord(tx, rec.Name)
		if err != nil {
			return err
		}
		cur.CompAttempt = f.attempt
		task.ReadyAt = now
		switch delay, retry := f.retryPolicy().next(f.attempt, cerr); {
		case cerr == nil:
			cur.Comp, cur.CompError = store.CompDone, ""
			next = task
		case retry:
			cur.CompError = cerr.Error()
			task.ReadyAt, task.Owner, task.LeaseUntil, task.Claims = now.Add(delay), "", time.Time{}, 0
		default:
			cur.Comp, cur.CompError = store.CompFailed, cerr.Error()
			next = task
		}
		if next != nil {
			task.LeaseUntil, task.Claims = now.Add(e.cfg.Lease), 1
		}
		if err := tx.PutTask(task); err != nil {
			return err
		}
		return tx.PutStep(cur)
	})
	if err != nil {
		return nil
	}
	if next == nil {
		w.eng.committed()
	}
	return next
}

// deadlineTask fails an execution whose timeout ran out.
func (w *worker) deadlineTask(ctx context.Context, t store.Task) {
	e := w.eng
	snap, _, p, ok := w.load(ctx, t)
	if !ok {
		return
	}
	x := snap.Execution
	finished := false
	err := e.st.Update(ctx, x.ID, func(tx store.Tx) error {
		finished = false
		_, tasks, err := w.fenced(tx, t.ID)
		if err != nil {
			return err
		}
		x, err := tx.Execution()
		if err != nil || x.Status.Finished() {
			return err
		}
		recs, err := records(tx, p, x, tasks)
		if err != nil {
			return err
		}
		msg := fmt.Sprintf("execution timed out after %s", x.Deadline.Sub(x.CreatedAt))
		return failExecution(e, tx, p, x, recs, msg, e.clock.Now(), &finished)
	})
	if err == nil {
		w.cancelExec(x.ID, errCancelling)
		if finished {
			e.finished(x.ID, nil)
		}
	}
}
