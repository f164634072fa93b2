package main

import (
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPage(t *testing.T) {
	page, err := run(context.Background(), io.Discard, &Backend{Latency: time.Millisecond}, "7")
	if err != nil {
		t.Fatal(err)
	}
	want := &Page{
		Title:  "Welcome back, user 7",
		Orders: Orders{"kettle", "teapot"},
		Picks:  []Pick{{"mug", 900}, {"strainer", 450}},
	}
	if !reflect.DeepEqual(page, want) {
		t.Errorf("page = %+v, want %+v", page, want)
	}
}

// The five calls are in flight at the same time, so the page takes about
// one call's latency rather than five.
func TestCallsRunConcurrently(t *testing.T) {
	const latency = 100 * time.Millisecond
	b := &Backend{Latency: latency}
	start := time.Now()
	if _, err := docket.Execute[*Page](context.Background(), newGraph(b), &Request{UserID: "1"}); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if got := b.Peak(); got != 5 {
		t.Errorf("at most %d calls were in flight at once, want 5", got)
	}
	if elapsed >= 4*latency { // run one after another they would take 5×latency
		t.Errorf("Execute took %v, want well under %v", elapsed, 5*latency)
	}
}

func TestPlanHasTwoStages(t *testing.T) {
	plan, err := docket.PlanFor[*Page](newGraph(&Backend{}), &Request{})
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"Backend.Profile", "Backend.Orders", "Backend.Recommendations", "Backend.Inventory", "Backend.Prices"},
		{"buildPage"},
	}
	if got := plan.Stages(); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("stages = %v, want %v", got, want)
	}
}

// When the caller's context ends, the calls in flight stop and Execute
// returns at once; goleak (TestMain) checks that no goroutine is left behind.
func TestCallerGivesUp(t *testing.T) {
	b := &Backend{Latency: time.Hour}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := docket.Execute[*Page](ctx, newGraph(b), &Request{UserID: "1"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Execute took %v after its context ended", elapsed)
	}
	var se *docket.StepError
	if !errors.As(err, &se) {
		t.Errorf("err = %v, want it to name the step that was stopped (*docket.StepError)", err)
	}
}
