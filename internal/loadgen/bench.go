package loadgen

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// RunAll is the parent's side of a benchmark that spans processes: it
// starts a starter for each of envs (see StartAll), resets b's timer,
// sends them all the start signal and reads each one's latencies, then,
// when after is not nil, calls it on the starter to read what else its
// benchmark wrote. It returns the latencies of all starters and the time
// from the start signal to the last report, and fails b unless there is
// one latency for each of b.N operations. The starters are stopped when b
// ends.
func RunAll(b *testing.B, exe string, envs []string, after func(*Starter) error) ([]time.Duration, time.Duration) {
	b.Helper()
	ss, err := StartAll(exe, envs)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { StopAll(ss) })
	b.ResetTimer()
	t0, err := GoAll(ss)
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for _, s := range ss {
		one, err := s.Latencies()
		if err != nil {
			b.Fatal(err)
		}
		lat = append(lat, one...)
		if after != nil {
			if err := after(s); err != nil {
				b.Fatal(err)
			}
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	if len(lat) != b.N {
		b.Fatalf("%d latencies for %d operations", len(lat), b.N)
	}
	return lat, elapsed
}

// ReportRate reports n operations over elapsed as "exec/s" and the
// percentiles of lat (see ReportPercentiles).
func ReportRate(b *testing.B, n int, elapsed time.Duration, lat []time.Duration) {
	b.ReportMetric(float64(n)/elapsed.Seconds(), "exec/s")
	ReportPercentiles(b, lat)
}

// ReportPercentiles reports the median and the 99th percentile of lat, in
// microseconds ("p50-µs", "p99-µs"); it sorts lat.
func ReportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// EnvInt is the benchmark setting in environment variable key (such as
// DOCKET_BENCH_CONC), or def when it is unset or not a positive integer.
func EnvInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

// EnvFloat is EnvInt for a setting that may have a fraction (such as
// DOCKET_BENCH_RATE): def when it is unset or not a positive number.
func EnvFloat(key string, def float64) float64 {
	if f, err := strconv.ParseFloat(os.Getenv(key), 64); err == nil && f > 0 {
		return f
	}
	return def
}
