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

// settleFamily acts on execution id having finished: it wakes the parent
// step waiting for it, and if it did not complete, cancels the children it
// was waiting for that were not abandoned.
func (e *Engine) settleFamily(id string) {
	ctx := context.Background()
	x, err := e.st.Execution(ctx, id)
	if err != nil {
		return
	}
	if x.Parent != "" {
		e.wakeStep(ctx, x.Parent, x.ParentStep)
	}
	if x.Status == store.Completed {
		return
	}
	steps, err := e.st.Steps(ctx, id)
	if err != nil {
		return
	}
	for _, s := range steps {
		j, err := e.st.Journal(ctx, id, s.Name)
		if err != nil {
			continue
		}
		for _, entry := range j {
			if entry.Kind != "call" || entry.Done || string(entry.Data) == "abandon" {
				continue
			}
			_, key, _ := cut(entry.Name)
			child := id + "/" + s.Name + "/" + key
			if err := e.Cancel(ctx, child); err != nil && !isFinishedOrMissing(err) {
				e.log.Warn("docket: cancelling a child failed", "parent", id, "child", child, "error", err)
			}
		}
	}
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

// wakeStep makes the suspended step of execution id ready to run now.
func (e *Engine) wakeStep(ctx context.Context, id, step string) {
	// The wake-up is owed to the step even if the caller stops waiting.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	err := e.st.Update(ctx, id, func(tx store.Tx) error {
		tasks, err := tx.Tasks()
		if err != nil {
			return err
		}
		for _, t := range tasks {
			if t.Kind == store.TaskStep && t.Step == step && t.Owner == "" {
				t.ReadyAt, t.Claims = e.clock.Now(), 0
				return tx.PutTask(&t)
			}
		}
		return nil
	})
	if err != nil {
		e.log.Warn("docket: waking a suspended step failed; it looks again at its next timer", "execution", id, "step", step, "error", err)
		return
	}
	e.pokeWorker()
}
