package server

import (
	"encoding/json"
	"time"

	"github.com/docket-run/docket"
)

// The types below are the JSON bodies of the HTTP API (see openapi.yaml).
// Field names are snake_case; times are RFC 3339; optional fields are left
// out when empty.

// StartRequest is the body of POST /api/v1/executions.
type StartRequest struct {
	// Graph is the name of the graph to start.
	Graph string `json:"graph"`
	// ID is the execution ID, an idempotency key; a random one is chosen
	// when empty.
	ID string `json:"id,omitempty"`
	// Result is the type name of the wanted result; it may be left out when
	// the graph has one result (GraphInfo.Results).
	Result string `json:"result,omitempty"`
	// Inputs maps input type names (GraphInfo.Inputs) to JSON values.
	Inputs map[string]json.RawMessage `json:"inputs,omitempty"`
	// Timeout, a Go duration such as "90s", bounds the whole execution.
	Timeout string `json:"timeout,omitempty"`
}

// StartResponse answers a start.
type StartResponse struct {
	ID    string `json:"id"`
	Graph string `json:"graph"`
	// Created is false when an execution with this ID already existed (the
	// ID is an idempotency key, so that is not an error).
	Created bool `json:"created"`
}

// GraphInfo describes a graph the server's engine runs, with a drawing.
type GraphInfo struct {
	docket.GraphInfo
	// Layout places the graph's steps and inputs for drawing.
	Layout *Layout `json:"layout"`
	// Example holds sample inputs for a start form (Config.Examples).
	Example json.RawMessage `json:"example,omitempty"`
	// SignalExamples and UpdateExamples hold sample payloads and requests
	// by signal and update name, and Queries names custom queries, all
	// from Config.Examples, for the web UI's forms.
	SignalExamples map[string]json.RawMessage `json:"signal_examples,omitempty"`
	UpdateExamples map[string]json.RawMessage `json:"update_examples,omitempty"`
	Queries        []string                   `json:"queries,omitempty"`
}

// GraphList answers GET /api/v1/graphs.
type GraphList struct {
	Graphs []GraphInfo `json:"graphs"`
}

// Value is an encoded value with its Go type name. Value is JSON; a value
// that is not (a codec other than JSON wrote it) is a base64 string and
// Encoding says "base64".
type Value struct {
	Type     string          `json:"type"`
	Value    json.RawMessage `json:"value"`
	Encoding string          `json:"encoding,omitempty"`
}

// Execution is everything recorded about one execution: the answer of GET
// /api/v1/executions/{id}.
type Execution struct {
	ID    string `json:"id"`
	Graph string `json:"graph"`
	Run   int    `json:"run"`
	// Status is running, compensating, completed, failed or cancelled.
	Status          string `json:"status"`
	CancelRequested bool   `json:"cancel_requested,omitempty"`
	Error           string `json:"error,omitempty"`
	// Target is the type name of the wanted result.
	Target string `json:"target,omitempty"`
	// Result is set when the execution completed.
	Result     *Value    `json:"result,omitempty"`
	Inputs     []Value   `json:"inputs"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Deadline   time.Time `json:"deadline,omitzero"`
	// Parent and ParentStep name the execution and step that called this
	// one as a child graph.
	Parent     string `json:"parent,omitempty"`
	ParentStep string `json:"parent_step,omitempty"`
	// Children are the child executions its steps called.
	Children []Child `json:"children,omitempty"`
	// Steps lists every step the execution needs, in plan order.
	Steps []Step `json:"steps"`
	// Waiting says what the execution waits on, one line per waiting step.
	Waiting []string `json:"waiting"`
	// Signals are the signal names it would accept now: those its graph
	// declares and those its steps wait for.
	Signals []string `json:"signals"`
	// GraphServed reports whether this server's engine runs the graph; when
	// it does not, updates and custom queries are unavailable here, outputs
	// are shown as stored, and the layout is a guess (Layout.Partial).
	GraphServed bool    `json:"graph_served"`
	Layout      *Layout `json:"layout"`
}

// Step is one step of an Execution.
type Step struct {
	Name string `json:"name"`
	// Status is pending, ready, running, suspended, done, failed or cancelled.
	Status     string    `json:"status"`
	Attempts   int       `json:"attempts"`
	Error      string    `json:"error,omitempty"`
	Output     *Value    `json:"output,omitempty"`
	Wait       string    `json:"wait,omitempty"`
	WakeAt     time.Time `json:"wake_at,omitzero"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Compensation is "", pending, compensated or failed.
	Compensation         string `json:"compensation,omitempty"`
	CompensationAttempts int    `json:"compensation_attempts,omitempty"`
	CompensationError    string `json:"compensation_error,omitempty"`
}

// Child is an execution started by a step's call of a child graph.
type Child struct {
	ID    string `json:"id"`
	Graph string `json:"graph"`
	Step  string `json:"step"`
}

// ExecutionSummary is one line of a list.
type ExecutionSummary struct {
	ID         string    `json:"id"`
	Graph      string    `json:"graph"`
	Run        int       `json:"run"`
	Status     string    `json:"status"`
	Error      string    `json:"error,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
}

// ExecutionList answers GET /api/v1/executions: one page, newest first.
type ExecutionList struct {
	Executions []ExecutionSummary `json:"executions"`
	// NextCursor fetches the next (older) page; empty on the last one.
	NextCursor string `json:"next_cursor,omitempty"`
}

// History answers GET /api/v1/executions/{id}/history.
type History struct {
	Events []docket.HistoryEvent `json:"events"`
}

// Snapshot is the data of an execution event stream's events: the
// execution and its history as they are now.
type Snapshot struct {
	Execution *Execution            `json:"execution"`
	History   []docket.HistoryEvent `json:"history"`
}

// SignalRequest is the body of POST /api/v1/executions/{id}/signals.
type SignalRequest struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// UpdateRequest is the body of POST /api/v1/executions/{id}/updates.
type UpdateRequest struct {
	Name    string          `json:"name"`
	Request json.RawMessage `json:"request,omitempty"`
	// UpdateID makes a repeated update return the first answer.
	UpdateID string `json:"update_id,omitempty"`
}

// UpdateResponse carries the update handler's answer.
type UpdateResponse struct {
	Response json.RawMessage `json:"response"`
}

// QueryResponse carries a query's answer.
type QueryResponse struct {
	Answer json.RawMessage `json:"answer"`
}

// Accepted answers signals and cancellations.
type Accepted struct {
	ID string `json:"id"`
	// Note explains how the request will be carried out when the server
	// does not run the execution's graph itself.
	Note string `json:"note,omitempty"`
}

// Info answers GET /api/v1/info.
type Info struct {
	Version string `json:"version"`
	// Graphs is how many graphs the server's engine runs; 0 for a server
	// over a store whose graphs run elsewhere.
	Graphs   int    `json:"graphs"`
	BasePath string `json:"base_path"`
}

// ErrorBody is the body of every error answer.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong: Code is stable and meant for programs
// (see the Code constants), Message for people.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}
