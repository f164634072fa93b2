package sqlstore

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/docket-run/docket/store"
)

func TestMigrations(t *testing.T) {
	ok := fstest.MapFS{
		"migrations/0002_more.sql": {Data: []byte("B")},
		"migrations/0001_init.sql": {Data: []byte("A")},
	}
	ms, err := Migrations(ok, "x")
	if err != nil || len(ms) != 2 || ms[0].Name != "0001_init" || ms[1].SQL != "B" || ms[1].Version != 2 {
		t.Fatalf("%+v %v", ms, err)
	}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":      {"migrations/0001_a.sql": {}, "migrations/0003_c.sql": {}},
		"bad name": {"migrations/first.sql": {}},
	} {
		if _, err := Migrations(fsys, "x"); err == nil || !strings.HasPrefix(err.Error(), "x: migration") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestListSQLAndPage(t *testing.T) {
	d := Dialect{Param: func(n int) string { return "$" + strconv.Itoa(n) }, Time: func(t time.Time) any { return t.Unix() }}
	sql, args, limit, err := ListSQL(store.ListQuery{Graph: "g", Cursor: "7", CreatedAfter: time.Unix(5, 0), Limit: 2}, "id", d)
	want := "SELECT id, ord FROM executions WHERE ord < $1 AND graph = $2 AND created_at > $3 ORDER BY ord DESC LIMIT $4"
	if err != nil || sql != want || len(args) != 4 || args[2] != int64(5) || args[3] != 3 || limit != 2 {
		t.Fatalf("%q %v %d %v", sql, args, limit, err)
	}
	if _, _, _, err := ListSQL(store.ListQuery{Cursor: "x"}, "id", d); !errors.Is(err, store.ErrBadCursor) {
		t.Fatalf("bad cursor: %v", err)
	}
	rows := []Listed{{store.Execution{ID: "c"}, 3}, {store.Execution{ID: "b"}, 2}, {store.Execution{ID: "a"}, 1}}
	if page, next := Page(rows, 2); len(page) != 2 || page[1].ID != "b" || next != "2" {
		t.Fatalf("%v %q", page, next)
	}
	if page, next := Page(rows[:2], 2); len(page) != 2 || next != "" {
		t.Fatalf("last page: %v %q", page, next)
	}
}
