package docket_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Summed    struct{ Total, Runs int }
	SummedOut struct{ Total, Runs int }
)

// ContinueAsNewSuggested reads the length of the whole loaded journal, not
// the position the step has reached. When a suspended step re-executes
// from the top, the check at an early iteration already sees the full
// journal and says "continue as new" there, so the step continues as new
// with the state of that early point: everything applied after it (here,
// five received numbers) is lost.
func TestContinueAsNewSuggestedOnReplay(t *testing.T) {
	g := docket.NewGraph("can-suggested", docket.Input[Summed]())
	docket.Register1(g, func(ctx context.Context, s Summed) (SummedOut, error) {
		s.Runs++
		for {
			if docket.ContinueAsNewSuggested(ctx) {
				return SummedOut{}, docket.ContinueAsNew(s)
			}
			n, err := docket.Receive[int](ctx, "add")
			if err != nil {
				return SummedOut{}, err
			}
			if n == 0 {
				return SummedOut(s), nil
			}
			s.Total += n
		}
	}, docket.Name("sum"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "b.db"),
		Graphs: []*docket.Graph{g}, HistoryLimit: 6})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[SummedOut](ctx, eng, g, "s", Summed{})
	if err != nil {
		t.Fatal(err)
	}
	// Send the numbers one at a time, each once the step is suspended in
	// its next Receive, so every Receive is a suspension and a re-execution.
	want := 0
	for i := 1; i <= 10; i++ {
		waitForReceives(t, eng, "s")
		want += i
		if err := eng.Signal(ctx, "s", "add", i); err != nil {
			t.Fatal(err)
		}
	}
	waitForReceives(t, eng, "s")
	if err := eng.Signal(ctx, "s", "add", 0); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	got, err := h.Result(rctx)
	if err != nil || got.Total != want {
		t.Fatalf("got %+v %v, want total %d", got, err, want)
	}
}

// waitForReceives waits until the execution's step is suspended for a signal
// and no signal is left unconsumed.
func waitForReceives(t *testing.T, eng *docket.Engine, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, err := eng.Describe(context.Background(), id)
		if err == nil && len(d.Waiting) == 1 {
			q, _ := docket.Query[[]string](context.Background(), eng, id, docket.QueryWaiting)
			if len(q) == 1 {
				time.Sleep(20 * time.Millisecond) // let it settle
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not waiting: %+v %v", d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
