// Childworkflow runs a parent graph that calls a child graph: Temporal's
// child-workflow sample, on docket.
//
// The parent's step calls docket.Call, which in a durable execution starts
// the child as an execution of its own, with an ID derived from the
// parent's ("greet-1/compose/en"). The child is recorded and visible like
// any execution; the parent step suspends until the child ends and then
// gets its result. If the parent is cancelled or fails, the children it is
// waiting for are cancelled with it (docket.Abandon opts a child out).
//
//	go run ./examples/childworkflow
package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/docket-run/docket"
)

// Request asks for a greeting in some languages.
type Request struct {
	Name      string
	Languages []string
}

// Phrase is the child's input; Greeting its output.
type (
	Phrase   struct{ Name, Language string }
	Greeting string
	Card     string // the parent's result
)

var hello = map[string]string{"en": "Hello", "fr": "Bonjour", "de": "Hallo"}

// NewGraphs returns the parent graph and the child graph it calls.
func NewGraphs() (parent, child *docket.Graph) {
	child = docket.NewGraph("greeting", docket.Input[Phrase]())
	docket.Register1(child, func(ctx context.Context, p Phrase) (Greeting, error) {
		h, ok := hello[p.Language]
		if !ok {
			return "", docket.NonRetryable(fmt.Errorf("no greeting in %q", p.Language))
		}
		return Greeting(h + ", " + p.Name + "!"), nil
	}, docket.Name("translate"))

	parent = docket.NewGraph("card", docket.Input[Request]())
	docket.Register1(parent, func(ctx context.Context, r Request) (Card, error) {
		var lines []string
		for _, lang := range r.Languages {
			// One child per language, keyed by the language.
			g, err := docket.Call[Greeting](ctx, child, lang, Phrase{Name: r.Name, Language: lang})
			if err != nil {
				return "", err
			}
			lines = append(lines, string(g))
		}
		return Card(strings.Join(lines, "\n")), nil
	}, docket.Name("compose"))
	return parent, child
}

func run(ctx context.Context, w io.Writer, dir string) error {
	parent, child := NewGraphs()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(dir, "child.db"),
		Graphs: []*docket.Graph{parent, child}})
	if err != nil {
		return err
	}
	defer eng.Close()
	h, err := docket.Start[Card](ctx, eng, parent, "greet-1", Request{Name: "Ada", Languages: []string{"en", "fr", "de"}})
	if err != nil {
		return err
	}
	card, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, card)
	kids, _, err := eng.List(ctx, docket.ListOptions{Graph: "greeting"})
	if err != nil {
		return err
	}
	for i := len(kids) - 1; i >= 0; i-- {
		fmt.Fprintf(w, "child %s: %s\n", kids[i].ID, kids[i].Status)
	}
	return nil
}

func main() {
	dir, err := os.MkdirTemp("", "childworkflow")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := run(context.Background(), os.Stdout, dir); err != nil {
		log.Fatal(err)
	}
}
