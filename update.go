package docket

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/docket-run/docket/store"
)

// Updates are requests to a running durable execution that change it and
// answer. A step registers a handler with HandleUpdate; a caller's Update
// blocks until the handler has run and returns its result or error.
//
// Handlers run on the step's own goroutine, one at a time, at the step's
// wait points (Sleep, Receive, Call): the step and its handlers never race.
// Each applied update is journaled with its request and its answer, so a
// step that re-executes applies the same updates at the same points and
// rebuilds the same state, and asking again with the same update ID returns
// the first answer. An optional validator rejects a request before anything
// is recorded.

// ErrDurableCallInHandler is returned by durable calls made inside an
// update handler.
var ErrDurableCallInHandler = errors.New("docket: durable calls cannot be made inside an update handler; record the work in the step's state and do it in the step")

// updatePrefix marks update requests in an execution's inbox:
// "update:<name>:<update ID>".
const updatePrefix = "update:"

// updateInboxName is the inbox name of update name with ID uid.
func updateInboxName(name, uid string) string { return updatePrefix + name + ":" + uid }

// splitUpdateName reads an update's inbox name: update:<name>:<id>.
func splitUpdateName(inboxName string) (name, uid string, ok bool) {
	rest, ok := strings.CutPrefix(inboxName, updatePrefix)
	if !ok {
		return "", "", false
	}
	return strings.Cut(rest, ":")
}

type updateHandler struct {
	validate func(req []byte) error
	handle   func(ctx context.Context, req []byte) ([]byte, error)
}

// HandleUpdate registers the calling step's handler for updates called
// name, with an optional validator (nil accepts everything). Register
// handlers at the top of the step, before its first wait. handler may
// change the step's state; it must be deterministic, because the step
// re-applies recorded updates when it re-executes. It runs inside one of
// the step's waits, so it cannot make durable calls (Run, Sleep, Now, ...;
// they return ErrDurableCallInHandler): let it record what is to be done
// in the step's state, and let the step do it with Run after the wait.
func HandleUpdate[Req, Resp any](ctx context.Context, name string, handler func(context.Context, Req) (Resp, error), validator func(Req) error) {
	f := frameOf(ctx)
	if f == nil || f.d == nil {
		return
	}
	d := f.d
	h := &updateHandler{
		handle: func(ctx context.Context, data []byte) ([]byte, error) {
			var req Req
			if err := d.codec().Unmarshal(data, &req); err != nil {
				return nil, err
			}
			d.inHandler = true
			resp, err := handler(ctx, req)
			d.inHandler = false
			if err != nil {
				return nil, err
			}
			return d.codec().Marshal(resp)
		},
	}
	if validator != nil {
		h.validate = func(data []byte) error {
			var req Req
			if err := d.codec().Unmarshal(data, &req); err != nil {
				return err
			}
			return validator(req)
		}
	}
	if d.updates == nil {
		d.updates = map[string]*updateHandler{}
	}
	d.updates[name] = h
}

// applyUpdates runs at every wait point of a durable step. It re-applies
// the updates journaled at this point (a re-execution rebuilds the state
// they made) and then, live, applies the requests waiting in the inbox that
// this step handles, recording each with its answer. New updates go before
// a wait the step is suspended in, which is always the last journal entry.
// At a Receive of signal (non-empty), only updates that arrived before the
// oldest waiting such signal are applied, so the step sees signals and
// updates in the order they were sent.
func (d *durableStep) applyUpdates(f *frame, signal string) error {
	for d.seq < len(d.journal) && d.journal[d.seq].Kind == "update" {
		e := d.journal[d.seq]
		d.seq++
		name, _, _ := strings.Cut(e.Name, ":")
		if h := d.updates[name]; h != nil {
			req, _ := splitUpdate(e.Data)
			_, _ = h.handle(f, req) // rebuild the state; the answer is recorded
		}
	}
	if d.query || len(d.updates) == 0 {
		return nil
	}
	var waiting *store.JournalEntry // the wait this step is suspended in
	switch {
	case d.seq == len(d.journal):
	case d.seq == len(d.journal)-1 && !d.journal[d.seq].Done:
		w := d.journal[d.seq]
		waiting = &w
	default:
		return nil
	}
	sigs, err := d.w.eng.st.Signals(f, d.exec.ID)
	if err != nil {
		return d.storeFailed(err)
	}
	for _, s := range sigs {
		if signal != "" && s.ConsumedBy == "" && s.Name == signal {
			break // that signal comes first
		}
		name, uid, isUpdate := splitUpdateName(s.Name)
		if s.ConsumedBy != "" || !isUpdate {
			continue
		}
		h := d.updates[name]
		if h == nil {
			continue
		}
		resp, herr := h.handle(f, s.Payload.Data)
		entry := store.JournalEntry{Kind: "update", Name: name + ":" + uid, Data: joinUpdate(s.Payload.Data, resp), Done: true}
		if herr != nil {
			entry.Error = herr.Error()
		}
		if waiting != nil {
			d.journal = d.journal[:len(d.journal)-1] // the wait moves after the update
			d.saved, d.loaded = min(d.saved, len(d.journal)), min(d.loaded, len(d.journal))
		}
		d.add(entry)
		d.seq = len(d.journal)
		if waiting != nil {
			d.add(*waiting)
		}
		seq := s.Seq
		err := d.save(f, f, func(tx store.Tx, rec *store.Step, task *store.Task) error {
			cur, err := tx.Signals()
			if err != nil {
				return err
			}
			for _, c := range cur {
				if c.Seq == seq {
					c.ConsumedBy = d.step
					c.Payload = store.Value{Type: answerType, Data: resp}
					if herr != nil {
						c.Payload = store.Value{Type: updateErrorType, Data: []byte(herr.Error())}
					}
					return tx.PutSignal(&c)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("docket: recording update %q: %w", uid, err)
		}
		d.w.eng.notify(updateKey(d.exec.ID, name, uid))
	}
	return nil
}

// updateKey names the in-process waiters for an update's answer.
func updateKey(exec, name, uid string) string {
	return "update\x00" + exec + "\x00" + name + "\x00" + uid
}

// handlesUpdate reports whether an inbox entry is an update this step handles.
func (d *durableStep) handlesUpdate(inboxName string) bool {
	name, _, ok := splitUpdateName(inboxName)
	return ok && d.updates[name] != nil
}

// joinUpdate and splitUpdate pack an update's request and answer into one
// journal entry.
func joinUpdate(req, resp []byte) []byte {
	b := binary.AppendUvarint(nil, uint64(len(req)))
	return append(append(b, req...), resp...)
}

func splitUpdate(b []byte) (req, resp []byte) {
	n, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < n {
		return nil, nil
	}
	return b[k : k+int(n)], b[k+int(n):]
}

// UpdateRejectedError reports an update its validator refused; nothing was
// recorded.
type UpdateRejectedError struct {
	Name string
	Err  error
}

func (e *UpdateRejectedError) Error() string {
	return fmt.Sprintf("docket: update %q rejected: %v", e.Name, e.Err)
}

func (e *UpdateRejectedError) Unwrap() error { return e.Err }

// UnknownUpdateError reports an update that no waiting step of the
// execution handles.
type UnknownUpdateError struct {
	ID   string
	Name string
}

func (e *UnknownUpdateError) Error() string {
	return fmt.Sprintf("docket: no step of execution %q handles update %q (is HandleUpdate called before the step waits?)", e.ID, e.Name)
}

// UpdateError is the error an update handler returned.
type UpdateError struct {
	Name    string
	Message string
}

func (e *UpdateError) Error() string {
	return fmt.Sprintf("docket: update %q failed: %s", e.Name, e.Message)
}

// UpdateOption configures Update; pass it after the request.
type UpdateOption interface{ applyUpdate(*updateConfig) }

type updateConfig struct{ id string }

type updateFunc func(*updateConfig)

func (f updateFunc) applyUpdate(c *updateConfig) { f(c) }

// UpdateID sets the update's ID: sending the same ID again returns the first
// answer instead of applying the update twice. By default each call gets a
// new ID.
func UpdateID(id string) UpdateOption { return updateFunc(func(c *updateConfig) { c.id = id }) }

// Update sends the update name with req to execution id and waits until a
// step's handler has applied it, returning the handler's answer. A
// validator's refusal returns an *UpdateRejectedError and records nothing;
// the handler's error returns an *UpdateError; an execution that ends before
// applying it returns a *FinishedError — never a hang.
func Update[Resp any](ctx context.Context, eng *Engine, id, name string, req any, opts ...UpdateOption) (Resp, error) {
	var zero Resp
	data, err := eng.sendUpdate(ctx, id, name, req, opts)
	if err != nil {
		return zero, err
	}
	var out Resp
	if err := eng.codec.Unmarshal(data, &out); err != nil {
		return zero, &CorruptPayloadError{Type: reflect.TypeFor[Resp]().String(), Err: err}
	}
	return out, nil
}

// UpdateWithStart is Update on an execution that it first starts (as Start
// would, with inputs) if it does not exist yet.
func UpdateWithStart[Resp, Out any](ctx context.Context, eng *Engine, g *Graph, id, name string, req any, inputs []any, opts ...UpdateOption) (Resp, error) {
	if _, err := Start[Out](ctx, eng, g, id, inputs...); err != nil {
		return *new(Resp), err
	}
	return Update[Resp](ctx, eng, id, name, req, opts...)
}

func (e *Engine) sendUpdate(ctx context.Context, id, name string, req any, opts []UpdateOption) ([]byte, error) {
	var cfg updateConfig
	for _, o := range opts {
		o.applyUpdate(&cfg)
	}
	if cfg.id == "" {
		cfg.id = newUUID()
	}
	reqData, err := e.codec.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("docket: update %q request (%T) cannot be encoded: %w", name, req, err)
	}
	key := updateInboxName(name, cfg.id)
	answer, err := e.findUpdate(ctx, id, key)
	if err != nil {
		return nil, err
	}
	if answer == nil {
		// Which step handles it, and does its validator accept it? Both
		// come from a replay, before anything is recorded.
		step, err := e.validateUpdate(ctx, id, name, reqData)
		if err != nil {
			return nil, err
		}
		err = e.st.Update(ctx, id, func(tx store.Tx) error {
			x, err := tx.Execution()
			if err != nil {
				return err
			}
			if x.Status.Finished() {
				return &FinishedError{ID: id, Status: string(x.Status)}
			}
			sigs, err := tx.Signals()
			if err != nil {
				return err
			}
			for _, s := range sigs {
				if s.Name == key {
					return nil // already sent under this ID
				}
			}
			return tx.AddSignal(&store.Signal{Name: key, Payload: store.Value{Type: fmt.Sprintf("%T", req), Data: reqData}, SentAt: e.clock.Now()})
		})
		if err != nil {
			return nil, err
		}
		e.wakeStep(ctx, id, step)
	}
	// Wait for the answer to reach the inbox: woken at once when this
	// process applies it (or the store announces it), else polling. An
	// execution that ends without applying it ends the wait.
	if answer != nil {
		return answerOf(name, answer)
	}
	if err := e.watch(ctx, id); err != nil {
		return nil, err
	}
	err = e.await(ctx, updateKey(id, name, cfg.id), 50*time.Millisecond, func() (bool, error) {
		var err error
		if answer, err = e.findUpdate(ctx, id, key); err != nil || answer != nil {
			return answer != nil, err
		}
		x, err := e.st.Execution(ctx, id)
		if err != nil {
			return false, err
		}
		if x.Status.Finished() {
			// One last look: it may have been applied just before the end.
			if answer, err = e.findUpdate(ctx, id, key); err != nil || answer == nil {
				return false, &FinishedError{ID: id, Status: string(x.Status)}
			}
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return answerOf(name, answer)
}

// answerOf turns an answered request's payload into the handler's
// response or error.
func answerOf(name string, answer *store.Value) ([]byte, error) {
	if answer.Type == updateErrorType {
		return nil, &UpdateError{Name: name, Message: string(answer.Data)}
	}
	return answer.Data, nil
}

// Answered update requests keep their answer in the inbox, where callers
// find it even after the run that applied it continued as new.
const (
	answerType      = "docket.update.answer" // Data is the encoded response
	updateErrorType = "docket.update.error"  // Data is the handler's error message
)

// findUpdate looks in the inbox for the answered request called key and
// returns its answer (see answerOf), or nil while it has none.
func (e *Engine) findUpdate(ctx context.Context, id, key string) (*store.Value, error) {
	sigs, err := e.st.Signals(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(sigs) == 0 {
		if _, err := e.st.Execution(ctx, id); errors.Is(err, store.ErrNotFound) {
			return nil, &NotFoundError{ID: id}
		}
	}
	for _, s := range sigs {
		if s.Name == key && s.ConsumedBy != "" && (s.Payload.Type == answerType || s.Payload.Type == updateErrorType) {
			return &s.Payload, nil
		}
	}
	return nil, nil
}

// validateUpdate finds, by replaying the waiting steps, the step that
// handles update name, and runs its validator on the request.
func (e *Engine) validateUpdate(ctx context.Context, id, name string, req []byte) (string, error) {
	x, err := e.st.Execution(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", &NotFoundError{ID: id}
	}
	if err != nil {
		return "", err
	}
	if x.Status.Finished() {
		return "", &FinishedError{ID: id, Status: string(x.Status)}
	}
	var found string
	var verr error
	err = e.replaySteps(ctx, x, func(step string, d *durableStep) bool {
		h := d.updates[name]
		if h == nil {
			return false
		}
		found, verr = step, nil // a replay repeated after a new run starts afresh
		if h.validate != nil {
			if err := h.validate(req); err != nil {
				verr = &UpdateRejectedError{Name: name, Err: err}
			}
		}
		return true
	})
	if err != nil {
		return "", err
	}
	if found == "" {
		return "", &UnknownUpdateError{ID: id, Name: name}
	}
	return found, verr
}
