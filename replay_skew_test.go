package docket_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Skew    struct{ N int }
	SkewOut struct{ N int }
)

// Queries and update validators replay a step from the execution record
// (its inputs) and the step's journal, read one after the other, not in one
// snapshot. A run that continues as new in between must not make them see
// a state older than what callers were already told: the replay is
// repeated when the run changed underneath it. Here every update starts a
// new run; a validator that accepts only the next number must accept it,
// and a query must never go backwards.
func TestReplayAcrossContinueAsNew(t *testing.T) {
	g := docket.NewGraph("skew", docket.Input[Skew]())
	docket.Register1(g, func(ctx context.Context, c Skew) (SkewOut, error) {
		start := c.N
		docket.HandleQuery(ctx, "n", func() (int, error) { return c.N, nil })
		docket.HandleUpdate(ctx, "set", func(_ context.Context, n int) (int, error) {
			c.N = n
			return c.N, nil
		}, func(n int) error {
			if n != c.N+1 {
				return fmt.Errorf("want %d, got %d", c.N+1, n)
			}
			return nil
		})
		for {
			_, err := docket.ReceiveTimeout[bool](ctx, "stop", 5*time.Millisecond)
			switch {
			case errors.Is(err, docket.ErrReceiveTimeout):
				if c.N != start {
					return SkewOut{}, docket.ContinueAsNew(c) // a run per update
				}
			case err != nil:
				return SkewOut{}, err
			default:
				return SkewOut(c), nil
			}
		}
	}, docket.Name("count"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "b.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	if _, err := docket.Start[SkewOut](ctx, eng, g, "s", Skew{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for n := 1; time.Now().Before(deadline); n++ {
		got, err := docket.Update[int](ctx, eng, "s", "set", n)
		if err != nil || got != n {
			t.Fatalf("update %d: %d %v (the previous update was answered %d)", n, got, err, n-1)
		}
		for range 5 {
			if q, err := docket.Query[int](ctx, eng, "s", "n"); err != nil || q < n {
				t.Fatalf("query after update %d was answered: %d %v", n, q, err)
			}
		}
	}
}
