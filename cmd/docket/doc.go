// Command docket runs a Docket dev server, serves an existing store over
// HTTP, and drives executions from the command line.
//
// The dev server needs no set-up: one process with a SQLite file in the
// working directory, workers, a few demo graphs (package internal/demo),
// and the HTTP API and web UI on 127.0.0.1:
//
//	go run ./cmd/docket dev                  # http://127.0.0.1:7070/
//	go run ./cmd/docket dev --db other.db --addr 127.0.0.1:8080
//
// On start it launches one execution of each demo graph (unless executions
// of an earlier run are still in flight): a parallel fan-out, a flaky step
// retried with backoff, a durable sleep, an approval waiting for a
// "decision" signal, a parent graph calling a child graph, and a saga that
// fails at its last step and compensates. Ctrl-C stops it cleanly; running
// it again resumes what was in flight.
//
// docket server serves the API and web UI over a store that other
// processes work on, without workers and without graphs of its own:
//
//	docket server --store sqlite:path/to/docket.db --addr 127.0.0.1:7070
//
// It lists, describes, signals and cancels executions and answers the
// built-in queries; starting, updates and custom queries need a process
// that registers the graph.
//
// The other commands are clients of a server's API, found at --server or
// $DOCKET_SERVER (default http://127.0.0.1:7070). They print tables, or the
// API's JSON with --json, and exit with status 1 and a one-line message
// when the server reports an error (2 for a wrong command line):
//
//	docket graphs
//	docket start storefront '"c-7"' --id shop-7
//	docket start approval --input demo.Expense='{"employee":"ada","amount":90}'
//	docket list --graph trip --status failed --limit 10
//	docket describe approval-1
//	docket history approval-1
//	docket signal approval-1 decision '{"approved": true, "by": "you"}'
//	docket update approval-1 comment '{"by": "you", "text": "ok"}'
//	docket query approval-1 comments
//	docket cancel approval-1
//	docket version
//
// JSON arguments may be "-" to read standard input. Flags may come before
// or after the arguments.
package main
