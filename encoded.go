package docket

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"time"

	"github.com/docket-run/docket/store"
)

// This file is the engine's untyped face, for tools that know graphs only
// by name and values only as JSON: the HTTP API, the CLI and the web UI.
// Go code should use the typed functions (Start, Signal, Update, Query).

// GraphInfo describes a registered graph.
type GraphInfo struct {
	Name string `json:"name"`
	// Inputs are the type names an execution must be given (Input[T]).
	Inputs []string `json:"inputs"`
	// Results are the type names no step consumes: the natural targets.
	Results []string `json:"results"`
	// Signals maps declared signal names (SignalInput) to payload types.
	Signals map[string]string `json:"signals,omitempty"`
	Steps   []GraphStep       `json:"steps"`
	// Mermaid is the graph as a Mermaid flowchart.
	Mermaid string `json:"mermaid"`
}

// GraphStep is one step of a GraphInfo.
type GraphStep struct {
	Name    string   `json:"name"`
	Inputs  []string `json:"inputs"` // type names, in parameter order
	Output  string   `json:"output"`
	Retries int      `json:"retries,omitempty"` // MaxAttempts of its retry policy
	Timeout string   `json:"timeout,omitempty"`
	Race    bool     `json:"race,omitempty"`
	Map     bool     `json:"map,omitempty"`
}

// Info describes g: its steps, inputs, results and signals.
func (g *Graph) Info() GraphInfo {
	ix := g.index()
	info := GraphInfo{Name: g.name, Mermaid: g.Mermaid(), Inputs: []string{}, Results: []string{}}
	for t := range ix.inputs {
		info.Inputs = append(info.Inputs, t.String())
	}
	sort.Strings(info.Inputs)
	g.mu.Lock()
	for name, t := range g.signals {
		if info.Signals == nil {
			info.Signals = map[string]string{}
		}
		info.Signals[name] = t.String()
	}
	g.mu.Unlock()
	seen := map[reflect.Type]bool{}
	for _, s := range ix.steps {
		if s.err != nil {
			continue
		}
		gs := GraphStep{Name: s.name, Output: s.out.String(), Race: s.cfg.race, Map: s.mapper != nil}
		for _, t := range s.in {
			gs.Inputs = append(gs.Inputs, t.String())
		}
		if s.cfg.retry != nil {
			gs.Retries = s.cfg.retry.MaxAttempts
		}
		if s.cfg.timeout > 0 {
			gs.Timeout = s.cfg.timeout.String()
		}
		info.Steps = append(info.Steps, gs)
		if len(ix.consumers[s.out]) == 0 && !seen[s.out] {
			seen[s.out] = true
			info.Results = append(info.Results, s.out.String())
		}
	}
	return info
}

// Graphs describes the graphs registered with the engine, by name.
func (e *Engine) Graphs() []GraphInfo {
	var out []GraphInfo
	for _, g := range e.graphs {
		out = append(out, g.Info())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// StartRequest starts an execution by graph name with JSON inputs.
type StartRequest struct {
	Graph string `json:"graph"`
	// ID is the execution ID; a random one is chosen when empty.
	ID string `json:"id,omitempty"`
	// Result is the type name of the wanted result; it may be left empty
	// when the graph has one (GraphInfo.Results).
	Result string `json:"result,omitempty"`
	// Inputs maps input type names (GraphInfo.Inputs) to JSON values.
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
	// Timeout, when positive, bounds the whole execution.
	Timeout time.Duration `json:"timeout,omitempty"`
}

// InputError reports a value from a StartRequest, signal or update that
// does not decode into the type it must have.
type InputError struct {
	What string // e.g. `input main.Order`
	Err  error
}

func (e *InputError) Error() string { return fmt.Sprintf("docket: %s: %v", e.What, e.Err) }
func (e *InputError) Unwrap() error { return e.Err }

// StartEncoded starts an execution described by r and returns its ID.
// Like Start, it is idempotent on the ID and checks everything before
// recording anything.
func (e *Engine) StartEncoded(ctx context.Context, r StartRequest) (string, error) {
	g, err := e.graph(r.Graph)
	if err != nil {
		return "", err
	}
	ix := g.index()
	if ix.err != nil {
		return "", ix.err
	}
	info := g.Info()
	var target reflect.Type
	switch {
	case r.Result != "":
		if target, err = ix.typeByName(r.Result); err != nil {
			return "", &InputError{What: "result " + r.Result, Err: fmt.Errorf("graph %q makes no %s; it makes %v", g.name, r.Result, info.Results)}
		}
	case len(info.Results) == 1:
		target, _ = ix.typeByName(info.Results[0])
	default:
		return "", &InputError{What: "result", Err: fmt.Errorf("graph %q has %d possible results %v; name one", g.name, len(info.Results), info.Results)}
	}
	var inputs []any
	for name, raw := range r.Inputs {
		t, err := ix.typeByName(name)
		if err != nil || !ix.inputs[t] {
			return "", &InputError{What: "input " + name, Err: fmt.Errorf("graph %q takes no such input; its inputs are %v", g.name, info.Inputs)}
		}
		v, err := decodeJSON(t, raw)
		if err != nil {
			return "", &InputError{What: "input " + name, Err: err}
		}
		inputs = append(inputs, valueOf{v, t})
	}
	if r.Timeout > 0 {
		inputs = append(inputs, ExecutionTimeout(r.Timeout))
	}
	id := r.ID
	if id == "" {
		id = newUUID()
	}
	if err := e.start(ctx, g, id, target, inputs); err != nil {
		return "", err
	}
	return id, nil
}

// valueOf is an input whose static type is t (as As gives for typed code).
type valueOf struct {
	v any
	t reflect.Type
}

func (v valueOf) value() (any, reflect.Type) { return v.v, v.t }

// decodeJSON decodes raw into a new value of type t.
func decodeJSON(t reflect.Type, raw json.RawMessage) (any, error) {
	p := reflect.New(t)
	if len(raw) == 0 {
		return p.Elem().Interface(), nil
	}
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		return nil, err
	}
	return p.Elem().Interface(), nil
}

// SignalEncoded sends a signal whose payload is JSON. For a signal the
// graph declared (SignalInput) the payload must decode into its type;
// otherwise it is passed on as JSON and decoded by the receiving step.
func (e *Engine) SignalEncoded(ctx context.Context, id, name string, payload json.RawMessage) error {
	v, err := e.signalPayload(ctx, id, name, payload)
	if err != nil {
		return err
	}
	return e.Signal(ctx, id, name, v)
}

func (e *Engine) signalPayload(ctx context.Context, id, name string, payload json.RawMessage) (any, error) {
	if len(payload) > 0 && !json.Valid(payload) {
		return nil, &InputError{What: "signal " + name, Err: errors.New("payload is not valid JSON")}
	}
	x, err := e.st.Execution(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, &NotFoundError{ID: id}
	}
	if err != nil {
		return nil, err
	}
	g, _ := e.graph(x.Graph) // nil for a client without the graph
	if g == nil {
		if len(payload) == 0 {
			payload = json.RawMessage("null")
		}
		return payload, nil
	}
	if t, ok := g.signalType(name); ok {
		v, err := decodeJSON(t, payload)
		if err != nil {
			return nil, &InputError{What: "signal " + name, Err: fmt.Errorf("payload is not a %s: %w", t, err)}
		}
		return v, nil
	}
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	return payload, nil
}

// UpdateEncoded sends an update whose request is JSON and returns the
// handler's answer as JSON. Errors are those of Update.
func (e *Engine) UpdateEncoded(ctx context.Context, id, name string, req json.RawMessage, opts ...UpdateOption) (json.RawMessage, error) {
	if len(req) == 0 {
		req = json.RawMessage("null")
	}
	if !json.Valid(req) {
		return nil, &InputError{What: "update " + name, Err: errors.New("request is not valid JSON")}
	}
	data, err := e.sendUpdate(ctx, id, name, req, opts)
	if err != nil {
		return nil, err
	}
	return asJSON(data), nil
}

// QueryEncoded asks a query and returns the answer as JSON.
func (e *Engine) QueryEncoded(ctx context.Context, id, name string) (json.RawMessage, error) {
	v, err := e.query(ctx, id, name)
	if err != nil {
		return nil, err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("docket: query %q answer (%T) cannot be shown as JSON: %w", name, v, err)
	}
	return data, nil
}

// asJSON returns encoded data as JSON: as is when it is JSON already (the
// JSON codec), else as a JSON string of the bytes (base64).
func asJSON(data []byte) json.RawMessage {
	if len(data) == 0 {
		return json.RawMessage("null")
	}
	if json.Valid(data) {
		return data
	}
	b, _ := json.Marshal(data)
	return b
}

// HistoryEvent is one entry of an execution's history.
type HistoryEvent struct {
	// Time is when it happened; zero for durable calls, which are ordered
	// by position within their step instead.
	Time time.Time `json:"time,omitzero"`
	// Kind is one of: started, step-ready, step-started, call, signal,
	// update, step-done, step-failed, step-cancelled, compensated,
	// compensation-failed, finished.
	Kind   string `json:"kind"`
	Step   string `json:"step,omitempty"`
	Name   string `json:"name,omitempty"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
}

// History returns what happened in an execution's current run, oldest
// first: steps becoming ready, starting and ending, each step's durable
// calls in order (Run, Sleep, Receive, updates, child calls), signals
// sent, compensations and the end.
func (e *Engine) History(ctx context.Context, id string) ([]HistoryEvent, error) {
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
	sigs, err := e.st.Signals(ctx, id)
	if err != nil {
		return nil, err
	}
	// Steps scheduled and not recorded yet (see scheduled) have their
	// ready time and may have journal entries.
	p := e.servedPlan(x)
	for _, rec := range unrecorded(p, x, byName(steps), tasks) {
		steps = append(steps, *rec)
	}
	var evs []HistoryEvent
	evs = append(evs, HistoryEvent{Time: x.CreatedAt, Kind: "started", Name: x.Graph, Detail: fmt.Sprintf("run %d", x.Run)})
	for _, s := range steps {
		if !s.ReadyAt.IsZero() {
			evs = append(evs, HistoryEvent{Time: s.ReadyAt, Kind: "step-ready", Step: s.Name})
		}
		if !s.StartedAt.IsZero() {
			evs = append(evs, HistoryEvent{Time: s.StartedAt, Kind: "step-started", Step: s.Name})
		}
		journal, err := e.st.Journal(ctx, id, s.Name)
		if err != nil {
			return nil, err
		}
		// Durable calls carry no time of their own: they sit between the
		// step's start and its end.
		at := s.StartedAt
		if at.IsZero() {
			at = s.ReadyAt
		}
		for _, j := range journal {
			ev := HistoryEvent{Time: at, Kind: "call", Step: s.Name, Name: j.Kind, Detail: j.Name, Error: j.Error}
			if j.Kind == "update" {
				ev.Kind = "update"
			}
			if !j.Done {
				ev.Detail += " (pending)"
			}
			if !j.WakeAt.IsZero() {
				ev.Detail += " until " + j.WakeAt.UTC().Format(time.RFC3339)
			}
			evs = append(evs, ev)
		}
		switch s.Status {
		case store.StepDone, store.StepFailed, store.StepCancelled:
			kind := map[store.StepStatus]string{store.StepDone: "step-done", store.StepFailed: "step-failed", store.StepCancelled: "step-cancelled"}[s.Status]
			evs = append(evs, HistoryEvent{Time: s.FinishedAt, Kind: kind, Step: s.Name, Error: s.Error, Detail: fmt.Sprintf("%d attempt(s)", s.Attempt)})
		}
		switch s.Comp {
		case store.CompDone:
			evs = append(evs, HistoryEvent{Time: x.UpdatedAt, Kind: "compensated", Step: s.Name})
		case store.CompFailed:
			evs = append(evs, HistoryEvent{Time: x.UpdatedAt, Kind: "compensation-failed", Step: s.Name, Error: s.CompError})
		}
	}
	for _, s := range sigs {
		ev := HistoryEvent{Time: s.SentAt, Kind: "signal", Name: s.Name, Step: s.ConsumedBy}
		if name, uid, ok := splitUpdateName(s.Name); ok {
			ev.Kind, ev.Name, ev.Detail = "update", name, "id "+uid
		}
		if s.ConsumedBy == "" {
			ev.Detail = joinDetail(ev.Detail, "not received yet")
		}
		evs = append(evs, ev)
	}
	if x.Status.Finished() {
		evs = append(evs, HistoryEvent{Time: x.FinishedAt, Kind: "finished", Name: string(x.Status), Error: x.Error})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	return evs, nil
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + ", " + b
}
