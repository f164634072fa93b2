package main

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func sqliteStore(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "docket.db")
}

// attempts records the outcome of every attempt, from the graph's observer.
type attempts struct {
	docket.BaseObserver
	mu   sync.Mutex
	errs []error // by attempt - 1
}

func (a *attempts) StepFinished(_ context.Context, e docket.StepEvent) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.errs = append(a.errs, e.Err)
}

// Attempt 1 fails at item 4 and attempt 2 hangs at item 8; each retry
// starts from the progress its predecessor recorded, and every item is
// processed exactly once, by the attempt that reached it.
func TestRetriesResumeFromHeartbeat(t *testing.T) {
	p := NewProcessor(io.Discard, 0, Fault{Attempt: 1, Item: 4}, Fault{Attempt: 2, Item: 8, Hang: true})
	obs := &attempts{}
	// Two seconds is long for twelve instant items, so only the hang trips
	// the heartbeat timeout, even on a loaded machine.
	g := newGraph(p, 2*time.Second, docket.WithObserver(obs))
	env := docktest.New(t, docktest.Options{Store: sqliteStore(t)}, g)
	ctx := context.Background()

	h, err := docket.Start[*Report](ctx, env.Engine, g, "batch-1", &Batch{Items: 12})
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if *r != (Report{Items: 12, Attempts: 3}) {
		t.Errorf("report %+v, want 12 items in 3 attempts", *r)
	}

	// Each retry resumed where the last heartbeat said.
	if want := []int{0, 4, 8}; !slices.Equal(p.Starts(), want) {
		t.Errorf("the attempts started at items %v, want %v", p.Starts(), want)
	}
	// Every item processed once, by the attempt that got to it.
	for item := range 12 {
		want := []int{1 + item/4} // items 0-3 by attempt 1, 4-7 by 2, 8-11 by 3
		if got := p.ProcessedBy(item); !slices.Equal(got, want) {
			t.Errorf("item %d processed by attempts %v, want %v", item, got, want)
		}
	}

	// Why the attempts ended.
	if len(obs.errs) != 3 {
		t.Fatalf("%d attempts observed, want 3", len(obs.errs))
	}
	if !errors.Is(obs.errs[0], ErrConnReset) {
		t.Errorf("attempt 1 ended with %v, want ErrConnReset", obs.errs[0])
	}
	var te *docket.TimeoutError
	if !errors.As(obs.errs[1], &te) || !te.Heartbeat {
		t.Errorf("attempt 2 ended with %v, want a heartbeat timeout", obs.errs[1])
	}
	if obs.errs[2] != nil {
		t.Errorf("attempt 3 ended with %v, want success", obs.errs[2])
	}

	d, err := env.Describe(ctx, "batch-1")
	if err != nil {
		t.Fatal(err)
	}
	if s := d.Steps[0]; s.Status != "done" || s.Attempts != 3 {
		t.Errorf("step %s after %d attempts, want done after 3", s.Status, s.Attempts)
	}
}

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, sqliteStore(t)); err != nil {
		t.Fatal(err)
	}
	want := `attempt 1 starts at item 0
attempt 1 fails at item 4: connection reset by peer
attempt 2 starts at item 4
attempt 2 hangs at item 8
attempt 3 starts at item 8
processed 12 items in 3 attempts
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}
