package docket_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Query struct{ Text string }
	Hits  struct{ N int }
)

func TestCachedStep(t *testing.T) {
	var runs atomic.Int32
	rec := &recorder{}
	cache := docket.NewMemoryCache()
	g := docket.NewGraph("search", docket.Input[Query](), docket.WithCache(cache), docket.WithObserver(rec))
	docket.Register1(g, func(_ context.Context, q Query) (Hits, error) {
		runs.Add(1)
		return Hits{N: len(q.Text)}, nil
	}, docket.Name("search"), docket.Cached(50*time.Millisecond))
	ctx := context.Background()
	for range 3 {
		h, err := docket.Execute[Hits](ctx, g, Query{"docket"})
		if err != nil || h.N != 6 {
			t.Fatalf("%v %v", h, err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("step ran %d times; a cache hit must not run it", runs.Load())
	}
	if h, _ := docket.Execute[Hits](ctx, g, Query{"other"}); h.N != 5 || runs.Load() != 2 {
		t.Fatalf("different inputs must miss: %v, runs %d", h, runs.Load())
	}
	time.Sleep(60 * time.Millisecond) // past the TTL
	if _, err := docket.Execute[Hits](ctx, g, Query{"docket"}); err != nil || runs.Load() != 3 {
		t.Fatalf("an expired entry must miss: runs %d, %v", runs.Load(), err)
	}
	hits, misses := 0, 0
	for _, e := range rec.events {
		switch e {
		case "cache hit search":
			hits++
		case "cache miss search":
			misses++
		}
	}
	if hits != 2 || misses != 3 {
		t.Fatalf("observer saw %d hits, %d misses; want 2, 3", hits, misses)
	}
}

func TestCacheSharedAcrossGraphsIsKeyedByGraph(t *testing.T) {
	cache := docket.NewMemoryCache()
	mk := func(name string, n int) *docket.Graph {
		g := docket.NewGraph(name, docket.Input[Query](), docket.WithCache(cache))
		docket.Register1(g, func(context.Context, Query) (Hits, error) { return Hits{N: n}, nil }, docket.Name("search"), docket.Cached(time.Hour))
		return g
	}
	a, b := mk("a", 1), mk("b", 2)
	ha, _ := docket.Execute[Hits](context.Background(), a, Query{"x"})
	hb, _ := docket.Execute[Hits](context.Background(), b, Query{"x"})
	if ha.N != 1 || hb.N != 2 || cache.Len() != 2 {
		t.Fatalf("a=%v b=%v len=%d", ha, hb, cache.Len())
	}
}

func TestDefaultCacheWhenNoneGiven(t *testing.T) {
	var runs atomic.Int32
	g := docket.NewGraph("search", docket.Input[Query]())
	docket.Register1(g, func(context.Context, Query) (Hits, error) { runs.Add(1); return Hits{}, nil }, docket.Name("search"), docket.Cached(time.Hour))
	for range 2 {
		if _, err := docket.Execute[Hits](context.Background(), g, Query{"x"}); err != nil {
			t.Fatal(err)
		}
	}
	if runs.Load() != 1 {
		t.Fatalf("ran %d times", runs.Load())
	}
}
