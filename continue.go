package docket

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/docket-run/docket/store"
)

// Continue-as-new ends the current run of an execution and starts its next
// run under the same ID with new inputs. The new run starts from the
// graph's first steps with an empty history — step records and journals of
// the old run are dropped — so an execution that lives for ever (a
// subscription, a polling loop, a shopping cart) keeps a bounded history.
// Signals not yet received stay in the inbox for the new run.

type continueAsNew struct{ inputs []any }

func (c *continueAsNew) Error() string {
	return "docket: the step asked to continue as new (return this error from the step, do not wrap it away)"
}

// ContinueAsNew returns an error that, returned by a step, ends the
// execution's current run and starts the next one with inputs (given as for
// Start). In ephemeral Execute the graph simply runs again with them.
func ContinueAsNew(inputs ...any) error { return &continueAsNew{inputs: inputs} }

// ContinueAsNewSuggested reports whether the calling step's history has
// grown past the engine's Config.HistoryLimit journal entries, the point at
// which a long-lived step should continue as new.
func ContinueAsNewSuggested(ctx context.Context) bool {
	f := frameOf(ctx)
	if f == nil || f.d == nil {
		return false
	}
	// The position reached, not the journal's length: a re-executed step
	// must get the answer it got the first time at this point.
	return f.d.seq >= f.d.w.eng.cfg.HistoryLimit
}

// continueRun records, in tx, the end of the current run of x and the start
// of the next with the inputs can carries. It returns the first step of the
// new run leased to this worker, to run at once.
func (w *worker) continueRun(tx store.Tx, r *run, x *store.Execution, can *continueAsNew, now time.Time, queue string) (*store.Task, error) {
	e := w.eng
	var cfg execConfig
	vals, types := splitInputs(can.inputs, &cfg, nil, nil)
	p, err := r.ix.planFor(r.p.slots[r.p.target].typ, types)
	if err != nil {
		return nil, err
	}
	inputs := make([]store.Value, len(vals))
	for k, v := range vals {
		data, err := e.codec.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("docket: continue-as-new input %d (%T) cannot be encoded: %w", k, v, err)
		}
		inputs[k] = store.Value{Type: p.slots[p.inputs[k]].typ.String(), Data: data}
	}
	if err := deleteTasks(tx, func(t store.Task) bool { return t.Kind == taskDeadline }); err != nil {
		return nil, err
	}
	steps, err := tx.Steps()
	if err != nil {
		return nil, err
	}
	for _, s := range steps {
		if err := tx.DeleteStep(s.Name); err != nil {
			return nil, err
		}
	}
	if err := pruneInbox(tx); err != nil {
		return nil, err
	}
	started := x.CreatedAt
	if n := len(x.Runs); n > 0 {
		started = x.Runs[n-1].EndedAt
	}
	x.Runs = append(x.Runs, store.RunRecord{Run: x.Run, StartedAt: started, EndedAt: now, Steps: len(steps)})
	if n := len(x.Runs); n > keptRuns {
		x.Runs = append([]store.RunRecord(nil), x.Runs[n-keptRuns:]...)
	}
	x.Run++
	x.Inputs, x.Seq, x.UpdatedAt = inputs, 0, now
	if err := tx.PutExecution(x); err != nil {
		return nil, err
	}
	var next *store.Task
	recs := map[string]*store.Step{}
	for _, i := range p.roots {
		if err := makeReady(e, tx, p, recs, i, now, w.leaseTo(true, queue).unless(next != nil), &next); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// keptRuns is how many earlier runs an execution remembers.
const keptRuns = 20

// keptAnswers is how many answered updates an inbox keeps across runs, so
// that callers repeating an update ID still get its first answer.
const keptAnswers = 100

// pruneInbox drops consumed signals when a run ends, keeping the answers
// of the last keptAnswers updates: the inbox carries only what is unread.
func pruneInbox(tx store.Tx) error {
	sigs, err := tx.Signals()
	if err != nil {
		return err
	}
	answers := 0
	for i := len(sigs) - 1; i >= 0; i-- {
		sg := sigs[i]
		if sg.ConsumedBy == "" {
			continue
		}
		if _, _, isUpdate := splitUpdateName(sg.Name); isUpdate && answers < keptAnswers {
			answers++
			continue
		}
		if err := tx.DeleteSignal(sg.Seq); err != nil {
			return err
		}
	}
	return nil
}

// asContinue finds a continue-as-new request in a step's error.
func asContinue(err error) (*continueAsNew, bool) {
	if err == nil {
		return nil, false // and no allocation for errors.As on the hot path
	}
	var can *continueAsNew
	ok := errors.As(err, &can)
	return can, ok
}
