package docket

import (
	"context"
	"fmt"
	"strings"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/memory"
	"github.com/docket-run/docket/store/sqlite"
)

// OpenStore opens a store from a URL: "sqlite:path" (or a bare path ending
// in .db), or "memory:". The empty string means "sqlite:docket.db".
func OpenStore(ctx context.Context, url string) (store.Store, error) {
	switch {
	case url == "":
		return sqlite.Open(ctx, "docket.db")
	case url == "memory:" || url == "memory":
		return memory.New(), nil
	case strings.HasPrefix(url, "sqlite:"):
		path := strings.TrimPrefix(strings.TrimPrefix(url, "sqlite:"), "//")
		if path == "" {
			return nil, fmt.Errorf("docket: store %q names no file; use sqlite:path/to/file.db", url)
		}
		return sqlite.Open(ctx, path)
	case strings.HasSuffix(url, ".db") && !strings.Contains(url, "://"):
		return sqlite.Open(ctx, url)
	}
	return nil, fmt.Errorf("docket: unknown store %q (want sqlite:path/to/file.db or memory: as the URL)", url)
}
