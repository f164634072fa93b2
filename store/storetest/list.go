package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

func list(t *testing.T, s store.Store, q store.ListQuery) ([]store.Execution, string) {
	t.Helper()
	got, cursor, err := s.List(t.Context(), q)
	if err != nil {
		t.Fatalf("List(%+v): %v", q, err)
	}
	return got, cursor
}

func execIDs(es []store.Execution) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.ID
	}
	return out
}

func testListOrder(t *testing.T, s store.Store) {
	if got, cursor := list(t, s, store.ListQuery{}); len(got) != 0 || cursor != "" {
		t.Errorf("List of an empty store = %v, %q", execIDs(got), cursor)
	}
	var want []store.Execution
	for i := range 5 {
		e := full(fmt.Sprintf("e%d", i))
		// CreatedAt runs backwards: List orders by creation, not by CreatedAt.
		e.CreatedAt = e.CreatedAt.Add(-time.Duration(i) * time.Hour)
		create(t, s, e)
		want = append(want, e)
	}
	slices.Reverse(want)
	got, cursor := list(t, s, store.ListQuery{})
	check(t, "List", got, want)
	if cursor != "" {
		t.Errorf("cursor = %q on the only page", cursor)
	}
	// Updating an execution does not move it.
	update(t, s, "e1", func(tx store.Tx) error {
		e, err := tx.Execution()
		if err != nil {
			return err
		}
		e.Status, e.UpdatedAt = store.Completed, e.UpdatedAt.Add(time.Hour)
		return tx.PutExecution(e)
	})
	got, _ = list(t, s, store.ListQuery{})
	check(t, "IDs after an update", execIDs(got), []string{"e4", "e3", "e2", "e1", "e0"})
}

func testListFilters(t *testing.T, s store.Store) {
	for i := range 8 {
		e := minimal(fmt.Sprintf("e%d", i))
		e.Graph = "g1"
		if i%2 == 1 {
			e.Graph = "g2"
		}
		if i%3 == 0 {
			e.Status = store.Completed
		}
		e.CreatedAt = at(60 * i)
		create(t, s, e)
	}
	for _, tc := range []struct {
		q    store.ListQuery
		want []string
	}{
		{store.ListQuery{Graph: "g1"}, []string{"e6", "e4", "e2", "e0"}},
		{store.ListQuery{Graph: "g3"}, nil},
		{store.ListQuery{Status: store.Completed}, []string{"e6", "e3", "e0"}},
		{store.ListQuery{Status: store.Running}, []string{"e7", "e5", "e4", "e2", "e1"}},
		{store.ListQuery{Status: store.Failed}, nil},
		{store.ListQuery{Graph: "g1", Status: store.Completed}, []string{"e6", "e0"}},
		{store.ListQuery{CreatedAfter: at(120), CreatedBefore: at(300)}, []string{"e4", "e3"}},
		{store.ListQuery{CreatedAfter: at(119)}, []string{"e7", "e6", "e5", "e4", "e3", "e2"}},
		{store.ListQuery{CreatedBefore: at(61)}, []string{"e1", "e0"}},
		{store.ListQuery{CreatedAfter: at(60).In(time.FixedZone("Q", 3600)), CreatedBefore: at(240), Graph: "g2"}, []string{"e3"}},
		{store.ListQuery{CreatedAfter: at(1000)}, nil},
	} {
		got, cursor := list(t, s, tc.q)
		check(t, fmt.Sprintf("List(%+v)", tc.q), execIDs(got), tc.want)
		if cursor != "" {
			t.Errorf("List(%+v): cursor %q on the only page", tc.q, cursor)
		}
	}
}

// walk pages through List and returns the IDs in order and the page sizes.
func walkList(t *testing.T, s store.Store, q store.ListQuery, between func()) (all []string, sizes []int) {
	t.Helper()
	for range 1000 {
		got, cursor := list(t, s, q)
		all = append(all, execIDs(got)...)
		sizes = append(sizes, len(got))
		if cursor == "" {
			return all, sizes
		}
		if len(got) == 0 {
			t.Fatalf("List(%+v) returned an empty page with cursor %q", q, cursor)
		}
		if between != nil {
			between()
		}
		q.Cursor = cursor
	}
	t.Fatal("List paging does not end")
	return nil, nil
}

func testListPaging(t *testing.T, s store.Store) {
	var want, wantG1 []string
	for i := range 10 {
		e := minimal(fmt.Sprintf("e%02d", i))
		if i%2 == 0 {
			e.Graph = "g1"
			wantG1 = append([]string{e.ID}, wantG1...)
		}
		create(t, s, e)
		want = append([]string{e.ID}, want...)
	}
	for _, tc := range []struct {
		q     store.ListQuery
		want  []string
		sizes []int
	}{
		{store.ListQuery{Limit: 3}, want, []int{3, 3, 3, 1}},
		{store.ListQuery{Limit: 5}, want, []int{5, 5}},
		{store.ListQuery{Limit: 1}, want, []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1}},
		{store.ListQuery{Limit: 10}, want, []int{10}},
		{store.ListQuery{Limit: 11}, want, []int{10}},
		{store.ListQuery{Limit: 2, Graph: "g1"}, wantG1, []int{2, 2, 1}},
	} {
		got, sizes := walkList(t, s, tc.q, nil)
		check(t, fmt.Sprintf("walk %+v", tc.q), got, tc.want)
		check(t, fmt.Sprintf("page sizes of %+v", tc.q), sizes, tc.sizes)
	}
	// Executions created during a walk are not on its later pages.
	n := 0
	got, _ := walkList(t, s, store.ListQuery{Limit: 4}, func() {
		n++
		create(t, s, minimal(fmt.Sprintf("late%d", n)))
	})
	check(t, "walk with inserts", got, want)
}

func testListDefaultLimit(t *testing.T, s store.Store) {
	const n = 105
	for i := range n {
		create(t, s, minimal(fmt.Sprintf("e%03d", i)))
	}
	got, cursor := list(t, s, store.ListQuery{})
	if len(got) != 100 || cursor == "" {
		t.Fatalf("List with no limit: %d executions, cursor %q; want 100 and a cursor", len(got), cursor)
	}
	if got[0].ID != "e104" || got[99].ID != "e005" {
		t.Errorf("first page runs %s..%s, want e104..e005", got[0].ID, got[99].ID)
	}
	got, cursor = list(t, s, store.ListQuery{Cursor: cursor})
	check(t, "second page", execIDs(got), []string{"e004", "e003", "e002", "e001", "e000"})
	if cursor != "" {
		t.Errorf("cursor %q after the last page", cursor)
	}
}

func testListBadCursor(t *testing.T, s store.Store) {
	for i := range 3 {
		create(t, s, minimal(fmt.Sprintf("e%d", i)))
	}
	for _, c := range []string{"garbage!", "\x00", "🙂"} {
		if _, _, err := s.List(t.Context(), store.ListQuery{Cursor: c}); !errors.Is(err, store.ErrBadCursor) {
			t.Errorf("List with cursor %q: got %v, want ErrBadCursor", c, err)
		}
	}
}

func testCache(t *testing.T, s store.Store) {
	get := func(key string, now time.Time) ([]byte, bool) {
		t.Helper()
		v, ok, err := s.CacheGet(t.Context(), key, now)
		if err != nil {
			t.Fatalf("CacheGet(%q): %v", key, err)
		}
		return v, ok
	}
	set := func(key string, v []byte, expires time.Time) {
		t.Helper()
		if err := s.CacheSet(t.Context(), key, v, expires); err != nil {
			t.Fatalf("CacheSet(%q): %v", key, err)
		}
	}
	expect := func(what, key string, now time.Time, want []byte, wantOK bool) {
		t.Helper()
		v, ok := get(key, now)
		if ok != wantOK || !bytes.Equal(v, want) {
			t.Errorf("%s: CacheGet(%q, %v) = %q, %v; want %q, %v", what, key, now, v, ok, want, wantOK)
		}
	}
	expect("missing", "k", base, nil, false)
	v := []byte{'v', 0, 0xff}
	set("k", v, at(10))
	v[0] = 'X' // the store keeps a copy
	expect("fresh", "k", at(0), []byte{'v', 0, 0xff}, true)
	expect("just before expiry", "k", at(10).Add(-Precision), []byte{'v', 0, 0xff}, true)
	expect("at expiry", "k", at(10), nil, false)
	expect("after expiry", "k", at(11), nil, false)
	got, _ := get("k", at(0))
	got[0] = 'Y' // and hands out copies
	expect("after changing a returned value", "k", at(0), []byte{'v', 0, 0xff}, true)

	set("k", []byte("v2"), at(20))
	expect("overwritten", "k", at(15), []byte("v2"), true)
	expect("other key", "k2", at(15), nil, false)
	set("k2", []byte{}, at(20))
	expect("empty value", "k2", at(15), nil, true)
	set("k", []byte("v3"), at(5))
	expect("overwritten with an earlier expiry", "k", at(6), nil, false)
	expect("overwritten with an earlier expiry, before it", "k", at(4), []byte("v3"), true)
}

func testClose(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	task := addTasks(t, s, "e", store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base})[0]
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ctx := t.Context()
	called := false
	checks := map[string]error{
		"Update": s.Update(ctx, "e", func(store.Tx) error { called = true; return nil }),
	}
	_, checks["Claim"] = s.Claim(ctx, "w", "", at(10), time.Minute, 1)
	_, checks["ExtendLeases"] = s.ExtendLeases(ctx, "w", []int64{task.ID}, at(10))
	_, checks["ExtendLeases without IDs"] = s.ExtendLeases(ctx, "w", nil, at(10))
	checks["Release"] = s.Release(ctx, "w", []int64{task.ID})
	_, _, checks["NextReadyAt"] = s.NextReadyAt(ctx, base)
	_, checks["Execution"] = s.Execution(ctx, "e")
	_, checks["Steps"] = s.Steps(ctx, "e")
	_, checks["Journal"] = s.Journal(ctx, "e", "a")
	_, checks["Tasks"] = s.Tasks(ctx, "e")
	_, _, checks["List"] = s.List(ctx, store.ListQuery{})
	_, _, checks["CacheGet"] = s.CacheGet(ctx, "k", base)
	checks["CacheSet"] = s.CacheSet(ctx, "k", []byte("v"), at(10))
	for name, err := range checks {
		if err == nil {
			t.Errorf("%s after Close: no error", name)
		}
	}
	if called {
		t.Error("Update ran fn after Close")
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
