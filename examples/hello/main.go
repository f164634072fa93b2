// Hello is the smallest docket graph: two steps that turn a *Name into a
// Greeting.
//
// Steps are plain functions. Docket wires them by type: greet takes the
// FullName that fullName returns, and fullName takes the *Name that every
// execution provides as input. Execute[Greeting] runs just the steps needed
// to make a Greeting, and PlanFor tells which steps those are without
// running anything.
//
//	go run ./examples/hello
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"strings"

	"github.com/docket-run/docket"
)

// Name is the input of every execution.
type Name struct{ First, Last string }

// FullName and Greeting are what the steps produce.
type (
	FullName string
	Greeting string
)

func fullName(_ context.Context, n *Name) (FullName, error) {
	if n.First == "" {
		return "", errors.New("a name needs a first part")
	}
	return FullName(strings.TrimSpace(n.First + " " + n.Last)), nil
}

func greet(_ context.Context, n FullName) (Greeting, error) {
	return Greeting("Hello, " + n + "!"), nil
}

// newGraph builds the graph. Do it once, at start-up: a graph is safe for
// concurrent use by any number of executions.
func newGraph() *docket.Graph {
	g := docket.NewGraph("hello", docket.Input[*Name]())
	docket.Register1(g, fullName)
	docket.Register1(g, greet)
	return g
}

// run greets name and prints the greeting and the plan that made it.
func run(ctx context.Context, w io.Writer, g *docket.Graph, name *Name) error {
	greeting, err := docket.Execute[Greeting](ctx, g, name)
	if err != nil {
		return err
	}
	plan, err := docket.PlanFor[Greeting](g, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, greeting)
	fmt.Fprint(w, plan)
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout, newGraph(), &Name{First: "Ada", Last: "Lovelace"}); err != nil {
		log.Fatal(err)
	}
}
