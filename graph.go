package docket

import (
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/docket-run/docket/codec"
)

// Graph is a set of steps wired together by their types: a step that takes
// *B depends on the step that returns *B. Build it once, at start-up, with
// NewGraph and Register; it is then safe for concurrent use by any number of
// executions.
type Graph struct {
	name string
	cfg  graphConfig

	mu      sync.Mutex
	steps   []*step
	signals map[string]reflect.Type // payload types of declared signals
	idx     atomic.Pointer[index]
}

// index is the analysed form of a graph: producers and consumers by type,
// the validation result, and the plans compiled so far. It is rebuilt when a
// step is registered, so a graph that is still being built costs nothing.
type index struct {
	g         *Graph
	steps     []*step
	producers map[reflect.Type][]*step
	consumers map[reflect.Type][]*step
	inputs    map[reflect.Type]bool
	err       error
	cache     Cache
	codec     codec.Codec
	plans     sync.Map                  // planKey -> *planEntry
	lastPlan  atomic.Pointer[planEntry] // the plan used last; checked before plans
	types     map[string]reflect.Type
	ambiguous map[string]bool
}

// NewGraph returns an empty graph. The name identifies the graph in errors,
// logs and (in durable mode) stored executions.
func NewGraph(name string, opts ...GraphOption) *Graph {
	g := &Graph{name: name}
	for _, o := range opts {
		o.applyGraph(&g.cfg)
	}
	if g.cfg.codec == nil {
		g.cfg.codec = codec.Default
	}
	return g
}

// Name returns the graph's name.
func (g *Graph) Name() string { return g.name }

// Validate checks the graph as a whole and returns a *ValidationError listing
// every problem: unsupported signatures, duplicate names, types with no or
// several producers, and cycles. Execute validates too, so calling Validate
// is optional, but doing it at start-up (or in a test) finds mistakes early.
func (g *Graph) Validate() error { return g.index().err }

func (g *Graph) add(s *step) {
	g.mu.Lock()
	g.steps = append(g.steps, s)
	g.idx.Store(nil)
	g.mu.Unlock()
}

func (g *Graph) index() *index {
	if ix := g.idx.Load(); ix != nil {
		return ix
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if ix := g.idx.Load(); ix != nil {
		return ix
	}
	ix := &index{
		g:         g,
		steps:     append([]*step(nil), g.steps...),
		producers: map[reflect.Type][]*step{},
		consumers: map[reflect.Type][]*step{},
		inputs:    map[reflect.Type]bool{},
		cache:     g.cfg.cache,
		codec:     g.cfg.codec,
	}
	for _, t := range g.cfg.inputs {
		ix.inputs[t] = true
	}
	for _, s := range ix.steps {
		if s.err != nil {
			continue
		}
		ix.producers[s.out] = append(ix.producers[s.out], s)
		for _, t := range s.inputTypes() {
			ix.consumers[t] = append(ix.consumers[t], s)
		}
		if s.cfg.cacheTTL > 0 && ix.cache == nil {
			ix.cache = NewMemoryCache()
		}
	}
	ix.types, ix.ambiguous = map[string]reflect.Type{}, map[string]bool{}
	name := func(t reflect.Type) {
		if u, ok := ix.types[t.String()]; ok && u != t {
			ix.ambiguous[t.String()] = true
		}
		ix.types[t.String()] = t
	}
	for t := range ix.inputs {
		name(t)
	}
	for _, s := range ix.steps {
		if s.err == nil {
			name(s.out)
			for _, t := range s.in {
				name(t)
			}
		}
	}
	if probs := ix.validate(); len(probs) > 0 {
		ix.err = &ValidationError{Graph: g.name, Problems: probs}
	}
	g.idx.Store(ix)
	return ix
}

func (ix *index) validate() []error {
	var probs []error
	names := map[string]bool{}
	for _, s := range ix.steps {
		if s.err != nil {
			probs = append(probs, s.err)
			continue
		}
		if c := s.cfg.compensate; c != nil && c.in != s.out {
			probs = append(probs, &SignatureError{Step: s.name,
				Reason: fmt.Sprintf("its compensation takes %s but the step produces %s", c.in, s.out)})
		}
		if names[s.name] {
			probs = append(probs, &DuplicateStepError{Step: s.name})
		}
		names[s.name] = true
	}
	// Producers, in registration order of the types they make.
	seen := map[reflect.Type]bool{}
	for _, s := range ix.steps {
		if s.err != nil || seen[s.out] {
			continue
		}
		seen[s.out] = true
		ps := ix.producers[s.out]
		if len(ps) < 2 {
			continue
		}
		race := true
		for _, p := range ps {
			race = race && p.cfg.race
		}
		if !race {
			probs = append(probs, &DuplicateProducerError{Type: s.out, Steps: stepNames(ps)})
		}
	}
	for _, s := range ix.steps {
		if s.err != nil {
			continue
		}
		for _, t := range s.inputTypes() {
			if len(ix.producers[t]) == 0 && !ix.inputs[t] {
				probs = append(probs, &MissingProducerError{Step: s.name, Type: t})
			}
		}
	}
	return append(probs, ix.cycles()...)
}

// cycles finds the loops among steps with a depth-first search, reporting
// each loop once.
func (ix *index) cycles() []error {
	const (
		white = iota
		grey
		black
	)
	color := map[*step]int{}
	var stack []*step
	var probs []error
	var visit func(s *step)
	visit = func(s *step) {
		color[s] = grey
		stack = append(stack, s)
		for _, t := range s.inputTypes() {
			for _, p := range ix.producers[t] {
				switch color[p] {
				case white:
					visit(p)
				case grey:
					var loop []string
					for i := len(stack) - 1; i >= 0; i-- {
						loop = append(loop, stack[i].name)
						if stack[i] == p {
							break
						}
					}
					// Walking the stack down from the top goes producer to consumer.
					probs = append(probs, &CycleError{Steps: append(loop, loop[0])})
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[s] = black
	}
	for _, s := range ix.steps {
		if s.err == nil && color[s] == white {
			visit(s)
		}
	}
	return probs
}

func stepNames(ss []*step) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.name
	}
	return out
}

// known reports whether the graph has any use for values of type t.
func (ix *index) known(t reflect.Type) bool {
	return ix.inputs[t] || len(ix.consumers[t]) > 0 || len(ix.producers[t]) > 0
}

// resolveInput maps the dynamic type of a request input to the graph type it
// feeds: the type itself, or the one interface type among the graph's
// inputs and consumed types that it implements.
func (ix *index) resolveInput(t reflect.Type) (reflect.Type, error) {
	if t == nil {
		return nil, &UnknownInputError{Graph: ix.g.name}
	}
	if ix.known(t) {
		return t, nil
	}
	var match reflect.Type
	try := func(it reflect.Type) bool {
		if it.Kind() != reflect.Interface || !t.Implements(it) || it == match {
			return true
		}
		if match != nil {
			return false // ambiguous
		}
		match = it
		return true
	}
	for it := range ix.inputs {
		if !try(it) {
			return nil, &UnknownInputError{Graph: ix.g.name, Type: t}
		}
	}
	for it := range ix.consumers {
		if !try(it) {
			return nil, &UnknownInputError{Graph: ix.g.name, Type: t}
		}
	}
	if match == nil {
		return nil, &UnknownInputError{Graph: ix.g.name, Type: t}
	}
	return match, nil
}

// As gives v the static type T as an execution input. Use it to pass a nil
// value, or a value for an interface-typed input when the dynamic type would
// match more than one.
func As[T any](v T) any { return typed[T]{v} }

type typed[T any] struct{ v T }

func (t typed[T]) value() (any, reflect.Type) { return t.v, reflect.TypeFor[T]() }

type typedInput interface{ value() (any, reflect.Type) }

// durableErr reports what stops a valid graph from running durably: steps
// without a stable name, and types whose names collide (stored values are
// tagged with type names, so each name must mean one type).
func (ix *index) durableErr() error {
	var probs []error
	for _, s := range ix.steps {
		if s.anon {
			probs = append(probs, &UnnamedStepError{Step: s.name})
		}
	}
	for n := range ix.ambiguous {
		probs = append(probs, fmt.Errorf("two different types are named %s; durable graphs need distinct type names", n))
	}
	if len(probs) == 0 {
		return nil
	}
	return &ValidationError{Graph: ix.g.name, Problems: probs}
}

// typeByName finds a graph type by its name, as stored with values.
func (ix *index) typeByName(name string) (reflect.Type, error) {
	t, ok := ix.types[name]
	if !ok {
		return nil, fmt.Errorf("docket: graph %q has no type named %s (was the graph changed?)", ix.g.name, name)
	}
	return t, nil
}
