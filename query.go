package docket

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/docket-run/docket/store"
)

// Queries read a durable execution's state without changing it. Built-in
// queries answer from the records (QueryStatus, QueryOutputs, QueryWaiting);
// a step can answer its own with HandleQuery. Docket answers those by
// replaying the step from its journal in this process, without side
// effects: recorded calls return what they returned, and the replay stops
// where the step waits or where its journal ends, before anything new
// happens. So a query sees the step as of its last durable call, running or
// suspended, and never races with the step itself.

// Built-in query names.
const (
	QueryStatus  = "docket.status"  // string: running, compensating, completed, failed or cancelled
	QueryOutputs = "docket.outputs" // map[string]any: the decoded outputs of completed steps
	QueryWaiting = "docket.waiting" // []string: what the execution waits on
)

// HandleQuery registers fn as the calling step's answer to the query name.
// Register handlers before the step's first durable wait (typically at the
// top), and keep fn free of side effects: it runs on a replay of the step.
// Outside a durable step it does nothing.
func HandleQuery[T any](ctx context.Context, name string, fn func() (T, error)) {
	f := frameOf(ctx)
	if f == nil || f.d == nil || !f.d.query {
		return
	}
	if f.d.queries == nil {
		f.d.queries = map[string]func() (any, error){}
	}
	f.d.queries[name] = func() (any, error) { return fn() }
}

// UnknownQueryError reports a query that no step of the execution answers.
type UnknownQueryError struct {
	ID   string
	Name string
}

func (e *UnknownQueryError) Error() string {
	return fmt.Sprintf("docket: no step of execution %q answers query %q (is HandleQuery called before the step waits?)", e.ID, e.Name)
}

// QueryTypeError reports a query answer of another type than asked for.
type QueryTypeError struct {
	Name string
	Want reflect.Type
	Got  reflect.Type
}

func (e *QueryTypeError) Error() string {
	return fmt.Sprintf("docket: query %q answers a %v, not a %s", e.Name, e.Got, e.Want)
}

// Query asks execution id the query name and returns the answer.
func Query[T any](ctx context.Context, eng *Engine, id, name string) (T, error) {
	var zero T
	v, err := eng.query(ctx, id, name)
	if err != nil {
		return zero, err
	}
	out, ok := v.(T)
	if !ok && v != nil {
		return zero, &QueryTypeError{Name: name, Want: reflect.TypeFor[T](), Got: reflect.TypeOf(v)}
	}
	return out, nil
}

func (e *Engine) query(ctx context.Context, id, name string) (any, error) {
	switch name {
	case QueryStatus, QueryOutputs, QueryWaiting:
		d, err := e.Describe(ctx, id)
		if err != nil {
			return nil, err
		}
		switch name {
		case QueryStatus:
			return d.Status, nil
		case QueryWaiting:
			return d.Waiting, nil
		}
		outs := map[string]any{}
		for _, s := range d.Steps {
			if s.Status == string(store.StepDone) {
				outs[s.Name] = s.Output
			}
		}
		return outs, nil
	}
	x, err := e.st.Execution(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, err
	}
	var fn func() (any, error)
	err = e.replaySteps(ctx, x, func(_ string, d *durableStep) bool {
		fn = d.queries[name]
		return fn != nil
	})
	if err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, &UnknownQueryError{ID: id, Name: name}
	}
	return fn()
}

// replaySteps replays, for a query, each step of x that has not ended, in
// plan order, until found reports true.
func (e *Engine) replaySteps(ctx context.Context, x *store.Execution, found func(step string, d *durableStep) bool) error {
	// The execution, its steps and their journals are separate reads: a
	// run that continued as new in between would mix the old run's inputs
	// with the new run's journal. Replay again until the run held still.
	for try := 0; ; try++ {
		err := e.replayRun(ctx, x, found)
		now, rerr := e.st.Execution(ctx, x.ID)
		if rerr != nil || now.Run == x.Run || try == 5 {
			return err
		}
		x = now
	}
}

func (e *Engine) replayRun(ctx context.Context, x *store.Execution, found func(step string, d *durableStep) bool) error {
	g, err := e.graph(x.Graph)
	if err != nil {
		return err
	}
	ix := g.index()
	p, err := e.planOf(ix, x)
	if err != nil {
		return err
	}
	steps, tasks, err := e.stepsAndTasks(ctx, x.ID)
	if err != nil {
		return err
	}
	recs := scheduled(p, x, byName(steps), tasks)
	for i := range p.steps {
		ps := &p.steps[i]
		rec := recs[ps.st.name]
		if rec == nil || ps.st.mapper != nil || rec.Status == store.StepDone || rec.Status == store.StepFailed || rec.Status == store.StepCancelled {
			continue
		}
		d, err := e.replayForQuery(ctx, p, x, recs, ps, rec)
		if err != nil {
			return err
		}
		if found(ps.st.name, d) {
			return nil
		}
	}
	return nil
}

// replayForQuery re-runs a step from its journal, stopping at its wait
// point, and returns its durable state with the handlers it registered.
func (e *Engine) replayForQuery(ctx context.Context, p *plan, x *store.Execution, recs map[string]*store.Step, ps *pstep, rec *store.Step) (*durableStep, error) {
	r, err := e.runFor(p, x, recs, ps)
	if err != nil {
		return nil, err
	}
	journal, err := e.st.Journal(ctx, x.ID, ps.st.name)
	if err != nil {
		return nil, err
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := e.w
	if w == nil {
		w = &worker{eng: e}
	}
	d := &durableStep{w: w, exec: x, step: ps.st.name, journal: journal, loaded: len(journal), saved: len(journal), query: true}
	f := &frame{Context: qctx, r: r, ps: ps, attempt: max(rec.Attempt, 1), d: d}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }() // a replay that panics answers nothing
		_, _ = ps.st.invoke(f, r.vals, ps.in)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		cancel()
		<-done
		return nil, ctx.Err()
	}
	return d, nil
}
