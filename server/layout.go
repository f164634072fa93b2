package server

import (
	"sort"
	"strings"

	"github.com/docket-run/docket"
)

// Layout places a graph's nodes for drawing, left to right: a node's layer
// (its column) is the length of the longest path that reaches it, so every
// edge points rightwards. Within a layer nodes are ordered to keep edges
// short and crossings few.
type Layout struct {
	Width  int `json:"width"`
	Height int `json:"height"`
	// Partial is set when the edges are unknown (the server does not run
	// the graph): steps are then laid out by when they became ready.
	Partial bool   `json:"partial,omitempty"`
	Nodes   []Node `json:"nodes"`
	Edges   []Edge `json:"edges"`
}

// Node is a box of a Layout: a step, a signal-fed step or a graph input.
type Node struct {
	ID string `json:"id"`
	// Kind is step, signal (a step fed by a declared signal) or input.
	Kind string `json:"kind"`
	// Step is the step's name (empty for inputs).
	Step string `json:"step,omitempty"`
	// Label is the text to show; Type the value the node makes.
	Label string `json:"label"`
	Type  string `json:"type"`
	Layer int    `json:"layer"`
	X     int    `json:"x"`
	Y     int    `json:"y"`
	W     int    `json:"w"`
	H     int    `json:"h"`
}

// Edge is a value passed from one node to another, drawn through Points.
type Edge struct {
	From   string  `json:"from"`
	To     string  `json:"to"`
	Type   string  `json:"type"`
	Points []Point `json:"points"`
}

// Point is a position in a Layout.
type Point struct {
	X int `json:"x"`
	Y int `json:"y"`
}

// Sizes of the drawing, in SVG units.
const (
	nodeW   = 190
	nodeH   = 58
	dummyH  = 14
	gapX    = 64
	gapY    = 22
	padding = 16
)

// lnode is a node being laid out; dummies stand in for long edges.
type lnode struct {
	Node
	dummy bool
	preds []int
	succs []int
	pos   float64 // order within its layer
}

// graphLayout lays out the steps of info whose names keep reports true
// (all when keep is nil) and the inputs they take.
func graphLayout(info docket.GraphInfo, keep func(string) bool) *Layout {
	var ns []*lnode
	index := map[string]int{}
	add := func(n Node) int {
		index[n.ID] = len(ns)
		ns = append(ns, &lnode{Node: n})
		return len(ns) - 1
	}
	producers := map[string][]int{}
	var steps []docket.GraphStep
	for _, s := range info.Steps {
		if keep != nil && !keep(s.Name) {
			continue
		}
		steps = append(steps, s)
		kind := "step"
		if strings.HasPrefix(s.Name, "signal:") && len(s.Inputs) == 0 {
			kind = "signal"
		}
		i := add(Node{ID: "step:" + s.Name, Kind: kind, Step: s.Name, Label: s.Name, Type: s.Output})
		producers[s.Output] = append(producers[s.Output], i)
	}
	isInput := map[string]bool{}
	for _, t := range info.Inputs {
		isInput[t] = true
	}
	type edge struct {
		from, to int
		typ      string
	}
	var edges []edge
	for _, s := range steps {
		to := index["step:"+s.Name]
		for _, t := range s.Inputs {
			from := producers[t]
			if len(from) == 0 && isInput[t] {
				id := "input:" + t
				i, ok := index[id]
				if !ok {
					i = add(Node{ID: id, Kind: "input", Label: t, Type: t})
				}
				from = []int{i}
			}
			for _, f := range from {
				edges = append(edges, edge{f, to, t})
			}
		}
	}
	for _, e := range edges {
		ns[e.from].succs = append(ns[e.from].succs, e.to)
		ns[e.to].preds = append(ns[e.to].preds, e.from)
	}
	// Longest-path layering (the graph is acyclic; the guard only keeps a
	// malformed one from looping).
	layer := make([]int, len(ns))
	state := make([]int8, len(ns))
	var visit func(int) int
	visit = func(i int) int {
		switch state[i] {
		case 1:
			return 0
		case 2:
			return layer[i]
		}
		state[i] = 1
		l := 0
		for _, p := range ns[i].preds {
			l = max(l, visit(p)+1)
		}
		state[i], layer[i] = 2, l
		return l
	}
	for i := range ns {
		ns[i].Layer = visit(i)
	}
	// Inputs sit just left of their first consumer.
	for _, n := range ns {
		if n.Kind == "input" && len(n.succs) > 0 {
			l := ns[n.succs[0]].Layer
			for _, s := range n.succs {
				l = min(l, ns[s].Layer)
			}
			n.Layer = max(l-1, 0)
		}
	}
	nReal := len(ns)
	// Long edges get a dummy node per layer they cross.
	var routes [][]int
	for i := range ns[:nReal] {
		ns[i].preds, ns[i].succs = nil, nil
	}
	for _, e := range edges {
		route := []int{e.from}
		prev := e.from
		for l := ns[e.from].Layer + 1; l < ns[e.to].Layer; l++ {
			d := len(ns)
			ns = append(ns, &lnode{Node: Node{Layer: l, W: 2, H: dummyH}, dummy: true})
			ns[prev].succs = append(ns[prev].succs, d)
			ns[d].preds = append(ns[d].preds, prev)
			route = append(route, d)
			prev = d
		}
		ns[prev].succs = append(ns[prev].succs, e.to)
		ns[e.to].preds = append(ns[e.to].preds, prev)
		routes = append(routes, append(route, e.to))
	}
	layers := orderLayers(ns)
	l := place(ns, layers)
	for i := range ns[:nReal] {
		l.Nodes = append(l.Nodes, ns[i].Node)
	}
	for k, e := range edges {
		r := routes[k]
		pts := []Point{{ns[e.from].X + ns[e.from].W, ns[e.from].Y + ns[e.from].H/2}}
		for _, d := range r[1 : len(r)-1] {
			pts = append(pts, Point{ns[d].X, ns[d].Y + ns[d].H/2})
		}
		pts = append(pts, Point{ns[e.to].X, ns[e.to].Y + ns[e.to].H/2})
		l.Edges = append(l.Edges, Edge{From: ns[e.from].ID, To: ns[e.to].ID, Type: e.typ, Points: pts})
	}
	if l.Edges == nil {
		l.Edges = []Edge{}
	}
	return l
}

// orderLayers groups nodes by layer and orders each layer by the mean
// position of its neighbours (the barycentre heuristic), sweeping right and
// left a few times.
func orderLayers(ns []*lnode) [][]int {
	var layers [][]int
	for i, n := range ns {
		for len(layers) <= n.Layer {
			layers = append(layers, nil)
		}
		layers[n.Layer] = append(layers[n.Layer], i)
	}
	renumber := func(layer []int) {
		for k, i := range layer {
			ns[i].pos = float64(k)
		}
	}
	for _, layer := range layers {
		renumber(layer)
	}
	bary := func(layer []int, next func(*lnode) []int) {
		key := map[int]float64{}
		for _, i := range layer {
			nb := next(ns[i])
			if len(nb) == 0 {
				key[i] = ns[i].pos
				continue
			}
			sum := 0.0
			for _, j := range nb {
				sum += ns[j].pos
			}
			key[i] = sum / float64(len(nb))
		}
		sort.SliceStable(layer, func(a, b int) bool { return key[layer[a]] < key[layer[b]] })
		renumber(layer)
	}
	for range 4 {
		for l := 1; l < len(layers); l++ {
			bary(layers[l], func(n *lnode) []int { return n.preds })
		}
		for l := len(layers) - 2; l >= 0; l-- {
			bary(layers[l], func(n *lnode) []int { return n.succs })
		}
	}
	return layers
}

// place gives every node its position: layers are columns, each centred
// vertically on the tallest.
func place(ns []*lnode, layers [][]int) *Layout {
	heights := make([]int, len(layers))
	tallest := 0
	for l, layer := range layers {
		for k, i := range layer {
			if !ns[i].dummy {
				ns[i].W, ns[i].H = nodeW, nodeH
			}
			if k > 0 {
				heights[l] += gapY
			}
			heights[l] += ns[i].H
		}
		tallest = max(tallest, heights[l])
	}
	for l, layer := range layers {
		y := padding + (tallest-heights[l])/2
		x := padding + l*(nodeW+gapX)
		for _, i := range layer {
			n := ns[i]
			n.X, n.Y = x, y
			if n.dummy {
				n.X = x + nodeW/2
			}
			y += n.H + gapY
		}
	}
	return &Layout{
		Width:  2*padding + max(len(layers)*(nodeW+gapX)-gapX, 0),
		Height: 2*padding + tallest,
	}
}

// partialLayout lays out the steps of an execution whose graph the server
// does not know: steps that became ready together share a column.
func partialLayout(steps []Step) *Layout {
	type group struct {
		key   int64
		steps []Step
	}
	var groups []*group
	byKey := map[int64]*group{}
	for _, s := range steps {
		k := int64(1) << 62 // not ready yet: last
		if !s.ReadyAt.IsZero() {
			k = s.ReadyAt.UnixMilli()
		}
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.steps = append(g.steps, s)
	}
	sort.SliceStable(groups, func(i, j int) bool { return groups[i].key < groups[j].key })
	var ns []*lnode
	var layers [][]int
	for l, g := range groups {
		var layer []int
		for _, s := range g.steps {
			layer = append(layer, len(ns))
			ns = append(ns, &lnode{Node: Node{ID: "step:" + s.Name, Kind: "step", Step: s.Name, Label: s.Name, Layer: l}})
		}
		layers = append(layers, layer)
	}
	out := place(ns, layers)
	out.Partial = true
	out.Nodes, out.Edges = []Node{}, []Edge{}
	for _, n := range ns {
		out.Nodes = append(out.Nodes, n.Node)
	}
	return out
}
