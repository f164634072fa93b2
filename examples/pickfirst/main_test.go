package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func lookup(g *docket.Graph) (*Answer, time.Duration, error) {
	start := time.Now()
	a, err := docket.Execute[*Answer](context.Background(), g, &Query{Key: "k"})
	return a, time.Since(start), err
}

func TestFastReplicaWins(t *testing.T) {
	slow := &Replica{Name: "slow", Latency: time.Hour}
	fast := &Replica{Name: "fast", Latency: 10 * time.Millisecond}
	a, elapsed, err := lookup(newGraph(slow, fast))
	if err != nil {
		t.Fatal(err)
	}
	if a.From != "fast" || a.Value != "K" {
		t.Errorf("answer = %+v, want K from fast", a)
	}
	// The loser's context was cancelled and it returned before Execute did.
	if !errors.Is(slow.Stopped, context.Canceled) {
		t.Errorf("slow replica stopped with %v, want context.Canceled", slow.Stopped)
	}
	if fast.Stopped != nil {
		t.Errorf("fast replica stopped with %v, want it to finish", fast.Stopped)
	}
	if elapsed > 10*time.Second {
		t.Errorf("Execute took %v; it should not wait out the slow replica", elapsed)
	}
}

func TestFailedReplicaDoesNotFailTheRace(t *testing.T) {
	down := &Replica{Name: "down", Down: true}
	up := &Replica{Name: "up", Latency: 10 * time.Millisecond}
	a, _, err := lookup(newGraph(down, up))
	if err != nil {
		t.Fatal(err)
	}
	if a.From != "up" {
		t.Errorf("answer from %q, want up", a.From)
	}
}

func TestAllReplicasDown(t *testing.T) {
	_, _, err := lookup(newGraph(&Replica{Name: "a", Down: true}, &Replica{Name: "b", Down: true}))
	if !errors.Is(err, ErrDown) {
		t.Fatalf("err = %v, want ErrDown", err)
	}
	var se *docket.StepError
	if !errors.As(err, &se) {
		t.Errorf("err = %v, want it to hold a *docket.StepError", err)
	}
	for _, name := range []string{`"a"`, `"b"`} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("err = %v, want it to mention step %s", err, name)
		}
	}
}

func TestPlanShowsRace(t *testing.T) {
	plan, err := docket.PlanFor[*Answer](newGraph(&Replica{Name: "a"}, &Replica{Name: "b"}), &Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Steps) != 2 || !plan.Steps[0].Race || !plan.Steps[1].Race || plan.Steps[0].Stage != 1 || plan.Steps[1].Stage != 1 {
		t.Errorf("plan steps = %+v, want two racing steps in stage 1", plan.Steps)
	}
}

// Without Race, two producers of one type is a mistake that Validate reports.
func TestTwoProducersNeedRace(t *testing.T) {
	a, b := &Replica{Name: "a"}, &Replica{Name: "b"}
	g := docket.NewGraph("lookup", docket.Input[*Query]())
	docket.Register1(g, a.Lookup, docket.Name(a.Name))
	docket.Register1(g, b.Lookup, docket.Name(b.Name))
	var dp *docket.DuplicateProducerError
	if err := g.Validate(); !errors.As(err, &dp) {
		t.Errorf("Validate = %v, want a *docket.DuplicateProducerError", err)
	}
}

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, `secondary answered "HELLO" in`) ||
		!strings.HasSuffix(got, "primary was stopped: context canceled\n") {
		t.Errorf("output:\n%s", got)
	}
}
