// Package sqlstore holds what the SQL backends of package store share and
// only differ in by dialect: their versioned migrations and the statement
// and paging of List.
package sqlstore

import (
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/docket-run/docket/store"
)

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string // the file name without .sql
	SQL     string
}

// Migrations reads the files migrations/NNNN_name.sql of fsys, in order.
// They must be numbered from 1 without gaps. backend names the store in
// errors.
func Migrations(fsys fs.FS, backend string) ([]Migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, name := range names {
		base := path.Base(name)
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("%s: migration %s: name must be NNNN_name.sql", backend, base)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: strings.TrimSuffix(base, ".sql"), SQL: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i, m := range out {
		if m.Version != i+1 {
			return nil, fmt.Errorf("%s: migration %s: expected version %d", backend, m.Name, i+1)
		}
	}
	return out, nil
}

// Dialect is how a backend writes statement parameters and times.
type Dialect struct {
	// Param returns the placeholder of the n-th parameter, from 1.
	Param func(n int) string
	// Time converts a time to the parameter the backend stores.
	Time func(time.Time) any
}

// errCursor reports a List cursor that is not one of ours.
func errCursor(cursor string) error {
	return fmt.Errorf("cursor %s: %w", strconv.Quote(cursor), store.ErrBadCursor)
}

// ListSQL returns the statement of a List, reading cols and then the
// creation number (ord) of the newest executions that match q, one more
// than the page holds so that Page can tell whether another page follows;
// its arguments; and the page size.
func ListSQL(q store.ListQuery, cols string, d Dialect) (sql string, args []any, limit int, err error) {
	limit = q.Limit
	if limit <= 0 {
		limit = 100
	}
	var where []string
	add := func(cond string, arg any) {
		args = append(args, arg)
		where = append(where, cond+" "+d.Param(len(args)))
	}
	if q.Cursor != "" {
		ord, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || ord <= 0 {
			return "", nil, 0, errCursor(q.Cursor)
		}
		add("ord <", ord)
	}
	if q.Graph != "" {
		add("graph =", q.Graph)
	}
	if q.Status != "" {
		add("status =", string(q.Status))
	}
	if !q.CreatedAfter.IsZero() {
		add("created_at >", d.Time(q.CreatedAfter))
	}
	if !q.CreatedBefore.IsZero() {
		add("created_at <", d.Time(q.CreatedBefore))
	}
	sql = `SELECT ` + cols + `, ord FROM executions`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, limit+1)
	return sql + " ORDER BY ord DESC LIMIT " + d.Param(len(args)), args, limit, nil
}

// Listed is a row of a List statement: an execution and its creation number.
type Listed struct {
	Exec store.Execution
	Ord  int64
}

// Page returns the executions of a page read by ListSQL, and the cursor of
// the next page ("" when there is none).
func Page(rows []Listed, limit int) ([]store.Execution, string) {
	next := ""
	if len(rows) > limit {
		rows = rows[:limit]
		next = strconv.FormatInt(rows[limit-1].Ord, 10)
	}
	out := make([]store.Execution, len(rows))
	for i, r := range rows {
		out[i] = r.Exec
	}
	return out, next
}
