package docket_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

type Sleeper struct{ N int }

// BenchmarkSleepingExecutions starts b.N executions on a SQLite file whose
// one step sleeps for 30 days, waits until every one is suspended, and
// reports the heap and goroutines they hold: a suspended execution should
// hold nothing but its rows. Run it with -benchtime=100000x for the figure
// in BENCHMARKS.md.
func BenchmarkSleepingExecutions(b *testing.B) {
	g := docket.NewGraph("sleeper", docket.Input[Sleeper]())
	var suspended atomic.Int64
	docket.Register1(g, func(ctx context.Context, s Sleeper) (int, error) {
		if docket.Attempt(ctx) == 1 {
			suspended.Add(1)
		}
		return s.N, docket.Sleep(ctx, 30*24*time.Hour)
	}, docket.Name("sleep"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(b.TempDir(), "sleep.db"),
		Graphs: []*docket.Graph{g}, Workers: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	heapBefore, goBefore := heapInUse(), runtime.NumGoroutine()

	b.ResetTimer()
	var wg sync.WaitGroup
	next := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if _, err := docket.Start[int](ctx, eng, g, fmt.Sprintf("s-%d", i), Sleeper{i}); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for i := range b.N {
		next <- i
	}
	close(next)
	wg.Wait()
	// Every step has suspended when no task is leased any more.
	for {
		busy, err := leasedTasks(ctx, eng.Store(), b.N)
		if err != nil {
			b.Fatal(err)
		}
		if busy == 0 && suspended.Load() >= int64(b.N) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	heapAfter, goAfter := heapInUse(), runtime.NumGoroutine()
	b.ReportMetric(float64(int64(heapAfter)-int64(heapBefore))/float64(b.N), "heap-B/suspended")
	b.ReportMetric(float64(goAfter-goBefore), "goroutines-held")
}

// leasedTasks counts leased tasks among the first n sleepers (sampled).
func leasedTasks(ctx context.Context, st store.Store, n int) (int, error) {
	busy := 0
	step := max(1, n/200)
	for i := 0; i < n; i += step {
		ts, err := st.Tasks(ctx, fmt.Sprintf("s-%d", i))
		if err != nil {
			return 0, err
		}
		for _, t := range ts {
			if t.Owner != "" {
				busy++
			}
		}
	}
	return busy, nil
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkDurableChain measures start-to-result of a three-step chain on
// a SQLite file, one execution at a time.
func BenchmarkDurableChain(b *testing.B) {
	g := docket.NewGraph("chain3", docket.Input[Sleeper]())
	docket.Register1(g, func(_ context.Context, s Sleeper) (CrashA, error) { return CrashA(s.N), nil }, docket.Name("a"))
	docket.Register1(g, func(_ context.Context, a CrashA) (CrashB, error) { return CrashB(a + 1), nil }, docket.Name("b"))
	docket.Register1(g, func(_ context.Context, v CrashB) (CrashSum, error) { return CrashSum(v * 2), nil }, docket.Name("c"))
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(b.TempDir(), "chain.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	b.ResetTimer()
	for i := range b.N {
		h, err := docket.Start[CrashSum](ctx, eng, g, fmt.Sprintf("c-%d", i), Sleeper{i})
		if err != nil {
			b.Fatal(err)
		}
		if v, err := h.Result(ctx); err != nil || int(v) != (i+1)*2 {
			b.Fatalf("%v %v", v, err)
		}
	}
}
