package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/version"
	"github.com/docket-run/docket/store"
)

var errEOF = io.EOF

func docketVersion() string { return version.String() }

func (s *Server) info(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, Info{Version: s.cfg.Version, Graphs: len(s.graphs), BasePath: s.cfg.BasePath})
}

func (s *Server) listGraphs(w http.ResponseWriter, r *http.Request) error {
	out := GraphList{Graphs: []GraphInfo{}}
	for _, name := range s.names {
		out.Graphs = append(out.Graphs, s.graphs[name])
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getGraph(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	g, ok := s.graphs[name]
	if !ok {
		return s.unknownGraph(name)
	}
	return writeJSON(w, http.StatusOK, g)
}

// unknownGraph reports a graph this server does not run, saying why when
// it runs none.
func (s *Server) unknownGraph(name string) error {
	if len(s.graphs) == 0 {
		return errorf(http.StatusNotFound, CodeUnknownGraph,
			"this server runs no graphs (it serves a store whose graphs run in other processes), so it cannot start %q; start it from a process that registers it", name)
	}
	return errorf(http.StatusNotFound, CodeUnknownGraph, "no graph named %q; this server runs %s", name, strings.Join(s.names, ", "))
}

func (s *Server) start(w http.ResponseWriter, r *http.Request) error {
	var req StartRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.Graph == "" {
		return errorf(http.StatusBadRequest, CodeBadRequest, `"graph" is required`)
	}
	g, ok := s.graphs[req.Graph]
	if !ok {
		return s.unknownGraph(req.Graph)
	}
	if req.Result == "" && len(g.Results) != 1 {
		return errorf(http.StatusBadRequest, CodeInvalidInput, "graph %q has %d possible results (%s); name one in \"result\"",
			req.Graph, len(g.Results), strings.Join(g.Results, ", "))
	}
	sr := docket.StartRequest{Graph: req.Graph, ID: req.ID, Result: req.Result, Inputs: req.Inputs}
	if req.Timeout != "" {
		d, err := time.ParseDuration(req.Timeout)
		if err != nil || d <= 0 {
			return errorf(http.StatusBadRequest, CodeBadRequest, "\"timeout\" %q is not a positive duration such as 90s or 2h", req.Timeout)
		}
		sr.Timeout = d
	}
	created := true
	if req.ID != "" {
		if _, err := s.eng.Store().Execution(r.Context(), req.ID); err == nil {
			created = false
		}
	}
	id, err := s.eng.StartEncoded(r.Context(), sr)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", s.cfg.BasePath+"/api/v1/executions/"+url.PathEscape(id))
	}
	return writeJSON(w, status, StartResponse{ID: id, Graph: req.Graph, Created: created})
}

// listOptions reads the list filters of a query string.
func listOptions(q url.Values) (docket.ListOptions, error) {
	o := docket.ListOptions{Graph: q.Get("graph"), Status: q.Get("status"), Cursor: q.Get("cursor")}
	switch o.Status {
	case "", "running", "completed", "failed", "cancelled":
	default:
		return o, errorf(http.StatusBadRequest, CodeBadRequest, "status %q is not one of running, completed, failed, cancelled", o.Status)
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"created_after", &o.CreatedAfter}, {"created_before", &o.CreatedBefore}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				return o, errorf(http.StatusBadRequest, CodeBadRequest, "%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z", p.name, v)
			}
			*p.t = t
		}
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return o, errorf(http.StatusBadRequest, CodeBadRequest, "limit %q is not a number from 1 to 1000", v)
		}
		o.Limit = n
	}
	return o, nil
}

func (s *Server) listPage(ctx context.Context, o docket.ListOptions) (*ExecutionList, error) {
	xs, next, err := s.eng.List(ctx, o)
	if err != nil {
		return nil, err
	}
	out := &ExecutionList{Executions: make([]ExecutionSummary, len(xs)), NextCursor: next}
	for i, x := range xs {
		out.Executions[i] = ExecutionSummary{ID: x.ID, Graph: x.Graph, Run: x.Run, Status: x.Status, Error: x.Error,
			CreatedAt: x.CreatedAt, FinishedAt: x.FinishedAt}
	}
	return out, nil
}

func (s *Server) list(w http.ResponseWriter, r *http.Request) error {
	o, err := listOptions(r.URL.Query())
	if err != nil {
		return err
	}
	page, err := s.listPage(r.Context(), o)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) describe(w http.ResponseWriter, r *http.Request) error {
	x, err := s.execution(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, x)
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) error {
	evs, err := s.history(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, History{Events: evs})
}

// history returns an execution's history, with the durable calls that
// carry no time placed after the start of their step.
func (s *Server) history(ctx context.Context, id string) ([]docket.HistoryEvent, error) {
	evs, err := s.eng.History(ctx, id)
	if err != nil {
		return nil, err
	}
	return orderHistory(evs), nil
}

// orderHistory moves the events that have no time (the durable calls of a
// step whose start is not recorded yet, which the engine sorts first) to
// just after their step's last step-started event, or else its step-ready
// event.
func orderHistory(evs []docket.HistoryEvent) []docket.HistoryEvent {
	untimed := map[string][]docket.HistoryEvent{}
	var timed, rest []docket.HistoryEvent
	for _, e := range evs {
		switch {
		case e.Time.IsZero() && e.Step != "":
			untimed[e.Step] = append(untimed[e.Step], e)
		case e.Time.IsZero():
			rest = append(rest, e)
		default:
			timed = append(timed, e)
		}
	}
	anchor := map[string]int{}
	started := map[string]bool{}
	for i, e := range timed {
		switch {
		case e.Kind == "step-started":
			anchor[e.Step], started[e.Step] = i, true
		case e.Kind == "step-ready" && !started[e.Step]:
			anchor[e.Step] = i
		}
	}
	out := make([]docket.HistoryEvent, 0, len(evs))
	for i, e := range timed {
		out = append(out, e)
		if a, ok := anchor[e.Step]; ok && a == i {
			out = append(out, untimed[e.Step]...)
			delete(untimed, e.Step)
		}
	}
	for _, e := range evs { // steps with no timed event, in the engine's order
		if es, ok := untimed[e.Step]; ok {
			out = append(out, es...)
			delete(untimed, e.Step)
		}
	}
	return append(out, rest...)
}

func (s *Server) signal(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req SignalRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return errorf(http.StatusBadRequest, CodeBadRequest, `"name" is required`)
	}
	// An engine without the graph (docket server) records the signal
	// without checking its payload's type; the receiving step decodes it.
	if err := s.eng.SignalEncoded(r.Context(), id, req.Name, req.Payload); err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, Accepted{ID: id})
}

func (s *Server) update(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req UpdateRequest
	if err := s.readJSON(w, r, &req); err != nil {
		return err
	}
	if req.Name == "" {
		return errorf(http.StatusBadRequest, CodeBadRequest, `"name" is required`)
	}
	var opts []docket.UpdateOption
	if req.UpdateID != "" {
		opts = append(opts, docket.UpdateID(req.UpdateID))
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.UpdateTimeout)
	defer cancel()
	resp, err := s.eng.UpdateEncoded(ctx, id, req.Name, req.Request, opts...)
	if err != nil {
		return notServed(err, "an update")
	}
	return writeJSON(w, http.StatusOK, UpdateResponse{Response: resp})
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) error {
	ans, err := s.eng.QueryEncoded(r.Context(), r.PathValue("id"), r.PathValue("name"))
	if err != nil {
		return notServed(err, "query "+strconv.Quote(r.PathValue("name")))
	}
	return writeJSON(w, http.StatusOK, QueryResponse{Answer: ans})
}

func (s *Server) cancel(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	// An engine without the graph records the request; a worker that runs
	// the graph stops the execution and compensates it.
	if err := s.eng.Cancel(r.Context(), id); err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, Accepted{ID: id})
}

// execution builds the API's view of an execution from Describe and the
// stored records.
func (s *Server) execution(ctx context.Context, id string) (*Execution, error) {
	d, err := s.eng.Describe(ctx, id)
	if err != nil {
		return nil, err
	}
	st := s.eng.Store()
	x, err := st.Execution(ctx, id)
	if err != nil {
		return nil, err
	}
	recs, err := st.Steps(ctx, id)
	if err != nil {
		return nil, err
	}
	stored := map[string]*store.Step{}
	for i := range recs {
		stored[recs[i].Name] = &recs[i]
	}
	g, served := s.graphs[d.Graph]
	out := &Execution{ID: d.ID, Graph: d.Graph, Run: d.Run, Status: d.Status, CancelRequested: d.CancelRequested,
		Error: d.Error, Target: x.Target, CreatedAt: d.CreatedAt, UpdatedAt: d.UpdatedAt, FinishedAt: d.FinishedAt,
		Deadline: d.Deadline, Parent: x.Parent, ParentStep: x.ParentStep, Inputs: []Value{}, Steps: []Step{},
		Waiting: d.Waiting, Signals: []string{}, GraphServed: served}
	if out.Waiting == nil {
		out.Waiting = []string{}
	}
	for _, in := range x.Inputs {
		out.Inputs = append(out.Inputs, *valueOf(in.Type, nil, in.Data))
	}
	if x.Result != nil {
		out.Result = valueOf(x.Result.Type, d.Result, x.Result.Data)
	}
	signals := map[string]bool{}
	for name := range g.Signals {
		signals[name] = true
	}
	keep := map[string]bool{}
	for _, si := range d.Steps {
		step := Step{Name: si.Name, Status: si.Status, Attempts: si.Attempts, Error: si.Error, Wait: si.Wait,
			WakeAt: si.WakeAt, ReadyAt: si.ReadyAt, StartedAt: si.StartedAt, FinishedAt: si.FinishedAt,
			Compensation: si.Compensation, CompensationAttempts: si.CompensationAttempts, CompensationError: si.CompensationError}
		if rec := stored[si.Name]; rec != nil {
			if rec.Output != nil {
				step.Output = valueOf(rec.Output.Type, si.Output, rec.Output.Data)
			}
			if rec.Status == store.StepSuspended && rec.Signal != "" && !strings.HasPrefix(rec.Signal, "update:") {
				signals[rec.Signal] = true
			}
			kids, err := children(ctx, st, id, si.Name)
			if err != nil {
				return nil, err
			}
			out.Children = append(out.Children, kids...)
		}
		keep[si.Name] = true
		out.Steps = append(out.Steps, step)
	}
	for name := range signals {
		out.Signals = append(out.Signals, name)
	}
	sort.Strings(out.Signals)
	if served {
		out.Layout = graphLayout(g.GraphInfo, func(name string) bool { return keep[name] })
	} else {
		out.Layout = partialLayout(out.Steps)
	}
	return out, nil
}

// children lists the child executions a step called, from its journal.
func children(ctx context.Context, st store.Store, id, step string) ([]Child, error) {
	journal, err := st.Journal(ctx, id, step)
	if err != nil {
		return nil, err
	}
	var out []Child
	for _, j := range journal {
		if j.Kind != "call" {
			continue
		}
		graph, key, _ := strings.Cut(j.Name, ":")
		out = append(out, Child{ID: id + "/" + step + "/" + key, Graph: graph, Step: step})
	}
	return out, nil
}

// valueOf shows a value as JSON: the stored bytes when they are JSON (the
// default codec), else the decoded Go value marshalled, else base64.
func valueOf(typ string, decoded any, data []byte) *Value {
	v := &Value{Type: typ}
	switch {
	case len(data) == 0:
		v.Value = json.RawMessage("null")
	case json.Valid(data):
		v.Value = data
	default:
		if decoded != nil {
			if b, err := json.Marshal(decoded); err == nil {
				v.Value = b
				return v
			}
		}
		b, _ := json.Marshal(data)
		v.Value, v.Encoding = b, "base64"
	}
	return v
}

func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	_, err := w.Write(openAPISpec)
	return err
}
