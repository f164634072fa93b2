package server

import (
	"testing"
	"time"

	"github.com/docket-run/docket"
)

// A diamond with a long edge: each step sits right of what it takes, and
// no two boxes overlap.
func TestGraphLayout(t *testing.T) {
	info := docket.GraphInfo{
		Name:   "d",
		Inputs: []string{"In"},
		Steps: []docket.GraphStep{
			{Name: "a", Inputs: []string{"In"}, Output: "A"},
			{Name: "b", Inputs: []string{"A"}, Output: "B"},
			{Name: "c", Inputs: []string{"A"}, Output: "C"},
			{Name: "d", Inputs: []string{"B", "C", "In"}, Output: "D"},
			{Name: "signal:s", Output: "S"},
			{Name: "e", Inputs: []string{"S", "D"}, Output: "E"},
		},
	}
	l := graphLayout(info, nil)
	nodes := map[string]Node{}
	for _, n := range l.Nodes {
		nodes[n.ID] = n
	}
	want := map[string]int{"input:In": 0, "step:a": 1, "step:b": 2, "step:c": 2, "step:d": 3, "step:signal:s": 0, "step:e": 4}
	for id, layer := range want {
		if n, ok := nodes[id]; !ok || n.Layer != layer {
			t.Errorf("%s: layer %d (present %v), want %d", id, n.Layer, ok, layer)
		}
	}
	if len(l.Nodes) != len(want) || len(l.Edges) != 8 {
		t.Errorf("%d nodes, %d edges", len(l.Nodes), len(l.Edges))
	}
	if nodes["step:signal:s"].Kind != "signal" || nodes["input:In"].Kind != "input" {
		t.Errorf("kinds: %+v", nodes)
	}
	for _, e := range l.Edges {
		from, to := nodes[e.From], nodes[e.To]
		if from.X+from.W > to.X || len(e.Points) != to.Layer-from.Layer+1 {
			t.Errorf("edge %s -> %s goes backwards or has %d points", e.From, e.To, len(e.Points))
		}
		if e.Points[0].X != from.X+from.W || e.Points[len(e.Points)-1].X != to.X {
			t.Errorf("edge %s -> %s does not join its boxes: %v", e.From, e.To, e.Points)
		}
	}
	for i, a := range l.Nodes {
		if a.X+a.W > l.Width || a.Y+a.H > l.Height {
			t.Errorf("%s is outside the drawing", a.ID)
		}
		for _, b := range l.Nodes[i+1:] {
			if a.X < b.X+b.W && b.X < a.X+a.W && a.Y < b.Y+b.H && b.Y < a.Y+a.H {
				t.Errorf("%s and %s overlap", a.ID, b.ID)
			}
		}
	}
	// Only the kept steps, and the inputs they take.
	sub := graphLayout(info, func(name string) bool { return name == "b" || name == "a" })
	if len(sub.Nodes) != 3 || len(sub.Edges) != 2 {
		t.Errorf("sub-layout: %+v", sub)
	}
}

func TestPartialLayout(t *testing.T) {
	t0 := time.Now()
	l := partialLayout([]Step{
		{Name: "a", ReadyAt: t0},
		{Name: "b", ReadyAt: t0.Add(time.Second)},
		{Name: "c", ReadyAt: t0.Add(time.Second)},
		{Name: "d"},
	})
	layers := map[string]int{}
	for _, n := range l.Nodes {
		layers[n.Step] = n.Layer
	}
	if !l.Partial || layers["a"] != 0 || layers["b"] != 1 || layers["c"] != 1 || layers["d"] != 2 || len(l.Edges) != 0 {
		t.Errorf("partial layout %+v", l)
	}
}

func TestOrderHistory(t *testing.T) {
	t0 := time.Now()
	evs := []docket.HistoryEvent{
		{Kind: "call", Step: "b", Name: "receive"},
		{Time: t0, Kind: "started"},
		{Time: t0, Kind: "step-ready", Step: "a"},
		{Time: t0.Add(1), Kind: "step-started", Step: "a"},
		{Time: t0.Add(2), Kind: "step-done", Step: "a"},
		{Time: t0.Add(2), Kind: "step-ready", Step: "b"},
		{Time: t0.Add(3), Kind: "signal", Name: "x"},
	}
	var got []string
	for _, e := range orderHistory(evs) {
		got = append(got, e.Kind+"/"+e.Step)
	}
	want := "started/ step-ready/a step-started/a step-done/a step-ready/b call/b signal/"
	if s := join(got); s != want {
		t.Errorf("order:\n%s\nwant\n%s", s, want)
	}
}

func join(ss []string) string {
	out := ""
	for i, s := range ss {
		if i > 0 {
			out += " "
		}
		out += s
	}
	return out
}
