package docket_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

type (
	Part     struct{ N int }
	Built    struct{ N int }
	Assembly struct{ Total int }
)

func childGraphs() (parent, child *docket.Graph) {
	child = docket.NewGraph("build-part", docket.Input[Part]())
	docket.Register1(child, func(ctx context.Context, p Part) (Built, error) {
		if err := docket.Sleep(ctx, time.Duration(p.N)*time.Millisecond); err != nil {
			return Built{}, err
		}
		if p.N < 0 {
			return Built{}, docket.NonRetryable(errors.New("negative part"))
		}
		return Built{N: p.N * 10}, nil
	}, docket.Name("build"))
	parent = docket.NewGraph("assemble", docket.Input[[]int]())
	docket.Register1(parent, func(ctx context.Context, parts []int) (Assembly, error) {
		var a Assembly
		for i, n := range parts {
			b, err := docket.Call[Built](ctx, child, "part-"+string(rune('a'+i)), Part{N: n})
			if err != nil {
				return a, err
			}
			a.Total += b.N
		}
		return a, nil
	}, docket.Name("assemble"))
	return parent, child
}

func TestChildGraphs(t *testing.T) {
	parent, child := childGraphs()
	env := docktest.New(t, docktest.Options{}, parent, child)
	ctx := context.Background()
	h, err := docket.Start[Assembly](ctx, env.Engine, parent, "asm-1", []int{1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	a, err := h.Result(ctx)
	if err != nil || a.Total != 60 {
		t.Fatalf("%v %v", a, err)
	}
	// Each child is an execution of its own, with a derived ID.
	d, err := env.Describe(ctx, "asm-1/assemble/part-b")
	if err != nil || d.Graph != "build-part" || d.Status != "completed" || d.Result.(Built).N != 20 {
		t.Fatalf("child: %+v %v", d, err)
	}
	kids, _, _ := env.List(ctx, docket.ListOptions{Graph: "build-part"})
	if len(kids) != 3 {
		t.Fatalf("%d children listed", len(kids))
	}
	// Ephemeral: the same parent calls the child in-process.
	a, err = docket.Execute[Assembly](ctx, parent, []int{1, 2, 4})
	if err != nil || a.Total != 70 {
		t.Fatalf("ephemeral: %v %v", a, err)
	}
}

func TestChildFailureReachesParent(t *testing.T) {
	parent, child := childGraphs()
	env := docktest.New(t, docktest.Options{}, parent, child)
	ctx := context.Background()
	h, _ := docket.Start[Assembly](ctx, env.Engine, parent, "asm-2", []int{1, -1})
	_, err := h.Result(ctx)
	if err == nil || !strings.Contains(err.Error(), "negative part") {
		t.Fatalf("got %v", err)
	}
}

func TestCancellingAParentCancelsItsChildren(t *testing.T) {
	var started atomic.Int32
	child := docket.NewGraph("slow-child", docket.Input[Part]())
	docket.Register1(child, func(ctx context.Context, p Part) (Built, error) {
		started.Add(1)
		return Built{}, docket.Sleep(ctx, 24*time.Hour)
	}, docket.Name("wait"))
	parent := docket.NewGraph("parent", docket.Input[[]int]())
	docket.Register1(parent, func(ctx context.Context, parts []int) (Assembly, error) {
		_, err := docket.Call[Built](ctx, child, "kept", Part{}, docket.Abandon())
		if err != nil {
			return Assembly{}, err
		}
		return Assembly{}, nil
	}, docket.Name("p1"))
	docket.Register1(parent, func(ctx context.Context, parts []int) (Built, error) {
		return docket.Call[Built](ctx, child, "owned", Part{})
	}, docket.Name("p2"))
	docket.Register2(parent, func(ctx context.Context, a Assembly, b Built) (Total, error) { return 0, nil }, docket.Name("join"))
	env := docktest.New(t, docktest.Options{ManualTime: true}, parent, child)
	ctx := context.Background()
	h, _ := docket.Start[Total](ctx, env.Engine, parent, "fam", []int{1})
	waitUntil(t, func() bool {
		a, err1 := env.Describe(ctx, "fam/p1/kept")
		b, err2 := env.Describe(ctx, "fam/p2/owned")
		return err1 == nil && err2 == nil && len(a.Waiting) == 1 && len(b.Waiting) == 1
	})
	if err := env.Cancel(ctx, "fam"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Result(ctx); !errors.Is(err, docket.ErrCancelled) {
		t.Fatalf("parent: %v", err)
	}
	_, err := docket.HandleFor[Built](env.Engine, "fam/p2/owned").Result(ctx)
	if !errors.Is(err, docket.ErrCancelled) {
		t.Fatalf("owned child: %v", err)
	}
	d, _ := env.Describe(ctx, "fam/p1/kept")
	if d.Status != "running" {
		t.Fatalf("abandoned child should run on, is %s", d.Status)
	}
}
