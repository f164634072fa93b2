package docket_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Basket []string
	Price  struct {
		Item  string
		Cents int
	}
	Total int
)

func TestMapFanOutFanIn(t *testing.T) {
	var live gate
	var flaky atomic.Int32
	g := docket.NewGraph("basket", docket.Input[Basket]())
	docket.Register1(g, func(_ context.Context, b Basket) ([]string, error) { return b, nil }, docket.Name("items"))
	docket.Map(g, func(ctx context.Context, item string) (Price, error) {
		defer live.enter()()
		time.Sleep(time.Millisecond)
		if item == "flaky" && flaky.Add(1) == 1 {
			return Price{}, errors.New("price service hiccup")
		}
		return Price{Item: item, Cents: len(item)}, nil
	}, docket.Name("price"), docket.Concurrency(3), docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Microsecond}))
	docket.Register1(g, func(_ context.Context, ps []Price) (Total, error) {
		sum := 0
		for i, p := range ps {
			sum += p.Cents * (i + 1) // order matters
		}
		return Total(sum), nil
	}, docket.Name("total"))

	items := Basket{"a", "bb", "flaky", "dddd", "e", "ff", "ggg", "h"}
	got, err := docket.Execute[Total](context.Background(), g, items)
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i, it := range items {
		want += len(it) * (i + 1)
	}
	if int(got) != want {
		t.Fatalf("total = %d, want %d", got, want)
	}
	if p := live.peak.Load(); p > 3 || p < 2 {
		t.Fatalf("peak concurrency %d, want 2..3 (limit 3)", p)
	}
	if flaky.Load() != 2 {
		t.Fatalf("the flaky item should be retried once on its own, ran %d times", flaky.Load())
	}

	// An empty slice is fine.
	got, err = docket.Execute[Total](context.Background(), g, Basket{})
	if err != nil || got != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
}

func TestMapItemFailure(t *testing.T) {
	var cancelled atomic.Int32
	g := docket.NewGraph("basket", docket.Input[[]string]())
	docket.Map(g, func(ctx context.Context, item string) (Price, error) {
		if item == "bad" {
			return Price{}, errors.New("unknown item")
		}
		<-ctx.Done()
		cancelled.Add(1)
		return Price{}, ctx.Err()
	}, docket.Name("price"))
	_, err := docket.Execute[[]Price](context.Background(), g, []string{"x", "bad", "y"})
	var ie *docket.ItemError
	if !errors.As(err, &ie) || ie.Index != 1 {
		t.Fatalf("want ItemError for item 1, got %v", err)
	}
	// "x" was handed out before "bad" and must have been cancelled; "y" may
	// not have started at all.
	if n := cancelled.Load(); n < 1 || n > 2 {
		t.Fatalf("the other items should be cancelled, %d were", n)
	}
}

type Greeting string

func TestExecuteBatch(t *testing.T) {
	var live gate
	type Prefix string
	g := docket.NewGraph("greet", docket.Input[int](), docket.Input[Prefix]())
	docket.Register2(g, func(_ context.Context, n int, p Prefix) (Greeting, error) {
		defer live.enter()()
		time.Sleep(time.Millisecond)
		if n%5 == 0 {
			return "", errors.New("multiple of five")
		}
		return Greeting(string(p) + strconv.Itoa(n)), nil
	}, docket.Name("greet"))
	items := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}
	out, err := docket.ExecuteBatch[Greeting](context.Background(), g, items, docket.Concurrency(4), docket.With(Prefix("n")))
	var be *docket.BatchError
	if !errors.As(err, &be) || len(be.Errs) != len(items) {
		t.Fatalf("want BatchError, got %v", err)
	}
	for i, n := range items {
		if n%5 == 0 {
			if be.Errs[i] == nil || out[i] != "" {
				t.Errorf("item %d should have failed", i)
			}
			continue
		}
		if be.Errs[i] != nil || out[i] != Greeting("n"+strconv.Itoa(n)) {
			t.Errorf("item %d: %q %v", i, out[i], be.Errs[i])
		}
	}
	if p := live.peak.Load(); p > 4 {
		t.Fatalf("peak concurrency %d exceeds the limit 4", p)
	}
	if len(be.Unwrap()) != 2 {
		t.Fatalf("Unwrap should give the 2 failures, got %d", len(be.Unwrap()))
	}

	out, err = docket.ExecuteBatch[Greeting](context.Background(), g, []int{1, 2}, docket.With(Prefix("#")))
	if err != nil || out[0] != "#1" || out[1] != "#2" {
		t.Fatalf("%v %v", out, err)
	}
}

func TestExecuteBatchAbortStopsTheBatch(t *testing.T) {
	var ran atomic.Int32
	g := docket.NewGraph("abort", docket.Input[int]())
	docket.Register1(g, func(ctx context.Context, n int) (Greeting, error) {
		ran.Add(1)
		if n == 0 {
			return "", docket.Abort(errors.New("stop everything"))
		}
		return "ok", nil
	}, docket.Name("greet"))
	items := make([]int, 100)
	_, err := docket.ExecuteBatch[Greeting](context.Background(), g, items, docket.Concurrency(1))
	var be *docket.BatchError
	if !errors.As(err, &be) || !docket.IsAbort(be.Errs[0]) || be.Errs[99] == nil {
		t.Fatalf("got %v", err)
	}
	if ran.Load() > 2 {
		t.Fatalf("the batch went on after an abort: %d items ran", ran.Load())
	}
}
