// Package loadgen drives the benchmarks' workloads: n operations, either
// with a fixed number in flight (a closed loop) or started on time at a
// fixed rate (an open loop), each one's latency measured. Docket's cluster
// benchmarks and the DBOS comparison (bench/dbos) use it, so that both
// sides are driven and timed alike.
package loadgen

import (
	"sync"
	"sync/atomic"
	"time"
)

// InFlight runs op(i) for every i < n from conc goroutines, each taking
// the next i when its last op returns, and returns each op's latency, or
// the first error (the goroutines stop taking new ones then).
func InFlight(n, conc int, op func(i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for range conc {
		wg.Go(func() {
			for failed.Load() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					failed.CompareAndSwap(nil, &err)
					return
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return nil, *err
	}
	return lat, nil
}

// AtRate starts op(i) for every i < n on a goroutine of its own at rate
// per second, on time however many are in flight, and returns each op's
// latency measured from when it was due, or the first error (no more are
// started then).
func AtRate(n int, rate float64, op func(i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	t0 := time.Now()
	for i := 0; i < n && failed.Load() == nil; i++ {
		due := t0.Add(time.Duration(float64(i) / rate * float64(time.Second)))
		SleepUntil(due)
		wg.Go(func() {
			if err := op(i); err != nil {
				failed.CompareAndSwap(nil, &err)
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	if err := failed.Load(); err != nil {
		return nil, *err
	}
	return lat, nil
}
