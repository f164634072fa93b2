package docket

import (
	"fmt"
	"reflect"
	"strings"
)

// edge is one dependency: the producer's output is the consumer's input.
type edge struct {
	from, to string // step names; from is "" for a graph input
	typ      reflect.Type
}

// edges lists the graph's dependencies in registration order.
func (ix *index) edges() []edge {
	var out []edge
	for _, s := range ix.steps {
		if s.err != nil {
			continue
		}
		for _, t := range s.inputTypes() {
			prods := ix.producers[t]
			if len(prods) == 0 || ix.inputs[t] {
				out = append(out, edge{to: s.name, typ: t})
			}
			for _, p := range prods {
				out = append(out, edge{from: p.name, to: s.name, typ: t})
			}
		}
	}
	return out
}

// Mermaid renders the graph as a Mermaid flowchart: a box per step, a
// rounded node per input type, an arrow per dependency labelled with its type.
func (g *Graph) Mermaid() string {
	ix := g.index()
	var b strings.Builder
	b.WriteString("flowchart LR\n")
	ids := map[string]string{}
	id := func(kind, name string) string {
		k := kind + name
		if v, ok := ids[k]; ok {
			return v
		}
		v := fmt.Sprintf("%s%d", kind, len(ids))
		ids[k] = v
		if kind == "s" {
			fmt.Fprintf(&b, "  %s[%q]\n", v, name)
		} else {
			fmt.Fprintf(&b, "  %s([%q])\n", v, name)
		}
		return v
	}
	for _, s := range ix.steps {
		if s.err == nil {
			id("s", s.name)
		}
	}
	for _, e := range ix.edges() {
		from := ""
		if e.from == "" {
			from = id("i", e.typ.String())
		} else {
			from = id("s", e.from)
		}
		fmt.Fprintf(&b, "  %s -->|%s| %s\n", from, mermaidLabel(e.typ.String()), id("s", e.to))
	}
	return b.String()
}

func mermaidLabel(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, "#quot;") + `"`
}

// DOT renders the graph in Graphviz's DOT language.
func (g *Graph) DOT() string {
	ix := g.index()
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  node [shape=box];\n", g.name)
	for _, s := range ix.steps {
		if s.err == nil {
			fmt.Fprintf(&b, "  %q;\n", s.name)
		}
	}
	inputs := map[string]bool{}
	for _, e := range ix.edges() {
		from := e.from
		if from == "" {
			from = "input " + e.typ.String()
			if !inputs[from] {
				inputs[from] = true
				fmt.Fprintf(&b, "  %q [shape=ellipse];\n", from)
			}
		}
		fmt.Fprintf(&b, "  %q -> %q [label=%q];\n", from, e.to, e.typ.String())
	}
	b.WriteString("}\n")
	return b.String()
}
