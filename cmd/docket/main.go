package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/docket-run/docket/internal/apiclient"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C ends the process at once
	}()
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// env is what a command reads and writes, so tests can run commands in
// process.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// command is one subcommand of docket.
type command struct {
	name    string
	args    string // usage after the name
	summary string
	run     func(ctx context.Context, e *env, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"dev", "[--db FILE] [--addr HOST:PORT]", "run a dev server: SQLite file, workers, demo graphs, API and web UI", runDev},
		{"server", "--store URL [--addr HOST:PORT]", "serve the API and web UI over an existing store (no workers)", runServer},
		{"migrate", "--store URL", "create or upgrade a store's schema (PostgreSQL or SQLite)", runMigrate},
		{"graphs", "", "list the graphs the server runs", runGraphs},
		{"start", "GRAPH [INPUT-JSON] [--id ID] [--input TYPE=JSON]...", "start an execution", runStart},
		{"list", "[--graph G] [--status S] [--limit N] [--cursor C]", "list executions, newest first", runList},
		{"describe", "ID", "show an execution and its steps", runDescribe},
		{"history", "ID", "show what happened in an execution", runHistory},
		{"signal", "ID NAME [PAYLOAD-JSON | -]", "send a signal", runSignal},
		{"update", "ID NAME [REQUEST-JSON | -] [--update-id U]", "send an update and print the answer", runUpdate},
		{"query", "ID NAME", "ask a query (docket.status, docket.outputs, docket.waiting, or a step's own)", runQuery},
		{"cancel", "ID", "cancel an execution", runCancel},
		{"version", "", "print the version", runVersion},
	}
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ msg string }

// Error returns the message.
func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return &usageError{fmt.Sprintf(format, args...)} }

// run runs the command line args and returns the exit status.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c := find(args[1]); c != nil {
				fmt.Fprintf(e.stdout, "usage: docket %s %s\n\n%s\n", c.name, c.args, c.summary)
				return 0
			}
		}
		usage(e.stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c := find(args[0])
	if c == nil {
		fmt.Fprintf(e.stderr, "docket: unknown command %q (run docket help)\n", args[0])
		return 2
	}
	err := c.run(ctx, e, args[1:])
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(e.stderr, "docket %s: %s\nusage: docket %s %s\n", c.name, ue.msg, c.name, c.args)
		return 2
	}
	var ae *apiclient.Error
	if errors.As(err, &ae) {
		fmt.Fprintf(e.stderr, "docket: %s (%s)\n", oneLine(strings.TrimPrefix(ae.Message, "docket: ")), ae.Code)
		return 1
	}
	fmt.Fprintf(e.stderr, "docket: %s\n", oneLine(err.Error()))
	return 1
}

func find(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func usage(w io.Writer) {
	fmt.Fprint(w, `docket runs and inspects Docket executions.

usage: docket COMMAND [ARGS] [FLAGS]

`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Commands that talk to a server take --server URL (default $DOCKET_SERVER,
else http://127.0.0.1:7070) and --json for machine-readable output.
Run "docket help COMMAND" for a command's arguments.
`)
}

// oneLine keeps the first line of a message.
func oneLine(s string) string {
	first, rest, ok := strings.Cut(s, "\n")
	if ok && strings.TrimSpace(rest) != "" {
		return first + " …"
	}
	return first
}

// newFlags returns a command's flag set, which reports errors to the caller
// instead of exiting.
func newFlags(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet("docket "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		c := find(name)
		fmt.Fprintf(e.stderr, "usage: docket %s %s\n\n%s\n\nflags:\n", c.name, c.args, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags placed anywhere among the arguments and returns the
// positional ones; everything after "--" is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var tail []string
	for i, a := range args {
		if a == "--" {
			args, tail = args[:i], args[i+1:]
			break
		}
	}
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &usageError{err.Error()}
		}
		args = fs.Args()
		if len(args) == 0 {
			return append(pos, tail...), nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
