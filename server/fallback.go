package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

// A server over a store whose graphs run in other processes (docket server)
// has an engine without those graphs, and the engine's Signal and Cancel
// refuse executions of graphs it does not know. These two functions do the
// part of the work that needs no graph, directly in the store, and leave the
// rest to the workers that run the graph:
//
//   - storeSignal appends the signal to the execution's inbox and makes
//     the tasks of steps waiting for it ready, as the engine does; only the
//     check of the payload against a declared signal type is skipped. The
//     payload is stored as JSON, which is what the default codec reads.
//   - storeCancel marks the execution cancel-requested and makes its idle
//     step tasks ready: a worker that claims one sees the request and
//     cancels the step, then compensates as usual; running steps are
//     cancelled by their worker when it next extends its lease.

// storeSignal sends a signal to execution id without knowing its graph.
func storeSignal(ctx context.Context, st store.Store, id, name string, payload json.RawMessage) error {
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	if !json.Valid(payload) {
		return errorf(http.StatusBadRequest, CodeInvalidInput, "signal %q: payload is not valid JSON", name)
	}
	return st.Update(ctx, id, func(tx store.Tx) error {
		x, err := tx.Execution()
		if errors.Is(err, store.ErrNotFound) {
			return &docket.NotFoundError{ID: id}
		}
		if err != nil {
			return err
		}
		if x.Status.Finished() {
			return &docket.FinishedError{ID: id, Status: string(x.Status)}
		}
		now := time.Now()
		if err := tx.AddSignal(&store.Signal{Name: name, Payload: store.Value{Type: "json.RawMessage", Data: payload}, SentAt: now}); err != nil {
			return err
		}
		steps, err := tx.Steps()
		if err != nil {
			return err
		}
		waiting := map[string]bool{}
		for _, s := range steps {
			if s.Status == store.StepSuspended && s.Signal == name {
				waiting[s.Name] = true
			}
		}
		return wakeTasks(tx, now, func(t store.Task) bool { return waiting[t.Step] })
	})
}

// storeCancel asks execution id to stop without knowing its graph.
func storeCancel(ctx context.Context, st store.Store, id string, now time.Time) error {
	return st.Update(ctx, id, func(tx store.Tx) error {
		x, err := tx.Execution()
		if errors.Is(err, store.ErrNotFound) {
			return &docket.NotFoundError{ID: id}
		}
		if err != nil {
			return err
		}
		if x.Status.Finished() {
			return &docket.FinishedError{ID: id, Status: string(x.Status)}
		}
		if x.CancelRequested {
			return nil
		}
		x.CancelRequested, x.UpdatedAt = true, now
		if err := tx.PutExecution(x); err != nil {
			return err
		}
		return wakeTasks(tx, now, func(t store.Task) bool { return t.ReadyAt.After(now) })
	})
}

// wakeTasks makes the unleased step tasks that match ready now.
func wakeTasks(tx store.Tx, now time.Time, match func(store.Task) bool) error {
	tasks, err := tx.Tasks()
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.Kind == store.TaskStep && t.Owner == "" && match(t) {
			t.ReadyAt, t.Claims = now, 0
			if err := tx.PutTask(&t); err != nil {
				return err
			}
		}
	}
	return nil
}
