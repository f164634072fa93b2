package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	want := "Hello, Ada!\nBonjour, Ada!\nHallo, Ada!\n" +
		"child greet-1/compose/en: completed\nchild greet-1/compose/fr: completed\nchild greet-1/compose/de: completed\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

func TestChildErrorReachesParent(t *testing.T) {
	parent, child := NewGraphs()
	env := docktest.New(t, docktest.Options{}, parent, child)
	ctx := context.Background()
	h, _ := docket.Start[Card](ctx, env.Engine, parent, "g", Request{Name: "Bo", Languages: []string{"en", "xx"}})
	_, err := h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || !strings.Contains(xe.Message, `no greeting in "xx"`) {
		t.Fatalf("got %v", err)
	}
	d, err := env.Describe(ctx, "g/compose/xx")
	if err != nil || d.Status != "failed" {
		t.Fatalf("the failed child is recorded: %+v %v", d, err)
	}
}
