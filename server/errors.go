package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

// Error codes of ErrorDetail.Code. They are stable: programs may depend on
// them.
const (
	CodeBadRequest     = "bad_request"        // 400: malformed JSON, a bad parameter
	CodeInvalidInput   = "invalid_input"      // 400: inputs or payloads that do not fit the graph
	CodeUpdateRejected = "update_rejected"    // 400: the update's validator refused it
	CodeBadCursor      = "bad_cursor"         // 400: a list cursor this server did not make
	CodeNotFound       = "not_found"          // 404: no such execution
	CodeUnknownGraph   = "unknown_graph"      // 404: no such graph on this server
	CodeUnknownQuery   = "unknown_query"      // 404: no step answers that query
	CodeUnknownUpdate  = "unknown_update"     // 404: no waiting step handles that update
	CodeNoRoute        = "no_route"           // 404: no such API endpoint
	CodeMethod         = "method_not_allowed" // 405
	CodeAlreadyStarted = "already_started"    // 409: the ID belongs to another graph or target
	CodeFinished       = "finished"           // 409: the execution has already ended
	CodeTooLarge       = "body_too_large"     // 413
	CodeUpdateFailed   = "update_failed"      // 422: the update handler returned an error
	CodeGraphNotServed = "graph_not_served"   // 501: the execution's graph runs elsewhere
	CodeUnavailable    = "unavailable"        // 503: the store is busy, read-only or full
	CodeTimeout        = "timeout"            // 504: no answer in time
	CodeInternal       = "internal"           // 500
)

// apiError is an error with its code and HTTP status.
type apiError struct {
	status int
	code   string
	msg    string
}

// Error returns the message.
func (e *apiError) Error() string { return e.msg }

func errorf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, msg: fmt.Sprintf(format, args...)}
}

// classify maps an error of the engine, the store or a handler to its
// status and code.
func classify(err error) *apiError {
	var (
		ae   *apiError
		mbe  *http.MaxBytesError
		nf   *docket.NotFoundError
		ug   *docket.UnknownGraphError
		fin  *docket.FinishedError
		as   *docket.AlreadyStartedError
		rej  *docket.UpdateRejectedError
		uf   *docket.UpdateError
		uu   *docket.UnknownUpdateError
		uq   *docket.UnknownQueryError
		in   *docket.InputError
		mi   *docket.MissingInputError
		ui   *docket.UnknownInputError
		ut   *docket.UnknownTargetError
		st   *docket.SignalTypeError
		val  *docket.ValidationError
		qt   *docket.QueryTypeError
		corr *docket.CorruptPayloadError
	)
	msg := err.Error()
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, CodeTooLarge, "the request body is larger than %d bytes", mbe.Limit)
	case errors.As(err, &nf):
		return &apiError{http.StatusNotFound, CodeNotFound, msg}
	case errors.As(err, &ug):
		return &apiError{http.StatusNotFound, CodeUnknownGraph, msg}
	case errors.As(err, &fin):
		return &apiError{http.StatusConflict, CodeFinished, msg}
	case errors.As(err, &as):
		return &apiError{http.StatusConflict, CodeAlreadyStarted, msg}
	case errors.As(err, &rej):
		return &apiError{http.StatusBadRequest, CodeUpdateRejected, msg}
	case errors.As(err, &uf):
		return &apiError{http.StatusUnprocessableEntity, CodeUpdateFailed, msg}
	case errors.As(err, &uu):
		return &apiError{http.StatusNotFound, CodeUnknownUpdate, msg}
	case errors.As(err, &uq):
		return &apiError{http.StatusNotFound, CodeUnknownQuery, msg}
	case errors.As(err, &in), errors.As(err, &mi), errors.As(err, &ui), errors.As(err, &ut), errors.As(err, &st), errors.As(err, &val):
		return &apiError{http.StatusBadRequest, CodeInvalidInput, msg}
	case errors.As(err, &qt), errors.As(err, &corr):
		return &apiError{http.StatusInternalServerError, CodeInternal, msg}
	case errors.Is(err, store.ErrBadCursor):
		return &apiError{http.StatusBadRequest, CodeBadCursor, "the cursor is not one this server made; start again without it"}
	case errors.Is(err, store.ErrBusy), errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrFull), errors.Is(err, store.ErrClosed):
		return &apiError{http.StatusServiceUnavailable, CodeUnavailable, msg}
	case errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusGatewayTimeout, CodeTimeout, "no answer in time: " + msg}
	}
	return &apiError{http.StatusInternalServerError, CodeInternal, msg}
}

// notServed turns the engine's unknown-graph error about an existing
// execution into a clearer one: the graph runs in other processes.
func notServed(err error, what string) error {
	var ug *docket.UnknownGraphError
	if errors.As(err, &ug) {
		return errorf(http.StatusNotImplemented, CodeGraphNotServed,
			"%s needs graph %q, which this server does not run; it is available from a process that registers the graph (the execution itself is fine)", what, ug.Graph)
	}
	return err
}
