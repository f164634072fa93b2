package docket_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

// These tests run the engine against SQLite files in bad shape and check
// that each gets a typed error with a clear message, and that nothing
// already recorded is lost.

func sqliteEngine(t *testing.T, url string, workers int, g *docket.Graph) (*docket.Engine, error) {
	t.Helper()
	eng, err := docket.Open(context.Background(), docket.Config{Store: url, Graphs: []*docket.Graph{g}, Workers: workers})
	if err == nil {
		t.Cleanup(func() { eng.Close() })
	}
	return eng, err
}

func TestReadOnlyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ro.db")
	g := durableCheckout()
	ctx := context.Background()
	eng, err := sqliteEngine(t, "sqlite:"+path, 2, g)
	if err != nil {
		t.Fatal(err)
	}
	h, err := docket.Start[*Shipment](ctx, eng, g, "kept", &Order{ID: "k"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Result(ctx); err != nil {
		t.Fatal(err)
	}
	eng.Close()

	ro, err := sqliteEngine(t, "sqlite:file:"+path+"?mode=ro", -1, g)
	if err != nil {
		t.Fatal(err)
	}
	_, err = docket.Start[*Shipment](ctx, ro, g, "new", &Order{ID: "n"})
	if !errors.Is(err, store.ErrReadOnly) || !strings.Contains(err.Error(), "ro.db") {
		t.Fatalf("Start on a read-only database: %v", err)
	}
	if err := ro.Cancel(ctx, "kept"); err == nil {
		t.Fatal("cancel must fail")
	}
	d, err := ro.Describe(ctx, "kept")
	if err != nil || d.Status != "completed" {
		t.Fatalf("recorded execution lost: %+v %v", d, err)
	}
}

func TestCorruptDatabaseFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a database ", 400)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := sqliteEngine(t, "sqlite:"+path, 1, durableCheckout())
	if !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "junk.db") {
		t.Fatalf("got %v", err)
	}
	if b, _ := os.ReadFile(path); !strings.HasPrefix(string(b), "not a database") {
		t.Fatal("the file was changed")
	}
}

func TestFullDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "full.db")
	g := durableCheckout()
	ctx := context.Background()
	// max_page_count caps the file, standing in for a full disk.
	eng, err := sqliteEngine(t, "sqlite:file:"+path+"?_pragma=max_page_count(60)", 2, g)
	if err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 4000)
	var full error
	started := 0
	for i := range 500 {
		_, err := docket.Start[*Shipment](ctx, eng, g, fmt.Sprintf("o-%d", i), &Order{ID: big})
		if err != nil {
			full = err
			break
		}
		started++
	}
	if !errors.Is(full, store.ErrFull) {
		t.Fatalf("after %d starts: %v, want store.ErrFull", started, full)
	}
	// What was recorded before the disk filled is intact.
	d, err := eng.Describe(ctx, "o-0")
	if err != nil || d.Graph != "checkout" {
		t.Fatalf("%+v %v", d, err)
	}
}

func TestUnknownStoreURL(t *testing.T) {
	_, err := docket.Open(context.Background(), docket.Config{Store: "mysql://x"})
	if err == nil || !strings.Contains(err.Error(), "unknown store") {
		t.Fatalf("got %v", err)
	}
}
