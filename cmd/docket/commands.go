package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/docket-run/docket/internal/apiclient"
	"github.com/docket-run/docket/internal/version"
	"github.com/docket-run/docket/server"
)

// defaultServer is where the client commands look for a server.
const defaultServer = "http://127.0.0.1:7070"

// clientFlags are the flags of every command that talks to a server.
type clientFlags struct {
	server  string
	json    bool
	timeout time.Duration
}

func addClientFlags(fs *flag.FlagSet, e *env) *clientFlags {
	cf := &clientFlags{}
	def := e.getenv("DOCKET_SERVER")
	if def == "" {
		def = defaultServer
	}
	fs.StringVar(&cf.server, "server", def, "the server's URL ($DOCKET_SERVER)")
	fs.BoolVar(&cf.json, "json", false, "print the API's JSON answer")
	fs.DurationVar(&cf.timeout, "timeout", 90*time.Second, "how long to wait for the server")
	return cf
}

// client returns an API client and a context bounded by --timeout.
func (cf *clientFlags) client(ctx context.Context) (*apiclient.Client, context.Context, context.CancelFunc, error) {
	c, err := apiclient.New(cf.server, nil)
	if err != nil {
		return nil, nil, nil, usagef("%v", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	return c, ctx, cancel, nil
}

// setup parses a client command's flags, checks the number of positional
// arguments (min to max; max < 0 for no limit) and returns a client.
func setup(ctx context.Context, e *env, name string, args []string, min, max int, more func(*flag.FlagSet)) (*clientFlags, []string, *apiclient.Client, context.Context, context.CancelFunc, error) {
	fs := newFlags(e, name)
	cf := addClientFlags(fs, e)
	if more != nil {
		more(fs)
	}
	pos, err := parse(fs, args)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	if len(pos) < min || (max >= 0 && len(pos) > max) {
		return nil, nil, nil, nil, nil, usagef("wrong number of arguments")
	}
	c, cctx, cancel, err := cf.client(ctx)
	if err != nil {
		return nil, nil, nil, nil, nil, err
	}
	return cf, pos, c, cctx, cancel, nil
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// printRaw prints a JSON value indented.
func printRaw(w io.Writer, raw json.RawMessage) error {
	var b bytes.Buffer
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		_, err = fmt.Fprintf(w, "%s\n", raw)
		return err
	}
	_, err := fmt.Fprintf(w, "%s\n", b.Bytes())
	return err
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// when formats a time for tables: local, to the second; "-" when unset.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05")
}

// took formats the time from a to b (or to now).
func took(a, b time.Time) string {
	if a.IsZero() {
		return "-"
	}
	if b.IsZero() {
		b = time.Now()
	}
	d := b.Sub(a)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s to n runes for a table cell.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// readValue reads a JSON argument: "-" reads standard input. It checks
// the JSON so mistakes are reported before anything is sent.
func readValue(e *env, arg, what string) (json.RawMessage, error) {
	if arg == "-" {
		b, err := io.ReadAll(e.stdin)
		if err != nil {
			return nil, err
		}
		arg = string(b)
	}
	arg = strings.TrimSpace(arg)
	if arg == "" {
		return nil, nil
	}
	if !json.Valid([]byte(arg)) {
		return nil, usagef("%s is not valid JSON: %s (quote strings: '\"text\"')", what, clip(arg, 60))
	}
	return json.RawMessage(arg), nil
}

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlags(e, "version")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(e.stdout, "docket %s\n", version.String())
	return err
}

func runGraphs(ctx context.Context, e *env, args []string) error {
	cf, _, c, ctx, cancel, err := setup(ctx, e, "graphs", args, 0, 0, nil)
	if err != nil {
		return err
	}
	defer cancel()
	gs, err := c.Graphs(ctx)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, gs)
	}
	if len(gs) == 0 {
		_, err := fmt.Fprintln(e.stdout, "The server runs no graphs (its workers run elsewhere).")
		return err
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "GRAPH\tSTEPS\tINPUTS\tRESULTS\tSIGNALS")
	for _, g := range gs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", g.Name, len(g.Steps), orDash(strings.Join(g.Inputs, ", ")),
			orDash(strings.Join(g.Results, ", ")), orDash(strings.Join(sortedKeys(g.Signals), ", ")))
	}
	return tw.Flush()
}

// inputFlags collects repeated --input TYPE=JSON flags.
type inputFlags map[string]json.RawMessage

// String is for the flag package.
func (f inputFlags) String() string { return "" }

// Set adds one TYPE=JSON input.
func (f inputFlags) Set(v string) error {
	typ, val, ok := strings.Cut(v, "=")
	if !ok || typ == "" {
		return fmt.Errorf("want TYPE=JSON, e.g. demo.CustomerID='\"c-1\"'")
	}
	if !json.Valid([]byte(val)) {
		return fmt.Errorf("the value of %s is not valid JSON: %s", typ, clip(val, 60))
	}
	f[typ] = json.RawMessage(val)
	return nil
}

func runStart(ctx context.Context, e *env, args []string) error {
	var req server.StartRequest
	inputs := inputFlags{}
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "start", args, 1, 2, func(fs *flag.FlagSet) {
		fs.StringVar(&req.ID, "id", "", "the execution ID (random when empty); starting an existing ID is a no-op")
		fs.Var(inputs, "input", "an input as TYPE=JSON (repeatable)")
		fs.StringVar(&req.Result, "result", "", "the result type, when the graph has several")
		fs.StringVar(&req.Timeout, "exec-timeout", "", "bound the whole execution, e.g. 10m")
	})
	if err != nil {
		return err
	}
	defer cancel()
	req.Graph = pos[0]
	if len(pos) == 2 {
		// The JSON of the graph's one input.
		v, err := readValue(e, pos[1], "the input")
		if err != nil {
			return err
		}
		g, err := c.Graph(ctx, req.Graph)
		if err != nil {
			return err
		}
		if len(g.Inputs) != 1 {
			return usagef("graph %s takes %d inputs (%s); give each with --input TYPE=JSON", g.Name, len(g.Inputs), strings.Join(g.Inputs, ", "))
		}
		inputs[g.Inputs[0]] = v
	}
	if len(inputs) > 0 {
		req.Inputs = inputs
	}
	res, err := c.Start(ctx, req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, res)
	}
	if res.Created {
		_, err = fmt.Fprintf(e.stdout, "started %s (graph %s)\n", res.ID, res.Graph)
	} else {
		_, err = fmt.Fprintf(e.stdout, "%s exists already (graph %s); nothing started\n", res.ID, res.Graph)
	}
	return err
}

func runList(ctx context.Context, e *env, args []string) error {
	var o apiclient.ListOptions
	var after, before string
	cf, _, c, ctx, cancel, err := setup(ctx, e, "list", args, 0, 0, func(fs *flag.FlagSet) {
		fs.StringVar(&o.Graph, "graph", "", "only this graph")
		fs.StringVar(&o.Status, "status", "", "only this status: running, completed, failed or cancelled")
		fs.IntVar(&o.Limit, "limit", 20, "page size")
		fs.StringVar(&o.Cursor, "cursor", "", "the page after a previous one (printed at its end)")
		fs.StringVar(&after, "after", "", "created after this RFC 3339 time, or this long ago (e.g. 1h)")
		fs.StringVar(&before, "before", "", "created before this RFC 3339 time, or this long ago")
	})
	if err != nil {
		return err
	}
	defer cancel()
	for _, p := range []struct {
		s string
		t *time.Time
	}{{after, &o.CreatedAfter}, {before, &o.CreatedBefore}} {
		if p.s == "" {
			continue
		}
		if d, err := time.ParseDuration(p.s); err == nil {
			*p.t = time.Now().Add(-d)
		} else if t, err := time.Parse(time.RFC3339, p.s); err == nil {
			*p.t = t
		} else {
			return usagef("%q is neither an RFC 3339 time nor a duration", p.s)
		}
	}
	page, err := c.List(ctx, o)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, page)
	}
	if len(page.Executions) == 0 {
		_, err := fmt.Fprintln(e.stdout, "No executions.")
		return err
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "ID\tGRAPH\tSTATUS\tCREATED\tTOOK\tERROR")
	for _, x := range page.Executions {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", x.ID, x.Graph, x.Status, when(x.CreatedAt), took(x.CreatedAt, x.FinishedAt), clip(x.Error, 70))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		_, err = fmt.Fprintf(e.stdout, "\nmore: docket list --cursor %s\n", page.NextCursor)
	}
	return err
}

func runDescribe(ctx context.Context, e *env, args []string) error {
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "describe", args, 1, 1, nil)
	if err != nil {
		return err
	}
	defer cancel()
	x, err := c.Describe(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, x)
	}
	w := e.stdout
	tw := table(w)
	fmt.Fprintf(tw, "Execution\t%s\n", x.ID)
	fmt.Fprintf(tw, "Graph\t%s (run %d)\n", x.Graph, x.Run)
	status := x.Status
	if x.CancelRequested && status == "running" {
		status += " (cancel requested)"
	}
	fmt.Fprintf(tw, "Status\t%s\n", status)
	fmt.Fprintf(tw, "Created\t%s\n", when(x.CreatedAt))
	if !x.FinishedAt.IsZero() {
		fmt.Fprintf(tw, "Finished\t%s (took %s)\n", when(x.FinishedAt), took(x.CreatedAt, x.FinishedAt))
	}
	if x.Parent != "" {
		fmt.Fprintf(tw, "Parent\t%s (step %s)\n", x.Parent, x.ParentStep)
	}
	if x.Error != "" {
		fmt.Fprintf(tw, "Error\t%s\n", oneLine(x.Error))
	}
	if x.Result != nil {
		fmt.Fprintf(tw, "Result\t%s %s\n", x.Result.Type, clip(string(x.Result.Value), 100))
	}
	for _, wt := range x.Waiting {
		fmt.Fprintf(tw, "Waiting\t%s\n", wt)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = table(w)
	fmt.Fprintln(tw, "STEP\tSTATUS\tATTEMPTS\tREADY\tTOOK\tCOMPENSATION\tWAIT / ERROR")
	for _, s := range x.Steps {
		dur := "-"
		if !s.FinishedAt.IsZero() {
			start := s.ReadyAt
			if start.IsZero() {
				start = s.StartedAt
			}
			dur = took(start, s.FinishedAt)
		}
		note := s.Wait
		if note == "" {
			note = s.Error
		}
		if s.CompensationError != "" {
			note = s.CompensationError
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Status, s.Attempts, when(s.ReadyAt), dur,
			orDash(s.Compensation), clip(orDash(note), 70))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(x.Children) > 0 {
		fmt.Fprintln(w, "\nChildren:")
		for _, k := range x.Children {
			fmt.Fprintf(w, "  %s (graph %s, from step %s)\n", k.ID, k.Graph, k.Step)
		}
	}
	return nil
}

func runHistory(ctx context.Context, e *env, args []string) error {
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "history", args, 1, 1, nil)
	if err != nil {
		return err
	}
	defer cancel()
	h, err := c.History(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, h)
	}
	tw := table(e.stdout)
	fmt.Fprintln(tw, "TIME\tEVENT\tSTEP\tNAME\tDETAIL")
	for _, ev := range h.Events {
		t := "-"
		if !ev.Time.IsZero() {
			t = ev.Time.Local().Format("15:04:05.000")
		}
		detail := ev.Detail
		if ev.Error != "" {
			detail = strings.TrimSpace(detail + " error: " + ev.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t, ev.Kind, orDash(ev.Step), orDash(ev.Name), clip(orDash(detail), 80))
	}
	return tw.Flush()
}

func runSignal(ctx context.Context, e *env, args []string) error {
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "signal", args, 2, 3, nil)
	if err != nil {
		return err
	}
	defer cancel()
	req := server.SignalRequest{Name: pos[1]}
	if len(pos) == 3 {
		if req.Payload, err = readValue(e, pos[2], "the payload"); err != nil {
			return err
		}
	}
	res, err := c.Signal(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "sent signal %s to %s\n", req.Name, res.ID)
	if res.Note != "" {
		fmt.Fprintf(e.stdout, "note: %s\n", res.Note)
	}
	return nil
}

func runUpdate(ctx context.Context, e *env, args []string) error {
	var uid string
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "update", args, 2, 3, func(fs *flag.FlagSet) {
		fs.StringVar(&uid, "update-id", "", "the update's ID: repeating it returns the first answer")
	})
	if err != nil {
		return err
	}
	defer cancel()
	req := server.UpdateRequest{Name: pos[1], UpdateID: uid}
	if len(pos) == 3 {
		if req.Request, err = readValue(e, pos[2], "the request"); err != nil {
			return err
		}
	}
	resp, err := c.Update(ctx, pos[0], req)
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, server.UpdateResponse{Response: resp})
	}
	return printRaw(e.stdout, resp)
}

func runQuery(ctx context.Context, e *env, args []string) error {
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "query", args, 2, 2, nil)
	if err != nil {
		return err
	}
	defer cancel()
	ans, err := c.Query(ctx, pos[0], pos[1])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, server.QueryResponse{Answer: ans})
	}
	return printRaw(e.stdout, ans)
}

func runCancel(ctx context.Context, e *env, args []string) error {
	cf, pos, c, ctx, cancel, err := setup(ctx, e, "cancel", args, 1, 1, nil)
	if err != nil {
		return err
	}
	defer cancel()
	res, err := c.Cancel(ctx, pos[0])
	if err != nil {
		return err
	}
	if cf.json {
		return printJSON(e.stdout, res)
	}
	fmt.Fprintf(e.stdout, "cancelling %s\n", res.ID)
	if res.Note != "" {
		fmt.Fprintf(e.stdout, "note: %s\n", res.Note)
	}
	return nil
}
