package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out, newGraph(), &Name{First: "Ada", Last: "Lovelace"}); err != nil {
		t.Fatal(err)
	}
	want := `Hello, Ada Lovelace!
plan hello -> main.Greeting from *main.Name
  stage 1: fullName
  stage 2: greet
`
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestGraphIsValid(t *testing.T) {
	if err := newGraph().Validate(); err != nil {
		t.Fatal(err)
	}
}

// Asking for a FullName runs fullName only: greet is not needed for it.
func TestOnlyNeededStepsRun(t *testing.T) {
	g := newGraph()
	plan, err := docket.PlanFor[FullName](g, &Name{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plan.Stages(), [][]string{{"fullName"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("stages = %v, want %v", got, want)
	}
	n, err := docket.Execute[FullName](context.Background(), g, &Name{First: "Grace", Last: "Hopper"})
	if err != nil || n != "Grace Hopper" {
		t.Errorf("Execute = %q, %v; want \"Grace Hopper\"", n, err)
	}
}

func TestStepError(t *testing.T) {
	_, err := docket.Execute[Greeting](context.Background(), newGraph(), &Name{Last: "Nobody"})
	var se *docket.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *docket.StepError", err)
	}
	if se.Graph != "hello" || se.Step != "fullName" || se.Attempts != 1 {
		t.Errorf("StepError = %+v, want graph hello, step fullName, 1 attempt", se)
	}
}

func TestMissingInput(t *testing.T) {
	_, err := docket.Execute[Greeting](context.Background(), newGraph())
	var mi *docket.MissingInputError
	if !errors.As(err, &mi) {
		t.Fatalf("err = %v, want a *docket.MissingInputError", err)
	}
}
