package loadgen

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestInFlightRunsEachOnce(t *testing.T) {
	var ran [100]atomic.Int32
	var inFlight, most atomic.Int32
	lat, err := InFlight(len(ran), 4, func(i int) error {
		// Raise most to n unless another op has raised it past n.
		for n, m := inFlight.Add(1), most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		defer inFlight.Add(-1)
		ran[i].Add(1)
		time.Sleep(time.Millisecond)
		return nil
	})
	if err != nil || len(lat) != len(ran) {
		t.Fatalf("%d latencies, %v", len(lat), err)
	}
	for i := range ran {
		if ran[i].Load() != 1 || lat[i] <= 0 {
			t.Fatalf("op %d ran %d times, latency %v", i, ran[i].Load(), lat[i])
		}
	}
	if most.Load() > 4 {
		t.Fatalf("%d in flight at once, want at most 4", most.Load())
	}
}

func TestAtRateRunsEachOnceAndStopsOnError(t *testing.T) {
	var ran [50]atomic.Int32
	lat, err := AtRate(len(ran), 5000, func(i int) error { ran[i].Add(1); return nil })
	if err != nil || len(lat) != len(ran) {
		t.Fatalf("%d latencies, %v", len(lat), err)
	}
	for i := range ran {
		if ran[i].Load() != 1 || lat[i] <= 0 {
			t.Fatalf("op %d ran %d times, latency %v", i, ran[i].Load(), lat[i])
		}
	}
	boom := errors.New("boom")
	var started atomic.Int32
	_, err = AtRate(1000, 100, func(i int) error {
		started.Add(1)
		if i == 2 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || started.Load() >= 1000 {
		t.Fatalf("err %v after %d started", err, started.Load())
	}
	_, err = InFlight(1000, 2, func(i int) error {
		if i == 5 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InFlight: %v", err)
	}
}

func TestShare(t *testing.T) {
	total := 0
	for k := range 3 {
		total += Share(10, 3, k)
	}
	if Share(10, 3, 0) != 4 || Share(10, 3, 1) != 3 || Share(10, 3, 2) != 3 || total != 10 {
		t.Fatalf("shares of 10 over 3: %d %d %d", Share(10, 3, 0), Share(10, 3, 1), Share(10, 3, 2))
	}
}

func TestEnvSettings(t *testing.T) {
	const key = "DOCKET_BENCH_TEST_SETTING"
	for _, c := range []struct {
		value string
		i     int
		f     float64
	}{
		{"", 7, 2.5},     // unset: the defaults
		{"12", 12, 12},   // set
		{"1.5", 7, 1.5},  // a fraction: only EnvFloat takes it
		{"0", 7, 2.5},    // not positive
		{"-3", 7, 2.5},   // not positive
		{"many", 7, 2.5}, // not a number
	} {
		t.Setenv(key, c.value)
		if got := EnvInt(key, 7); got != c.i {
			t.Errorf("EnvInt with %q = %d, want %d", c.value, got, c.i)
		}
		if got := EnvFloat(key, 2.5); got != c.f {
			t.Errorf("EnvFloat with %q = %g, want %g", c.value, got, c.f)
		}
	}
}
