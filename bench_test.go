package docket_test

// Executor benchmarks: docket.Execute against the same DAGs run by hand
// with golang.org/x/sync/errgroup, with no-op steps on zero-size types, so
// that what is measured is the runner alone. BENCHMARKS.md has the figures
// and how they were taken.
//
// Besides ns/op and allocs/op (-benchmem), every benchmark reports ns/step
// and allocs/step: the per-operation figures divided by the number of steps
// of the DAG (for Map, the source, the sink and one per item).
//
// The 100- and 1000-step DAGs need one type per step; they live in
// dag_gen_test.go, written by internal/benchgen:

//go:generate go run ./internal/benchgen -o dag_gen_test.go

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/docket-run/docket"
	"golang.org/x/sync/errgroup"
)

// benchDAG runs one execution of a DAG of the given number of steps per
// iteration and reports ns/step and allocs/step next to the usual figures.
// It runs once before measuring, which checks the DAG and compiles (and
// caches) Execute's plan.
func benchDAG(b *testing.B, steps int, run func(context.Context) error) {
	ctx := context.Background()
	if err := run(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	mallocs := ms.Mallocs
	for b.Loop() {
		if err := run(ctx); err != nil {
			b.Fatal(err)
		}
	}
	runtime.ReadMemStats(&ms)
	n := float64(b.N) * float64(steps)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/step")
	b.ReportMetric(float64(ms.Mallocs-mallocs)/n, "allocs/step")
}

// checkPlan fails the benchmark unless Execute[Out] would run exactly steps steps.
func checkPlan[Out any](b *testing.B, g *docket.Graph, steps int, inputs ...any) {
	b.Helper()
	p, err := docket.PlanFor[Out](g, inputs...)
	if err != nil {
		b.Fatal(err)
	}
	if len(p.Steps) != steps {
		b.Fatalf("plan has %d steps, want %d", len(p.Steps), steps)
	}
}

// executeDAG benchmarks Execute[Out] on g with one input.
func executeDAG[Out any](b *testing.B, g *docket.Graph, planSteps, steps int, in any) {
	checkPlan[Out](b, g, planSteps, in)
	benchDAG(b, steps, func(ctx context.Context) error {
		_, err := docket.Execute[Out](ctx, g, in)
		return err
	})
}

// --- 1. The chain ChainIn (input) -> A -> B -> C.

type (
	ChainIn struct{}
	ChainA  struct{}
	ChainB  struct{}
	ChainC  struct{}
)

const chainSteps = 3

func stepChainA(context.Context, ChainIn) (ChainA, error) { return ChainA{}, nil }
func stepChainB(context.Context, ChainA) (ChainB, error)  { return ChainB{}, nil }
func stepChainC(context.Context, ChainB) (ChainC, error)  { return ChainC{}, nil }

func newChainGraph() *docket.Graph {
	g := docket.NewGraph("chain", docket.Input[ChainIn]())
	docket.Register1(g, stepChainA, docket.Name("a"))
	docket.Register1(g, stepChainB, docket.Name("b"))
	docket.Register1(g, stepChainC, docket.Name("c"))
	return g
}

// chainErrgroup runs the chain as a hand-written graph runner would: every
// step in a goroutine of its own, in an errgroup that is waited for before
// the next step starts.
func chainErrgroup(ctx context.Context, in ChainIn) (ChainC, error) {
	var (
		a ChainA
		b ChainB
		c ChainC
	)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { a, err = stepChainA(gctx, in); return err })
	if err := g.Wait(); err != nil {
		return c, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() (err error) { b, err = stepChainB(gctx, a); return err })
	if err := g.Wait(); err != nil {
		return c, err
	}
	g, gctx = errgroup.WithContext(ctx)
	g.Go(func() (err error) { c, err = stepChainC(gctx, b); return err })
	err := g.Wait()
	return c, err
}

// chainDirect calls the steps one after the other: the floor.
func chainDirect(ctx context.Context, in ChainIn) (ChainC, error) {
	a, err := stepChainA(ctx, in)
	if err != nil {
		return ChainC{}, err
	}
	b, err := stepChainB(ctx, a)
	if err != nil {
		return ChainC{}, err
	}
	return stepChainC(ctx, b)
}

func BenchmarkChain(b *testing.B) {
	b.Run("Execute", func(b *testing.B) {
		executeDAG[ChainC](b, newChainGraph(), chainSteps, chainSteps, ChainIn{})
	})
	b.Run("Errgroup", func(b *testing.B) {
		benchDAG(b, chainSteps, func(ctx context.Context) error {
			_, err := chainErrgroup(ctx, ChainIn{})
			return err
		})
	})
	b.Run("Direct", func(b *testing.B) {
		benchDAG(b, chainSteps, func(ctx context.Context) error {
			_, err := chainDirect(ctx, ChainIn{})
			return err
		})
	})
}

// --- 2. The 1->100->1 fan-out (dag_gen_test.go).

func BenchmarkFanOut(b *testing.B) {
	b.Run("Execute", func(b *testing.B) {
		executeDAG[FanOut](b, newFanGraph(), fanSteps, fanSteps, FanIn{})
	})
	// The same DAG with a typed fan-in tree in place of the reflective
	// 100-input sink: more steps run, but ns/step is still per DAG step
	// (fanSteps), so that ns/op and ns/step compare with the others.
	b.Run("ExecuteFanInTree", func(b *testing.B) {
		executeDAG[FanOut](b, newFanTreeGraph(), fanTreeSteps, fanSteps, FanIn{})
	})
	b.Run("Errgroup", func(b *testing.B) {
		benchDAG(b, fanSteps, func(ctx context.Context) error {
			_, err := fanErrgroup(ctx, FanIn{})
			return err
		})
	})
}

// --- 2b. The fan-out with middle steps that use some stack.
//
// The no-op steps above are leaf functions that need no stack, but a step
// that calls anything does, and every goroutine starts with a 2 KiB stack:
// a step that goes past what its runner left of it makes the runtime copy
// the goroutine's stack to a bigger one. stackStep calls a function with a
// frame of stackBytes bytes, so this measures each runner's headroom.

// stackBytes is the frame size of the function stackStep calls: 0 (a call
// with a small frame), 256 or 1024.
var stackBytes int

func stackStep[Out any](context.Context, FanSrc) (Out, error) {
	switch stackBytes {
	case 256:
		useStack256()
	case 1024:
		useStack1024()
	default:
		useStack0()
	}
	var out Out
	return out, nil
}

var stackSink byte

//go:noinline
func useStack0() { stackSink++ }

//go:noinline
func useStack256() {
	var buf [256]byte
	buf[stackSink&127] = stackSink
	stackSink = buf[(stackSink+1)&127]
}

//go:noinline
func useStack1024() {
	var buf [1024]byte
	buf[stackSink&127] = stackSink
	stackSink = buf[(stackSink+1)&127]
}

func BenchmarkFanOutStack(b *testing.B) {
	for _, n := range []int{0, 256, 1024} {
		name := strconv.Itoa(n) + "B"
		b.Run(name+"/Execute", func(b *testing.B) {
			stackBytes = n
			executeDAG[FanOut](b, newFanStackGraph(), fanSteps, fanSteps, FanIn{})
		})
		b.Run(name+"/Errgroup", func(b *testing.B) {
			stackBytes = n
			benchDAG(b, fanSteps, func(ctx context.Context) error {
				_, err := fanStackErrgroup(ctx, FanIn{})
				return err
			})
		})
	}
}

// --- 3. The 10x100 layered DAG (dag_gen_test.go).

func BenchmarkLayered(b *testing.B) {
	b.Run("Execute", func(b *testing.B) {
		executeDAG[LOut](b, newLayeredGraph(), layeredSteps, layeredSteps, LIn{})
	})
	b.Run("Errgroup", func(b *testing.B) {
		benchDAG(b, layeredSteps, func(ctx context.Context) error {
			_, err := layeredErrgroup(ctx, LIn{})
			return err
		})
	})
}

// --- 4. The fan-out as a Map step over 100 items:
// MapIn (input) -> source ([]MapItem) -> Map (100 items) -> sink.

const (
	mapItems = 100
	mapSteps = mapItems + 2 // source, one per item, sink
)

type (
	MapIn     struct{}
	MapItem   struct{}
	MapResult struct{}
	MapOut    struct{}
)

func stepMapSrc(context.Context, MapIn) ([]MapItem, error) {
	return make([]MapItem, mapItems), nil
}
func stepMapItem(context.Context, MapItem) (MapResult, error)  { return MapResult{}, nil }
func stepMapSink(context.Context, []MapResult) (MapOut, error) { return MapOut{}, nil }

func newMapGraph(opts ...docket.StepOption) *docket.Graph {
	g := docket.NewGraph("map", docket.Input[MapIn]())
	docket.Register1(g, stepMapSrc, docket.Name("src"))
	docket.Map(g, stepMapItem, append(opts, docket.Name("item"))...)
	docket.Register1(g, stepMapSink, docket.Name("sink"))
	return g
}

// mapErrgroup is the same fan-out by hand: one goroutine per item.
func mapErrgroup(ctx context.Context, in MapIn) (MapOut, error) {
	items, err := stepMapSrc(ctx, in)
	if err != nil {
		return MapOut{}, err
	}
	res := make([]MapResult, len(items))
	g, gctx := errgroup.WithContext(ctx)
	for i, it := range items {
		g.Go(func() (err error) { res[i], err = stepMapItem(gctx, it); return err })
	}
	if err := g.Wait(); err != nil {
		return MapOut{}, err
	}
	return stepMapSink(ctx, res)
}

func BenchmarkMap(b *testing.B) {
	b.Run("Execute", func(b *testing.B) {
		executeDAG[MapOut](b, newMapGraph(), 3, mapSteps, MapIn{})
	})
	// Items bounded by the number of CPUs: a few workers fed through a channel.
	b.Run("ExecuteConcurrency2", func(b *testing.B) {
		executeDAG[MapOut](b, newMapGraph(docket.Concurrency(2)), 3, mapSteps, MapIn{})
	})
	b.Run("Errgroup", func(b *testing.B) {
		benchDAG(b, mapSteps, func(ctx context.Context) error {
			_, err := mapErrgroup(ctx, MapIn{})
			return err
		})
	})
}
