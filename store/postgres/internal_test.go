package postgres

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/docket-run/docket/store"
)

// TestErrorKinds checks the mapping of SQLSTATEs that the other tests
// cannot provoke on a test server (a full disk, a corrupt page).
func TestErrorKinds(t *testing.T) {
	s := &Store{name: "db:5432/app"}
	for _, c := range []struct {
		code, table string
		want        error
	}{
		{"25006", "", store.ErrReadOnly},
		{"53100", "", store.ErrFull},
		{"XX001", "", store.ErrCorrupt},
		{"XX002", "", store.ErrCorrupt},
		{"55P03", "", store.ErrBusy},
		{"40001", "", store.ErrBusy},
		{"40P01", "", store.ErrBusy},
		{"23505", "executions", store.ErrExists},
		{"23505", "cache", nil},
		{"23503", "steps", store.ErrNotFound},
		{"42P01", "", nil},
	} {
		pe := &pgconn.PgError{Severity: "ERROR", Code: c.code, Message: "the server's words", TableName: c.table}
		err := s.wrap("put step", fmt.Errorf("batch: %w", pe))
		for _, k := range []error{store.ErrReadOnly, store.ErrFull, store.ErrCorrupt, store.ErrBusy, store.ErrExists, store.ErrNotFound} {
			if errors.Is(err, k) != (k == c.want) {
				t.Errorf("%s on %q: errors.Is(%v, %v) = %v", c.code, c.table, err, k, !(k == c.want))
			}
		}
		var got *pgconn.PgError
		if !errors.As(err, &got) || got != pe {
			t.Errorf("%s: the driver's error is not in the chain of %v", c.code, err)
		}
		for _, part := range []string{"db:5432/app", "put step", "the server's words", c.code} {
			if !strings.Contains(err.Error(), part) {
				t.Errorf("%s: %q does not say %q", c.code, err, part)
			}
		}
	}
	if !retryable(&pgconn.PgError{Code: "40P01"}) || retryable(&pgconn.PgError{Code: "55P03"}) {
		t.Error("retryable: deadlocks are, lock timeouts are not")
	}
}

func TestPayloads(t *testing.T) {
	x := func(id string) store.Event { return store.Event{Kind: store.EventExec, Exec: id} }
	tk := func(id string) store.Event { return store.Event{Kind: store.EventTask, Exec: id} }
	f := func(id string) store.Event { return store.Event{Kind: store.EventFinished, Exec: id} }
	reset := []store.Event{{Kind: store.EventReset}}
	for _, c := range []struct {
		id                       string
		changed, finished, ready bool
		payload                  string
		events                   []store.Event
	}{
		{"e1", true, false, false, "x:e1", []store.Event{x("e1")}},
		{"e1", false, false, true, "t:e1", []store.Event{tk("e1")}},
		{"a:b", true, false, true, "xt:a:b", []store.Event{x("a:b"), tk("a:b")}},
		{"e2", true, true, false, "xf:e2", []store.Event{x("e2"), f("e2")}},
		{"e3", true, true, true, "xft:e3", []store.Event{x("e3"), f("e3"), tk("e3")}},
		{"", true, false, false, "x:", []store.Event{x("")}},
		{"e1", false, false, false, "", nil},
		{strings.Repeat("i", maxIDInPayload+1), true, true, true, "r", reset},
	} {
		p := eventPayload(c.id, c.changed, c.finished, c.ready)
		if p != c.payload {
			t.Errorf("eventPayload(%.10q, %v, %v, %v) = %.10q, want %.10q", c.id, c.changed, c.finished, c.ready, p, c.payload)
		}
		if p != "" && !slices.Equal(parsePayload(p), c.events) {
			t.Errorf("parsePayload(%.10q) = %v, want %v", p, parsePayload(p), c.events)
		}
	}
	for _, bad := range []string{"", "r", "q:e1", ":e1", "xq:e1"} {
		if got := parsePayload(bad); !slices.Equal(got, reset) {
			t.Errorf("parsePayload(%q) = %v, want a reset", bad, got)
		}
	}
}

func TestNames(t *testing.T) {
	if got := channelName("docket"); got != "docket_events_docket" {
		t.Errorf("channelName(docket) = %q", got)
	}
	long := strings.Repeat("s", 60)
	if got := channelName(long); len(got) > 63 || got == channelName(long+"x") || !strings.HasPrefix(got, "docket_events_") {
		t.Errorf("channelName of a long schema = %q", got)
	}
	a, b := &Store{seed: 1}, &Store{seed: 2}
	if a.lockKey("e") == b.lockKey("e") || a.lockKey("e") == a.lockKey("f") {
		t.Error("lock keys do not depend on the schema and the ID")
	}
	if migrateKey("a") == migrateKey("b") {
		t.Error("migration lock keys do not depend on the schema")
	}
}

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"plain":           "plain",
		"ünïcode ✓":       "ünïcode ✓",
		"nul\x00byte":     "nul\uFFFDbyte",
		"bad\xffutf8\xfe": "bad\uFFFDutf8\uFFFD",
	} {
		if got := clean(in); got != want {
			t.Errorf("clean(%q) = %q, want %q", in, got, want)
		}
	}
}
