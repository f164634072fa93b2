package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Event streams (server-sent events). The engine has no change feed, so a
// stream looks at the records every PollInterval and sends an event when
// what it would send differs from what it sent last. A comment line every
// 15 seconds keeps idle connections open through proxies.

const keepAlive = 15 * time.Second

// executionEvents streams an execution: an "execution" event with a
// Snapshot now and whenever it changes.
func (s *Server) executionEvents(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	snap := func(ctx context.Context) (any, error) {
		x, err := s.execution(ctx, id)
		if err != nil {
			return nil, err
		}
		h, err := s.history(ctx, id)
		if err != nil {
			return nil, err
		}
		return Snapshot{Execution: x, History: h}, nil
	}
	return s.stream(w, r, "execution", snap)
}

// listEvents streams a list page (the filters of GET /executions): an
// "executions" event with an ExecutionList now and whenever it changes.
func (s *Server) listEvents(w http.ResponseWriter, r *http.Request) error {
	o, err := listOptions(r.URL.Query())
	if err != nil {
		return err
	}
	return s.stream(w, r, "executions", func(ctx context.Context) (any, error) { return s.listPage(ctx, o) })
}

// stream sends what snap returns as events named name until the client
// goes away or the server closes. An error before the first event is
// answered as an ordinary error; a later one ends the stream with an
// "error" event carrying an ErrorBody.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, name string, snap func(context.Context) (any, error)) error {
	ctx := r.Context()
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errorf(http.StatusInternalServerError, CodeInternal, "this connection cannot stream events")
	}
	first, err := snap(ctx)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var last []byte
	send := func(v any) bool {
		b, err := json.Marshal(v)
		if err != nil {
			return false
		}
		if bytes.Equal(b, last) {
			return true
		}
		last = b
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return false
		}
		flusher.Flush()
		return true
	}
	if !send(first) {
		return nil
	}
	poll := time.NewTicker(s.cfg.PollInterval)
	defer poll.Stop()
	idle := time.NewTicker(keepAlive)
	defer idle.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		case <-idle.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			flusher.Flush()
		case <-poll.C:
			v, err := snap(ctx)
			if err != nil {
				if ctx.Err() == nil {
					ae := classify(err)
					b, _ := json.Marshal(ErrorBody{Error: ErrorDetail{Code: ae.code, Message: ae.msg}})
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", b)
					flusher.Flush()
				}
				return nil
			}
			if !send(v) {
				return nil
			}
		}
	}
}
