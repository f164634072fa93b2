package docket

import (
	"context"
	"errors"
	"time"

	"github.com/docket-run/docket/store"
)

// Child graphs. A step calls another graph with Call; in a durable
// execution the child is an execution of its own — recorded, visible in
// List and Describe, durable on its own — with an ID derived from the
// parent's: "<parent>/<step>/<key>". The parent step suspends until the
// child ends, and then gets its result or its error.

// childPoll is how often a parent waiting for a child looks at it even if
// nothing woke it: the fallback for a process that died between finishing
// the child and waking the parent.
const childPoll = time.Hour

// CallOption configures Call; pass it among Call's inputs.
type CallOption interface{ applyCall(*callConfig) }

type callConfig struct{ abandon bool }

type callFunc func(*callConfig)

func (f callFunc) applyCall(c *callConfig) { f(c) }

// Abandon makes a child outlive its parent: by default, when the parent
// execution fails or is cancelled, the children it is still waiting for are
// cancelled too; an abandoned child runs on.
func Abandon() CallOption { return callFunc(func(c *callConfig) { c.abandon = true }) }

// Call runs the child graph to produce an Out from inputs and returns it.
// key tells apart the calls a step makes (use "" for a single call). In a
// durable execution the child is a durable execution of its own (its graph
// must be registered with the engine), started once however often the step
// re-executes; the calling step suspends until it ends. A child that fails
// or is cancelled returns an *ExecutionError. Outside a durable execution
// the child runs in-process, as Execute would run it.
func Call[Out any](ctx context.Context, child *Graph, key string, inputs ...any) (Out, error) {
	return CallAsync[Out](ctx, child, key, inputs...).Get(ctx)
}

// ChildStep registers, in g, a step that takes an In and runs the child
// graph on it to produce an Out: a child graph as a node of its parent. It
// is named "child:<child graph>" unless a Name option says otherwise.
func ChildStep[In, Out any](g *Graph, child *Graph, opts ...StepOption) {
	Register1(g, func(ctx context.Context, in In) (Out, error) {
		return Call[Out](ctx, child, "", in)
	}, append([]StepOption{Name("child:" + child.name)}, opts...)...)
}

// settleTask tells a finished execution's family that it ended: the parent
// step waiting for it is woken, and if it did not complete, the children
// it was waiting for (unless abandoned) are cancelled. While the parent's
// step is running it cannot be woken (it looks at the child itself when it
// next waits); the task then tries again, later and later.
func (w *worker) settleTask(ctx context.Context, t store.Task) {
	e := w.eng
	busy, err := e.settleFamily(ctx, t.Exec)
	switch {
	case err != nil:
		e.log.Warn("docket: telling an ended execution's parent or children failed; trying again", "execution", t.Exec, "error", err)
		w.deferTask(ctx, t, time.Second)
	case busy:
		t.Attempt++
		w.retrySettle(ctx, t, min(time.Second<<min(t.Attempt, 6), time.Minute))
	default:
		w.dropTask(ctx, t)
	}
}

// retrySettle hands a settle task back, counting its tries, to run after d.
func (w *worker) retrySettle(ctx context.Context, t store.Task, d time.Duration) {
	_ = w.eng.st.Update(ctx, t.Exec, func(tx store.Tx) error {
		task, err := w.fence(tx, t.ID)
		if err != nil {
			return err
		}
		task.Owner, task.LeaseUntil, task.ReadyAt, task.Claims, task.Attempt = "", time.Time{}, w.eng.clock.Now().Add(d), 0, t.Attempt
		return tx.PutTask(task)
	})
}

// settleFamily acts on execution id having finished: it wakes the parent
// step waiting for it, and if it did not complete, cancels the children it
// was waiting for that were not abandoned. busy reports that the parent's
// step could not be woken because it is running.
func (e *Engine) settleFamily(ctx context.Context, id string) (busy bool, err error) {
	x, err := e.st.Execution(ctx, id)
	if err != nil {
		return false, err
	}
	if x.Parent != "" {
		if busy, err = e.wakeStep(ctx, x.Parent, x.ParentStep); err != nil {
			return false, err
		}
	}
	if x.Status == store.Completed {
		return busy, nil
	}
	steps, err := e.st.Steps(ctx, id)
	if err != nil {
		return false, err
	}
	for _, s := range steps {
		j, err := e.st.Journal(ctx, id, s.Name)
		if err != nil {
			return false, err
		}
		for _, entry := range j {
			if entry.Kind != "call" || entry.Done || string(entry.Data) == "abandon" {
				continue
			}
			_, key, _ := cut(entry.Name)
			if err := e.Cancel(ctx, id+"/"+s.Name+"/"+key); err != nil && !isFinishedOrMissing(err) {
				return false, err
			}
		}
	}
	return busy, nil
}

// cut splits a call entry's name "graph:key".
func cut(name string) (graph, key string, ok bool) {
	for i := 0; i < len(name); i++ {
		if name[i] == ':' {
			return name[:i], name[i+1:], true
		}
	}
	return name, "", false
}

func isFinishedOrMissing(err error) bool {
	var fe *FinishedError
	var nf *NotFoundError
	return errors.As(err, &fe) || errors.As(err, &nf)
}

// wakeStep makes the suspended step of execution id ready to run now. busy
// reports that the step's task is leased (the step is running), so it was
// left alone.
func (e *Engine) wakeStep(ctx context.Context, id, step string) (busy bool, err error) {
	// The wake-up is owed to the step even if the caller stops waiting.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err = e.st.Update(ctx, id, func(tx store.Tx) error {
		busy = false
		tasks, err := tx.Tasks()
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if t.Kind != store.TaskStep || t.Step != step {
				continue
			}
			if t.Owner != "" {
				busy = true
				return nil
			}
			t.ReadyAt, t.Claims = e.clock.Now(), 0
			return tx.PutTask(&t)
		}
		return nil
	})
	if err != nil {
		e.log.Warn("docket: waking a suspended step failed; it looks again at its next timer", "execution", id, "step", step, "error", err)
		return false, err
	}
	e.committed()
	return busy, nil
}
