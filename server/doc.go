// Package server serves a Docket engine over HTTP: a JSON API under
// /api/v1 and a web UI at /, both from one http.Handler.
//
// Mount it in your own program:
//
//	eng, err := docket.Open(ctx, docket.Config{Graphs: graphs})
//	...
//	http.Handle("/", server.Handler(eng))
//
// or under a prefix, with settings:
//
//	srv, err := server.New(server.Config{Engine: eng, BasePath: "/docket"})
//	mux.Handle("/docket/", srv)
//	httpServer.RegisterOnShutdown(srv.Close) // end event streams on Shutdown
//
// # The API
//
// openapi.yaml (served at /api/v1/openapi.yaml) documents every endpoint:
// graphs (GET /graphs, with a drawing of each), start (POST /executions
// with a StartRequest: inputs as JSON by type name), list (GET
// /executions with graph, status and creation-time filters and cursor
// paging), describe, history, signal, update, query and cancel (under
// /executions/{id}), and server-sent event streams of one execution or of a
// list page (GET /executions/{id}/events, GET /events). IDs with slashes —
// child executions — are escaped in paths (%2F).
//
// Errors are JSON, {"error": {"code": "not_found", "message": "..."}}, with
// a stable code (the Code constants) and a matching status: 400 for bad
// input, 404 for unknown things, 409 for finished executions and taken IDs,
// 413 for bodies over Config.MaxBodyBytes, 500 otherwise. A panicking
// handler answers 500 without a stack trace; the stack goes to the log.
//
// # The web UI
//
// Plain HTML, CSS and JavaScript modules embedded in the binary: a live
// list of executions with filters and paging; an execution's page with its
// graph drawn and coloured by step state, each step's attempts, errors,
// outputs and waits, the inputs and result, a timeline of its history, and
// forms to signal, update, query and cancel it; and each graph's page with
// its drawing and a start form. Pages update through the event streams.
//
// # Serving a store whose graphs run elsewhere
//
// An engine opened with no graphs and Workers: -1 is a client of a store
// that other processes work on (this is `docket server`). Listing,
// describing (outputs shown as stored), history, the built-in queries,
// signals and cancellation work; signals and cancellations are recorded in
// the store for the graph's workers to act on, without checking a signal's
// payload against a declared type. Starting needs the graph
// (unknown_graph), and so do updates and custom queries, which run the
// graph's code (graph_not_served, 501).
//
// # Security
//
// The server has no authentication of its own: anyone who reaches it can
// start, signal, update and cancel executions and read their values. The
// docket command binds to 127.0.0.1; to serve others, mount the handler
// behind your own authentication middleware.
//
// # Event streams
//
// The engine has no change feed, so a stream reads the execution (or the
// list page) every Config.PollInterval and sends an event when it changed.
package server
