package docket_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/loadgen"
)

// signalBenchEngine opens a SQLite engine for the signal benchmarks.
func signalBenchEngine(b *testing.B, g *docket.Graph) *docket.Engine {
	eng, err := docket.Open(context.Background(), docket.Config{Store: "sqlite:" + filepath.Join(b.TempDir(), "sig.db"),
		Graphs: []*docket.Graph{g}, Workers: 16})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { eng.Close() })
	return eng
}

// BenchmarkSignalToReaction measures, on SQLite, the time from Signal to
// the suspended step having received it, recorded it and suspended again
// in its next Receive (one execution, signals one after another). It
// reports p50 and p99.
func BenchmarkSignalToReaction(b *testing.B) {
	received := make(chan struct{}, 1)
	g := docket.NewGraph("pingpong", docket.Input[*Order]())
	docket.Register1(g, func(ctx context.Context, o *Order) (int, error) {
		for i := 0; ; i++ {
			if _, err := docket.Receive[int](ctx, "ping"); err != nil {
				return i, err
			}
			if !docket.Replaying(ctx) {
				select {
				case received <- struct{}{}:
				default:
				}
			}
		}
	}, docket.Name("loop"))
	eng := signalBenchEngine(b, g)
	ctx := context.Background()
	if _, err := docket.Start[int](ctx, eng, g, "pp", &Order{}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := eng.Signal(ctx, "pp", "ping", i); err != nil {
			b.Fatal(err)
		}
		<-received
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	loadgen.ReportPercentiles(b, lat)
}

// BenchmarkQuerySuspended measures a custom query answered by replaying a
// suspended step whose journal holds 20 received signals.
func BenchmarkQuerySuspended(b *testing.B) {
	g := benchCart
	eng := signalBenchEngine(b, g)
	ctx := context.Background()
	if _, err := docket.Start[Cart](ctx, eng, g, "c", &Order{}); err != nil {
		b.Fatal(err)
	}
	for i := range 20 {
		if err := eng.Signal(ctx, "c", "add", fmt.Sprint("item-", i)); err != nil {
			b.Fatal(err)
		}
	}
	for {
		if n, err := docket.Query[int](ctx, eng, "c", "count"); err == nil && n == 20 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.ResetTimer()
	for b.Loop() {
		if n, err := docket.Query[int](ctx, eng, "c", "count"); err != nil || n != 20 {
			b.Fatal(n, err)
		}
	}
}

var benchCart = cartGraph()

// BenchmarkReceivingExecutions starts b.N executions each suspended in a
// Receive and reports the heap and goroutines they hold.
func BenchmarkReceivingExecutions(b *testing.B) {
	g := docket.NewGraph("receiver", docket.Input[Sleeper]())
	docket.Register1(g, func(ctx context.Context, s Sleeper) (int, error) {
		return docket.Receive[int](ctx, "go")
	}, docket.Name("wait"))
	eng := signalBenchEngine(b, g)
	ctx := context.Background()
	heapBefore, goBefore := heapInUse(), runtime.NumGoroutine()
	b.ResetTimer()
	for i := range b.N {
		if _, err := docket.Start[int](ctx, eng, g, fmt.Sprintf("r-%d", i), Sleeper{i}); err != nil {
			b.Fatal(err)
		}
	}
	for {
		busy, err := leasedTasks(ctx, eng.Store(), b.N)
		if err != nil {
			b.Fatal(err)
		}
		if busy == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	heapAfter, goAfter := heapInUse(), runtime.NumGoroutine()
	b.ReportMetric(float64(int64(heapAfter)-int64(heapBefore))/float64(b.N), "heap-B/suspended")
	b.ReportMetric(float64(goAfter-goBefore), "goroutines-held")
}

// BenchmarkUpdateRoundTrip measures Update on SQLite from the call until
// the answer is back: the validator's replay, recording the request, the
// step applying it at its wait point and the answer's discovery. It
// reports p50 and p99.
func BenchmarkUpdateRoundTrip(b *testing.B) {
	g := basketGraph()
	eng := signalBenchEngine(b, g)
	ctx := context.Background()
	if _, err := docket.Start[Cart](ctx, eng, g, "u", &Order{}); err != nil {
		b.Fatal(err)
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		n, err := docket.Update[int](ctx, eng, "u", "add", fmt.Sprint("item-", i))
		if err != nil || n != i+1 {
			b.Fatal(n, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	loadgen.ReportPercentiles(b, lat)
}
