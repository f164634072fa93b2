package docket

import (
	"context"
	"fmt"
	"strings"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/memory"
)

// OpenStore opens a store from a URL: "sqlite:path" (or a path ending in
// .db), or "memory:". The empty string means "sqlite:docket.db".
func OpenStore(ctx context.Context, url string) (store.Store, error) {
	switch {
	case url == "memory:" || url == "memory":
		return memory.New(), nil
	case strings.HasPrefix(url, "sqlite:"):
	}
	return nil, fmt.Errorf("docket: unknown store %q; use sqlite:path or memory:", url)
}
