// Package apiclient is a small client of Docket's HTTP API (package
// server), used by the docket command.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/docket-run/docket/server"
)

// Client calls one server's API.
type Client struct {
	base string // e.g. http://127.0.0.1:7070 (plus a base path)
	http *http.Client
}

// New returns a client of the server at base, such as
// "http://127.0.0.1:7070" or "http://host/docket". hc may be nil.
func New(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server address %q is not an http:// or https:// URL", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(base, "/") + "/api/v1", http: hc}, nil
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string
	Message string
}

// Error returns the server's message and code.
func (e *Error) Error() string { return e.Message + " (" + e.Code + ")" }

// do sends a request and decodes the JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	res, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the server at %s: %w", strings.TrimSuffix(c.base, "/api/v1"), err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(io.LimitReader(res.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the server's answer: %w", err)
	}
	if res.StatusCode >= 300 {
		var eb server.ErrorBody
		if json.Unmarshal(data, &eb) == nil && eb.Error.Code != "" {
			return &Error{Status: res.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
		}
		return &Error{Status: res.StatusCode, Code: "http_" + strconv.Itoa(res.StatusCode),
			Message: fmt.Sprintf("the server answered %s", res.Status)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("the server's answer is not the JSON expected: %w", err)
	}
	return nil
}

func esc(id string) string { return url.PathEscape(id) }

// Info returns the server's version and graph count.
func (c *Client) Info(ctx context.Context) (*server.Info, error) {
	var out server.Info
	return &out, c.do(ctx, "GET", "/info", nil, &out)
}

// Graphs lists the graphs the server runs.
func (c *Client) Graphs(ctx context.Context) ([]server.GraphInfo, error) {
	var out server.GraphList
	return out.Graphs, c.do(ctx, "GET", "/graphs", nil, &out)
}

// Graph describes one graph.
func (c *Client) Graph(ctx context.Context, name string) (*server.GraphInfo, error) {
	var out server.GraphInfo
	return &out, c.do(ctx, "GET", "/graphs/"+esc(name), nil, &out)
}

// Start starts an execution.
func (c *Client) Start(ctx context.Context, r server.StartRequest) (*server.StartResponse, error) {
	var out server.StartResponse
	return &out, c.do(ctx, "POST", "/executions", r, &out)
}

// ListOptions filters List.
type ListOptions struct {
	Graph, Status, Cursor       string
	CreatedAfter, CreatedBefore time.Time
	Limit                       int
}

// List returns a page of executions.
func (c *Client) List(ctx context.Context, o ListOptions) (*server.ExecutionList, error) {
	q := url.Values{}
	set := func(k, v string) {
		if v != "" {
			q.Set(k, v)
		}
	}
	set("graph", o.Graph)
	set("status", o.Status)
	set("cursor", o.Cursor)
	if !o.CreatedAfter.IsZero() {
		set("created_after", o.CreatedAfter.Format(time.RFC3339Nano))
	}
	if !o.CreatedBefore.IsZero() {
		set("created_before", o.CreatedBefore.Format(time.RFC3339Nano))
	}
	if o.Limit > 0 {
		set("limit", strconv.Itoa(o.Limit))
	}
	path := "/executions"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out server.ExecutionList
	return &out, c.do(ctx, "GET", path, nil, &out)
}

// Describe returns an execution.
func (c *Client) Describe(ctx context.Context, id string) (*server.Execution, error) {
	var out server.Execution
	return &out, c.do(ctx, "GET", "/executions/"+esc(id), nil, &out)
}

// History returns an execution's history.
func (c *Client) History(ctx context.Context, id string) (*server.History, error) {
	var out server.History
	return &out, c.do(ctx, "GET", "/executions/"+esc(id)+"/history", nil, &out)
}

// Signal sends a signal.
func (c *Client) Signal(ctx context.Context, id string, r server.SignalRequest) (*server.Accepted, error) {
	var out server.Accepted
	return &out, c.do(ctx, "POST", "/executions/"+esc(id)+"/signals", r, &out)
}

// Update sends an update and returns the handler's answer.
func (c *Client) Update(ctx context.Context, id string, r server.UpdateRequest) (json.RawMessage, error) {
	var out server.UpdateResponse
	return out.Response, c.do(ctx, "POST", "/executions/"+esc(id)+"/updates", r, &out)
}

// Query asks a query.
func (c *Client) Query(ctx context.Context, id, name string) (json.RawMessage, error) {
	var out server.QueryResponse
	return out.Answer, c.do(ctx, "GET", "/executions/"+esc(id)+"/queries/"+esc(name), nil, &out)
}

// Cancel cancels an execution.
func (c *Client) Cancel(ctx context.Context, id string) (*server.Accepted, error) {
	var out server.Accepted
	return &out, c.do(ctx, "POST", "/executions/"+esc(id)+"/cancel", nil, &out)
}
