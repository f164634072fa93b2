package main

import (
	"bytes"
	"context"
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
	want := "hello -> HELLO\ndurable -> DURABLE\nworld -> WORLD\n" +
		"refused: docket: update \"uppercase\" rejected: nothing to uppercase\nserved 3 requests\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// The same update ID twice: one answer, one run of the handler.
func TestRepeatedUpdateID(t *testing.T) {
	g := NewGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, g)
	ctx := context.Background()
	h, _ := docket.Start[Served](ctx, env.Engine, g, "u", Service{})
	for range 3 {
		up, err := docket.Update[string](ctx, env.Engine, "u", "uppercase", "once", docket.UpdateID("req-1"))
		if err != nil || up != "ONCE" {
			t.Fatalf("%q %v", up, err)
		}
	}
	if err := env.Signal(ctx, "u", "stop", true); err != nil {
		t.Fatal(err)
	}
	s, err := h.Result(ctx)
	if err != nil || s.Requests != 1 {
		t.Fatalf("served %+v, %v; want 1 request", s, err)
	}
}
