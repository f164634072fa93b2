package docket_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type HandlerCallIn struct{ N int }
type HandlerCallOut struct{ Applied []string }

// An update handler runs inside one of the step's waits, so a durable call
// in it (here a Run) is refused with ErrDurableCallInHandler — reported as
// the update's error — and the step goes on unharmed.
func TestDurableCallInUpdateHandler(t *testing.T) {
	var sideEffects atomic.Int32
	g := docket.NewGraph("handler-call", docket.Input[HandlerCallIn]())
	docket.Register1(g, func(ctx context.Context, in HandlerCallIn) (HandlerCallOut, error) {
		var out HandlerCallOut
		docket.HandleUpdate(ctx, "apply", func(ctx context.Context, item string) (string, error) {
			ticket, err := docket.Run(ctx, "reserve", func(context.Context) (string, error) {
				sideEffects.Add(1)
				return "ticket-" + item, nil
			})
			if err != nil {
				return "", err
			}
			out.Applied = append(out.Applied, ticket)
			return ticket, nil
		}, nil)
		if _, err := docket.Receive[bool](ctx, "stop"); err != nil {
			return out, err
		}
		return out, nil
	}, docket.Name("serve"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "b.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[HandlerCallOut](ctx, eng, g, "x", HandlerCallIn{})
	if err != nil {
		t.Fatal(err)
	}
	// Let the step suspend in Receive first.
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, _ := eng.Describe(ctx, "x")
		if d != nil && len(d.Waiting) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never waited")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The handler's Run is refused with a clear error; nothing else breaks.
	var ue *docket.UpdateError
	_, err = docket.Update[string](ctx, eng, "x", "apply", "a")
	if !errors.As(err, &ue) || !strings.Contains(ue.Message, "cannot be made inside an update handler") {
		t.Fatalf("update: %v", err)
	}
	if err := eng.Signal(ctx, "x", "stop", true); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := h.Result(rctx); err != nil {
		t.Fatalf("result %v", err)
	}
	if n := sideEffects.Load(); n != 0 {
		t.Fatalf("side effect ran %d times, want 0", n)
	}
}
