package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/docket-run/docket"
)

// Config configures a Server. Only Engine is required; the zero value of
// every other field is a sensible default.
type Config struct {
	// Engine is the engine whose executions the server shows and drives.
	// An engine with no graphs and no workers (Workers: -1) serves a store
	// whose graphs run in other processes; see the package documentation
	// for what works then.
	Engine *docket.Engine
	// BasePath is the path the server is mounted under, such as "/docket"
	// (default: the root). Requests must arrive with the prefix still on:
	// mux.Handle("/docket/", srv).
	BasePath string
	// MaxBodyBytes bounds request bodies (default 1 MiB); larger ones get
	// 413 body_too_large.
	MaxBodyBytes int64
	// PollInterval is how often event streams look for changes (default
	// 400ms).
	PollInterval time.Duration
	// UpdateTimeout bounds how long an update request waits for the
	// handler's answer (default 1 minute).
	UpdateTimeout time.Duration
	// Examples are sample JSON for the web UI's forms, by key:
	//   - "<graph>": start inputs, an object as in StartRequest.Inputs;
	//   - "<graph>/signal/<name>": a payload for signal name;
	//   - "<graph>/update/<name>": a request for update name;
	//   - "<graph>/query/<name>": names a custom query (the value is unused).
	Examples map[string]json.RawMessage
	// Version is reported by /api/v1/info (default: Docket's module version).
	Version string
	// Logger receives request failures and recovered panics (default
	// slog.Default()).
	Logger *slog.Logger
}

// Server serves the HTTP API and the web UI of one engine. It is an
// http.Handler; create it with New or Handler.
type Server struct {
	cfg    Config
	eng    *docket.Engine
	log    *slog.Logger
	mux    *http.ServeMux
	graphs map[string]GraphInfo
	names  []string

	// done ends the event streams when the server is closed.
	done chan struct{}
}

// New returns a Server for cfg.Engine.
func New(cfg Config) (*Server, error) {
	if cfg.Engine == nil {
		return nil, errors.New("server: Config.Engine is required")
	}
	base := strings.TrimRight(cfg.BasePath, "/")
	if base != "" && (!strings.HasPrefix(base, "/") || strings.ContainsAny(base, " {}?#")) {
		return nil, fmt.Errorf("server: BasePath %q must be a path such as /docket", cfg.BasePath)
	}
	cfg.BasePath = base
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 400 * time.Millisecond
	}
	if cfg.UpdateTimeout <= 0 {
		cfg.UpdateTimeout = time.Minute
	}
	if cfg.Version == "" {
		cfg.Version = docketVersion()
	}
	s := &Server{cfg: cfg, eng: cfg.Engine, log: cfg.Logger, graphs: map[string]GraphInfo{}, done: make(chan struct{})}
	if s.log == nil {
		s.log = slog.Default()
	}
	for _, info := range s.eng.Graphs() {
		s.graphs[info.Name] = graphInfo(info, cfg.Examples)
		s.names = append(s.names, info.Name)
	}
	s.routes()
	return s, nil
}

// graphInfo describes a graph with its layout and the examples for it.
func graphInfo(info docket.GraphInfo, examples map[string]json.RawMessage) GraphInfo {
	g := GraphInfo{GraphInfo: info, Layout: graphLayout(info, nil), Example: examples[info.Name]}
	for key, v := range examples {
		rest, ok := strings.CutPrefix(key, info.Name+"/")
		if !ok {
			continue
		}
		kind, name, _ := strings.Cut(rest, "/")
		switch kind {
		case "signal":
			if g.SignalExamples == nil {
				g.SignalExamples = map[string]json.RawMessage{}
			}
			g.SignalExamples[name] = v
		case "update":
			if g.UpdateExamples == nil {
				g.UpdateExamples = map[string]json.RawMessage{}
			}
			g.UpdateExamples[name] = v
		case "query":
			g.Queries = append(g.Queries, name)
		}
	}
	sort.Strings(g.Queries)
	return g
}

// Handler returns the API and web UI for eng, mounted at the root, with the
// default Config. Use New for other settings.
func Handler(eng *docket.Engine) http.Handler {
	s, err := New(Config{Engine: eng})
	if err != nil {
		panic(err) // only a nil engine gets here
	}
	return s
}

// Close ends the server's event streams, so that an http.Server shutting
// down is not kept waiting for them (http.Server.RegisterOnShutdown is a
// good place to call it). The server goes on answering other requests, but
// a stream opened after Close ends after its first event.
func (s *Server) Close() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
}

// ServeHTTP serves the API under BasePath+"/api/v1/" and the web UI under
// BasePath+"/".
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer s.recoverPanic(w, r)
	if !strings.HasPrefix(r.URL.Path, s.cfg.BasePath+"/") {
		if r.URL.Path == s.cfg.BasePath {
			http.Redirect(w, r, s.cfg.BasePath+"/", http.StatusMovedPermanently)
			return
		}
		writeError(w, errorf(http.StatusNotFound, CodeNoRoute, "no such page: %s", r.URL.Path))
		return
	}
	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		// The mux's own 404 and 405 are plain text: answer in JSON.
		rec := &statusRecorder{header: http.Header{}}
		h.ServeHTTP(rec, r)
		if allow := rec.header.Get("Allow"); allow != "" {
			w.Header().Set("Allow", allow)
		}
		if rec.Code == http.StatusMethodNotAllowed {
			writeError(w, errorf(rec.Code, CodeMethod, "%s is not allowed on %s", r.Method, r.URL.Path))
			return
		}
		if rec.Code == http.StatusNotFound {
			writeError(w, errorf(rec.Code, CodeNoRoute, "nothing at %s %s (the API is described at %s/api/v1/openapi.yaml)", r.Method, r.URL.Path, s.cfg.BasePath))
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// recoverPanic turns a panicking handler into a 500 with no stack trace in
// the answer; the stack goes to the log.
func (s *Server) recoverPanic(w http.ResponseWriter, r *http.Request) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("docket server: handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
	writeError(w, errorf(http.StatusInternalServerError, CodeInternal, "internal error (the server's log has the details)"))
}

func (s *Server) routes() {
	s.mux = http.NewServeMux()
	b := s.cfg.BasePath
	api := b + "/api/v1"
	handle := func(pattern string, h func(http.ResponseWriter, *http.Request) error) {
		method, path, _ := strings.Cut(pattern, " ")
		s.mux.HandleFunc(method+" "+api+path, func(w http.ResponseWriter, r *http.Request) {
			if err := h(w, r); err != nil {
				ae := classify(err)
				if ae.status == http.StatusInternalServerError {
					s.log.Error("docket server: request failed", "method", r.Method, "path", r.URL.Path, "error", err)
				}
				writeError(w, ae)
			}
		})
	}
	handle("GET /info", s.info)
	handle("GET /graphs", s.listGraphs)
	handle("GET /graphs/{name}", s.getGraph)
	handle("POST /executions", s.start)
	handle("GET /executions", s.list)
	handle("GET /executions/{id}", s.describe)
	handle("GET /executions/{id}/history", s.getHistory)
	handle("GET /executions/{id}/events", s.executionEvents)
	handle("POST /executions/{id}/signals", s.signal)
	handle("POST /executions/{id}/updates", s.update)
	handle("GET /executions/{id}/queries/{name}", s.query)
	handle("POST /executions/{id}/cancel", s.cancel)
	handle("GET /events", s.listEvents)
	handle("GET /openapi.yaml", s.openAPI)
	s.mux.HandleFunc("GET "+b+"/{$}", s.index)
	s.mux.Handle("GET "+b+"/ui/", http.StripPrefix(b+"/ui/", assets()))
}

// writeJSON writes v as the JSON answer with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
	return nil
}

func writeError(w http.ResponseWriter, e *apiError) {
	_ = writeJSON(w, e.status, ErrorBody{Error: ErrorDetail{Code: e.code, Message: e.msg}})
}

// readJSON decodes the request body, of at most MaxBodyBytes, into v:
// exactly one JSON value, with no fields v does not have.
func (s *Server) readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return errorf(http.StatusUnsupportedMediaType, CodeBadRequest, "send the body as application/json, not %s", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		if errors.Is(err, errEOF) {
			return errorf(http.StatusBadRequest, CodeBadRequest, "the request body is empty; send a JSON object")
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "the request body is not valid JSON for this endpoint: %v", err)
	}
	if dec.More() {
		return errorf(http.StatusBadRequest, CodeBadRequest, "the request body has more than one JSON value")
	}
	if _, err := dec.Token(); err != nil && !errors.Is(err, errEOF) {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errorf(http.StatusBadRequest, CodeBadRequest, "the request body has trailing data: %v", err)
	}
	return nil
}

// statusRecorder keeps the status and headers a handler writes and drops
// its body.
type statusRecorder struct {
	header http.Header
	Code   int
}

// Header returns the recorded headers.
func (r *statusRecorder) Header() http.Header { return r.header }

// Write drops the body, noting the status.
func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.Code == 0 {
		r.Code = http.StatusOK
	}
	return len(b), nil
}

// WriteHeader notes the status.
func (r *statusRecorder) WriteHeader(code int) {
	if r.Code == 0 {
		r.Code = code
	}
}
