package docket

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/docket-run/docket/store"
)

// Description is everything recorded about one durable execution.
type Description struct {
	ID    string
	Graph string
	Run   int
	// Status is running, compensating, completed, failed or cancelled.
	Status          string
	CancelRequested bool
	Error           string
	Result          any // the decoded result, when completed
	CreatedAt       time.Time
	UpdatedAt       time.Time
	FinishedAt      time.Time
	Deadline        time.Time
	// Steps lists every step the execution needs, in plan order, including
	// those that have not become ready yet (status pending).
	Steps []StepInfo
	// Waiting says what the execution waits on, one line per waiting step.
	Waiting []string
	// EarlierRuns are the runs that continued as new before the current
	// one (the last 20), oldest first.
	EarlierRuns []RunInfo
	// Parent is the execution that started this one as a child, if any.
	Parent string
	// Result type name, and the inputs of the current run (decoded; as
	// raw JSON when this engine does not have the graph).
	Target string
	Inputs []any
}

// RunInfo describes an earlier run of an execution.
type RunInfo struct {
	Run       int
	StartedAt time.Time
	EndedAt   time.Time
	Steps     int // steps it recorded
}

// StepInfo describes one step of an execution.
type StepInfo struct {
	Name string
	// Status is pending, ready, running, suspended, done, failed or cancelled.
	Status   string
	Attempts int
	Error    string // the last attempt's error
	Output   any    // the decoded output, when done
	Wait     string // what a suspended step waits on
	WakeAt   time.Time
	// ReadyAt is when the step first became ready; StartedAt when its first
	// recorded attempt began; FinishedAt when it ended.
	ReadyAt    time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	// Compensation is "", pending, compensated or failed.
	Compensation         string
	CompensationAttempts int
	CompensationError    string
	// Worker is the worker that ran the step's last attempt (or, for a
	// session step, the session's worker).
	Worker string
}

// Describe returns the recorded state of an execution: its status, result
// or error, and every step with its attempts, timings, errors, outputs and
// what it waits on.
func (e *Engine) Describe(ctx context.Context, id string) (*Description, error) {
	x, err := e.st.Execution(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, err
	}
	steps, tasks, err := e.stepsAndTasks(ctx, id)
	if err != nil {
		return nil, err
	}
	now := e.clock.Now()
	running := map[string]int{} // step -> the attempt in progress
	for _, t := range tasks {
		if t.Kind == store.TaskStep && t.Owner != "" && t.LeaseUntil.After(now) {
			running[t.Step] = max(t.Attempt, 1) + max(t.Claims-1, 0)
		}
	}
	d := &Description{ID: x.ID, Graph: x.Graph, Run: x.Run, Status: string(x.Status), CancelRequested: x.CancelRequested,
		Error: x.Error, CreatedAt: x.CreatedAt, UpdatedAt: x.UpdatedAt, FinishedAt: x.FinishedAt, Deadline: x.Deadline, Parent: x.Parent}
	for _, r := range x.Runs {
		d.EarlierRuns = append(d.EarlierRuns, RunInfo{Run: r.Run, StartedAt: r.StartedAt, EndedAt: r.EndedAt, Steps: r.Steps})
	}
	p := e.servedPlan(x)
	d.Target = x.Target
	for k, in := range x.Inputs {
		if p != nil && k < len(p.inputs) {
			v, err := e.decode(p.slots[p.inputs[k]].typ, in.Data)
			if err == nil {
				d.Inputs = append(d.Inputs, v)
				continue
			}
		}
		d.Inputs = append(d.Inputs, rawValue(in.Data))
	}
	if x.Status == store.Completed && x.Result != nil {
		if p != nil {
			d.Result, _ = e.decode(p.slots[p.target].typ, x.Result.Data)
		} else {
			d.Result = rawValue(x.Result.Data)
		}
	}
	recs := scheduled(p, x, byName(steps), tasks)
	var order []string
	if p != nil {
		for _, ps := range p.steps {
			order = append(order, ps.st.name)
		}
	}
	for _, s := range steps {
		if _, inPlan := p.stepIndex(s.Name); !inPlan {
			order = append(order, s.Name) // recorded by an older version of the graph
		}
	}
	for _, t := range tasks {
		if _, inPlan := p.stepIndex(t.Step); t.Kind == store.TaskStep && !inPlan && !slices.Contains(order, t.Step) {
			order = append(order, t.Step) // scheduled by an older version, not recorded yet
		}
	}
	for _, name := range order {
		info := StepInfo{Name: name, Status: "pending"}
		if rec := recs[name]; rec != nil {
			info = StepInfo{Name: name, Status: string(rec.Status), Attempts: rec.Attempt, Error: rec.Error, Wait: rec.Wait,
				WakeAt: rec.WakeAt, ReadyAt: rec.ReadyAt, StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt,
				Compensation: string(rec.Comp), CompensationAttempts: rec.CompAttempt, CompensationError: rec.CompError, Worker: rec.Worker}
			if a, ok := running[name]; ok {
				info.Status, info.Attempts = "running", a
			}
			if rec.Output != nil {
				info.Output = rawValue(rec.Output.Data)
				if p != nil {
					if i, ok := p.byName[name]; ok {
						info.Output, _ = e.decode(p.steps[i].st.out, rec.Output.Data)
					}
				}
			}
			if _, ok := running[name]; rec.Status == store.StepSuspended && !ok {
				d.Waiting = append(d.Waiting, name+": "+rec.Wait)
			}
			if rec.Comp == store.CompPending && d.Status == string(store.Running) {
				d.Status = "compensating"
			}
		}
		d.Steps = append(d.Steps, info)
	}
	return d, nil
}

// ListOptions filters and pages List.
type ListOptions struct {
	Graph  string
	Status string // running, completed, failed or cancelled
	// CreatedAfter and CreatedBefore bound the creation time (exclusive).
	CreatedAfter  time.Time
	CreatedBefore time.Time
	Limit         int    // page size, 100 by default
	Cursor        string // from the previous page; "" for the first
}

// ExecutionSummary is one line of List.
type ExecutionSummary struct {
	ID         string
	Graph      string
	Run        int
	Status     string
	Error      string
	CreatedAt  time.Time
	FinishedAt time.Time
}

// List returns executions, newest first, and the cursor of the next page
// ("" when there is none).
func (e *Engine) List(ctx context.Context, o ListOptions) ([]ExecutionSummary, string, error) {
	xs, next, err := e.st.List(ctx, store.ListQuery{Graph: o.Graph, Status: store.Status(o.Status),
		CreatedAfter: o.CreatedAfter, CreatedBefore: o.CreatedBefore, Limit: o.Limit, Cursor: o.Cursor})
	if err != nil {
		return nil, "", err
	}
	out := make([]ExecutionSummary, len(xs))
	for i, x := range xs {
		out[i] = ExecutionSummary{ID: x.ID, Graph: x.Graph, Run: x.Run, Status: string(x.Status), Error: x.Error,
			CreatedAt: x.CreatedAt, FinishedAt: x.FinishedAt}
	}
	return out, next, nil
}

// rawValue shows an encoded value that cannot be decoded into its Go type
// (the graph is not registered here): as JSON when it is JSON.
func rawValue(data []byte) any {
	if json.Valid(data) {
		return json.RawMessage(data)
	}
	return data
}
