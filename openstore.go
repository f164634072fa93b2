package docket

import (
	"context"
	"fmt"
	"strings"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/memory"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/sqlite"
)

// OpenStore opens a store from a URL: "sqlite:path" (or a bare path ending
// in .db), a PostgreSQL URL ("postgres://..." or "postgresql://...", opened
// with store/postgres, which brings the schema up to date), or "memory:".
// The empty string means "sqlite:docket.db".
func OpenStore(ctx context.Context, url string) (store.Store, error) {
	switch {
	case url == "":
		return opened(sqlite.Open(ctx, "docket.db"))
	case url == "memory:" || url == "memory":
		return memory.New(), nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, fmt.Errorf("docket: store %q names no file; use sqlite:path/to/file.db", url)
		}
		return opened(sqlite.Open(ctx, path))
	case strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://"):
		return opened(postgres.Open(ctx, url))
	case strings.HasSuffix(url, ".db") && !strings.Contains(url, "://"):
		return opened(sqlite.Open(ctx, url))
	}
	return nil, fmt.Errorf("docket: unknown store %q (want sqlite:path/to/file.db, postgres://... or memory: as the URL)", url)
}

// opened returns a backend as a store.Store, or nil on error: never a nil
// pointer wrapped in a non-nil interface.
func opened[S store.Store](s S, err error) (store.Store, error) {
	if err != nil {
		return nil, err
	}
	return s, nil
}
