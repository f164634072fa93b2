package docket_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	StopTicker    struct{ N int }
	StopTickerOut struct{ N int }
)

// A step waits in ReceiveUnless, suspended; an update arrives, wakes it,
// is applied inside that ReceiveUnless call, and makes stop() true. The
// receive's journal entry was already stored (applyUpdates moved it after
// the update and saved it), and the "stopped" outcome written into it
// afterwards is not marked dirty, so it never reaches the store: the
// stored journal keeps a pending receive in the middle. The live step goes
// on correctly, but every replay made to answer a query (or to run an
// update's validator) stops at that stale pending receive and sees the
// state from before the later updates.
func TestReceiveUnlessStopStored(t *testing.T) {
	g := docket.NewGraph("stop-ru-stop", docket.Input[StopTicker]())
	docket.Register1(g, func(ctx context.Context, c StopTicker) (StopTickerOut, error) {
		docket.HandleUpdate(ctx, "inc", func(context.Context, int) (int, error) { c.N++; return c.N, nil }, nil)
		docket.HandleQuery(ctx, "n", func() (int, error) { return c.N, nil })
		for {
			seen := c.N
			_, err := docket.ReceiveUnless[bool](ctx, "stop", func() bool { return c.N != seen })
			if errors.Is(err, docket.ErrStopped) {
				continue // e.g. act on the change, then wait again
			}
			return StopTickerOut(c), err
		}
	}, docket.Name("tick"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "b.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[StopTickerOut](ctx, eng, g, "t", StopTicker{})
	if err != nil {
		t.Fatal(err)
	}
	suspended := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d, err := eng.Describe(ctx, "t")
			if err == nil && len(d.Waiting) == 1 && d.Steps[0].Status == "suspended" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("not suspended: %+v %v", d, err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for i := 1; i <= 3; i++ {
		suspended() // so the update wakes a suspended ReceiveUnless
		n, err := docket.Update[int](ctx, eng, "t", "inc", 1)
		if err != nil || n != i {
			t.Fatalf("update %d: %d %v", i, n, err)
		}
	}
	suspended()
	if n, err := docket.Query[int](ctx, eng, "t", "n"); err != nil || n != 3 {
		j, _ := eng.Store().Journal(ctx, "t", "tick")
		for _, e := range j {
			t.Logf("journal %d: %s %q done=%v error=%q", e.Seq, e.Kind, e.Name, e.Done, e.Error)
		}
		t.Errorf("query after three applied updates: %d %v, want 3", n, err)
	}
	if err := eng.Signal(ctx, "t", "stop", true); err != nil {
		t.Fatal(err)
	}
	if out, err := h.Result(ctx); err != nil || out.N != 3 {
		t.Fatalf("result %+v %v", out, err)
	}
}
