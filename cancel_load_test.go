package docket_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Spin    struct{ N int }
	SpinOut struct{ N int }
)

// A cancellation that reaches a step task while it is still loading must
// be recorded at once, not after the task's lease runs out (30s by
// default). Steps that sleep 1ms in a loop are cancelled; each must end
// within a few seconds.
func TestCancelDuringTaskLoad(t *testing.T) {
	g := docket.NewGraph("spin", docket.Input[Spin]())
	docket.Register1(g, func(ctx context.Context, s Spin) (SpinOut, error) {
		for {
			if err := docket.Sleep(ctx, time.Millisecond); err != nil {
				return SpinOut{}, err
			}
		}
	}, docket.Name("spin"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "b.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	const n = 40
	for round := range 4 {
		var hs []*docket.Handle[SpinOut]
		for i := range n {
			h, err := docket.Start[SpinOut](ctx, eng, g, fmt.Sprintf("s-%d-%d", round, i), Spin{})
			if err != nil {
				t.Fatal(err)
			}
			hs = append(hs, h)
		}
		time.Sleep(50 * time.Millisecond)
		var wg sync.WaitGroup
		for _, h := range hs {
			wg.Go(func() {
				time.Sleep(time.Duration(time.Now().UnixNano()%7) * time.Millisecond)
				if err := eng.Cancel(ctx, h.ID()); err != nil {
					t.Error(err)
					return
				}
				rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if _, err := h.Result(rctx); !errors.Is(err, docket.ErrCancelled) {
					d, _ := eng.Describe(ctx, h.ID())
					t.Errorf("%s: not cancelled 5s after Cancel: %v (status %s, cancel requested %v, step %+v)", h.ID(), err, d.Status, d.CancelRequested, d.Steps[0].Status)
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
	}
}
