package postgres

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

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
	at := time.Date(2026, 11, 26, 12, 0, 0, 123456000, time.UTC)
	done := &store.Execution{ID: "e4", Graph: "g", Status: store.Completed, FinishedAt: at,
		Result: &store.Value{Type: "int", Data: []byte("42")}}
	failed := &store.Execution{ID: "e:5", Graph: "g", Status: store.Failed, Error: "step \"a\" failed: ✗", FinishedAt: at}
	big := &store.Execution{ID: "e6", Graph: "g", Status: store.Completed, FinishedAt: at,
		Result: &store.Value{Type: "string", Data: []byte(strings.Repeat("d", maxIDInPayload))}}
	fin := func(x *store.Execution) store.Event {
		return store.Event{Kind: store.EventFinished, Exec: x.ID, Final: x}
	}
	for _, c := range []struct {
		id                       string
		changed, finished, ready bool
		final                    *store.Execution
		payload                  string
		events                   []store.Event
	}{
		{"e1", true, false, false, nil, "x:e1", []store.Event{x("e1")}},
		{"e1", false, false, true, nil, "t:e1", []store.Event{tk("e1")}},
		{"a:b", true, false, true, nil, "xt:a:b", []store.Event{x("a:b"), tk("a:b")}},
		{"e2", true, true, false, nil, "xf:e2", []store.Event{x("e2"), f("e2")}},
		{"e3", true, true, true, nil, "xft:e3", []store.Event{x("e3"), f("e3"), tk("e3")}},
		{"", true, false, false, nil, "x:", []store.Event{x("")}},
		{"e1", false, false, false, nil, "", nil},
		{strings.Repeat("i", maxIDInPayload+1), true, true, true, nil, "r", reset},
		// A finished execution's outcome comes with its event, when it fits.
		{"e4", true, true, false, done,
			`xfo:{"id":"e4","g":"g","s":"completed","r":{"type":"int","data":"NDI="},"at":"2026-11-26T12:00:00.123456Z"}`,
			[]store.Event{x("e4"), fin(done)}},
		{"e:5", true, true, true, failed,
			`xfto:{"id":"e:5","g":"g","s":"failed","e":"step \"a\" failed: ✗","at":"2026-11-26T12:00:00.123456Z"}`,
			[]store.Event{x("e:5"), fin(failed), tk("e:5")}},
		{"e6", true, true, false, big, "xf:e6", []store.Event{x("e6"), f("e6")}},
	} {
		p := eventPayload(c.id, c.changed, c.finished, c.ready, c.final)
		if p != c.payload {
			t.Errorf("eventPayload(%.10q, %v, %v, %v) = %.200q, want %.200q", c.id, c.changed, c.finished, c.ready, p, c.payload)
		}
		if p != "" && !reflect.DeepEqual(parsePayload(p), c.events) {
			t.Errorf("parsePayload(%.200q) = %v, want %v", p, parsePayload(p), c.events)
		}
	}
	// A task handed to a worker names it, by length: any byte may be in
	// the worker's ID or the execution's.
	handed := func(id, worker string) store.Event {
		return store.Event{Kind: store.EventTask, Exec: id, Worker: worker}
	}
	for p, want := range map[string][]store.Event{
		"t@2/w1:e1":      {handed("e1", "w1")},
		"xt@5/a:b@c:e:1": {x("e:1"), handed("e:1", "a:b@c")},
		"t@3/w/2:":       {handed("", "w/2")},
		"xfto@1/w:" + `{"id":"e:5","g":"g","s":"failed","e":"step \"a\" failed: ✗","at":"2026-11-26T12:00:00.123456Z"}`: {
			x("e:5"), fin(failed), handed("e:5", "w")},
	} {
		if got := parsePayload(p); !reflect.DeepEqual(got, want) {
			t.Errorf("parsePayload(%q) = %v, want %v", p, got, want)
		}
	}
	for _, bad := range []string{"", "r", "q:e1", ":e1", "xq:e1", "xfo:e1", `xo:{"id":"e","s":"failed"}`,
		`xfo:{"id":"e","s":"running"}`, `fo:{"id":"e","s":"completed"`,
		"t@", "t@2/w1", "t@3/w1:", "t@9/w1:e1", "t@x/w1:e1", "t@0/:e1", "t@-1/w:e1", "t@1w:e1", "t@2/w1e1", "@2/w1:e1"} {
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
