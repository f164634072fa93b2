package docket

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// plan is what the executor runs: the steps one request needs, with their
// inputs and outputs resolved to dense slot numbers so that an execution is
// a few slices and atomic counters. Plans are compiled once per request
// shape (target type and input types) and cached on the graph's index.
type plan struct {
	ix      *index
	steps   []pstep // in dependency order (by stage, then registration)
	slots   []slot
	target  int32
	inputs  []int32 // slot of each request input, in request order
	roots   []int32 // steps whose inputs are all provided
	hasRace bool
	hasComp bool // some step has a compensation
	byName  map[string]int32
}

type pstep struct {
	st      *step
	in      []int32 // slot of each function parameter
	out     int32
	deps    int32 // distinct input slots that steps must fill
	stage   int
	retry   *RetryPolicy
	timeout time.Duration
}

type slot struct {
	typ       reflect.Type
	consumers []int32 // steps that wait for this slot
	producers []int32 // steps that fill it (several in a race group)
	input     bool
}

type planKey struct {
	target reflect.Type
	n      int
	in     [4]reflect.Type
}

type planEntry struct {
	key planKey
	p   *plan
	err error
}

// planFor returns the cached plan for a target and the dynamic types of the
// request inputs, compiling it on first use.
func (ix *index) planFor(target reflect.Type, in []reflect.Type) (*plan, error) {
	if len(in) > 4 {
		p, err := ix.compile(target, in)
		return p, err
	}
	k := planKey{target: target, n: len(in)}
	copy(k.in[:], in)
	// Most callers run one request shape over and over: comparing with the
	// last plan used is cheaper than hashing k for the map.
	if e := ix.lastPlan.Load(); e != nil && e.key == k {
		return e.p, e.err
	}
	if e, ok := ix.plans.Load(k); ok {
		e := e.(*planEntry)
		ix.lastPlan.Store(e)
		return e.p, e.err
	}
	p, err := ix.compile(target, in)
	e := &planEntry{k, p, err}
	ix.plans.Store(k, e)
	ix.lastPlan.Store(e)
	return p, err
}

func (ix *index) compile(target reflect.Type, given []reflect.Type) (*plan, error) {
	if ix.err != nil {
		return nil, ix.err
	}
	p := &plan{ix: ix}
	slotOf := map[reflect.Type]int32{}
	slotFor := func(t reflect.Type) int32 {
		if i, ok := slotOf[t]; ok {
			return i
		}
		i := int32(len(p.slots))
		slotOf[t] = i
		p.slots = append(p.slots, slot{typ: t})
		return i
	}
	for _, t := range given {
		gt, err := ix.resolveInput(t)
		if err != nil {
			return nil, err
		}
		si := slotFor(gt)
		p.slots[si].input = true
		p.inputs = append(p.inputs, si)
	}

	stepIdx := map[*step]int32{}
	missing := map[reflect.Type][]string{}
	var missingOrder []reflect.Type
	var need func(t reflect.Type, by *step) error
	need = func(t reflect.Type, by *step) error {
		si := slotFor(t)
		if p.slots[si].input || len(p.slots[si].producers) > 0 {
			return nil
		}
		prods := ix.producers[t]
		if len(prods) == 0 {
			if by == nil {
				if ix.inputs[t] {
					return &MissingInputError{Graph: ix.g.name, Type: t, Steps: []string{"the result"}}
				}
				return &UnknownTargetError{Graph: ix.g.name, Type: t}
			}
			if len(missing[t]) == 0 {
				missingOrder = append(missingOrder, t)
			}
			missing[t] = append(missing[t], by.name)
			return nil
		}
		for _, s := range prods {
			i := int32(len(p.steps))
			stepIdx[s] = i
			p.steps = append(p.steps, pstep{st: s, out: si})
			p.slots[si].producers = append(p.slots[si].producers, i)
		}
		p.hasRace = p.hasRace || len(prods) > 1
		for _, s := range prods {
			for _, it := range s.in {
				if err := need(it, s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := need(target, nil); err != nil {
		return nil, err
	}
	if len(missingOrder) > 0 {
		t := missingOrder[0]
		return nil, &MissingInputError{Graph: ix.g.name, Type: t, Steps: missing[t]}
	}
	p.target = slotOf[target]

	// Stages: a step's stage is one more than the latest of its producers'.
	var stage func(i int32) int
	memo := make([]int, len(p.steps))
	stage = func(i int32) int {
		if memo[i] > 0 {
			return memo[i]
		}
		st := 1
		for _, it := range p.steps[i].st.in {
			for _, pi := range p.slots[slotOf[it]].producers {
				st = max(st, stage(pi)+1)
			}
		}
		memo[i] = st
		return st
	}
	order := make([]int32, len(p.steps))
	for i := range p.steps {
		order[i] = int32(i)
		p.steps[i].stage = stage(int32(i))
	}
	regPos := map[*step]int{}
	for i, s := range ix.steps {
		regPos[s] = i
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		sa, sb := &p.steps[a], &p.steps[b]
		if sa.stage != sb.stage {
			return sa.stage - sb.stage
		}
		return regPos[sa.st] - regPos[sb.st]
	})
	renum := make([]int32, len(order))
	sorted := make([]pstep, len(order))
	for newI, oldI := range order {
		renum[oldI] = int32(newI)
		sorted[newI] = p.steps[oldI]
	}
	p.steps = sorted
	for si := range p.slots {
		for k, pi := range p.slots[si].producers {
			p.slots[si].producers[k] = renum[pi]
		}
	}

	cfg := &ix.g.cfg
	p.byName = make(map[string]int32, len(p.steps))
	for i := range p.steps {
		ps := &p.steps[i]
		p.byName[ps.st.name] = int32(i)
		p.hasComp = p.hasComp || ps.st.cfg.compensate != nil
		ps.out = slotOf[ps.st.out]
		ps.in = make([]int32, len(ps.st.in))
		for k, it := range ps.st.in {
			ps.in[k] = slotOf[it]
		}
		for _, it := range ps.st.inputTypes() {
			si := slotOf[it]
			p.slots[si].consumers = append(p.slots[si].consumers, int32(i))
			if !p.slots[si].input {
				ps.deps++
			}
		}
		if ps.deps == 0 {
			p.roots = append(p.roots, int32(i))
		}
		ps.retry, ps.timeout = ps.st.cfg.retry, ps.st.cfg.timeout
		if ps.retry == nil {
			ps.retry = cfg.retry
		}
		if ps.timeout == 0 {
			ps.timeout = cfg.timeout
		}
	}
	return p, nil
}

// Plan describes what one request would run: the steps, in the stages in
// which they can run (every step of a stage may run concurrently with the
// others of that stage), without running anything.
type Plan struct {
	Graph  string
	Target string
	Inputs []string
	Steps  []PlanStep
}

// PlanStep is one step of a Plan.
type PlanStep struct {
	Name   string
	Inputs []string
	Output string
	Stage  int  // 1 for steps that need only request inputs
	Race   bool // one of several racing producers of Output
}

// PlanFor tells which steps Execute[Out] would run for the given inputs,
// which may be values (as for Execute) or reflect.Types.
func PlanFor[Out any](g *Graph, inputs ...any) (*Plan, error) {
	ix := g.index()
	types := make([]reflect.Type, 0, len(inputs))
	for _, in := range inputs {
		switch v := in.(type) {
		case reflect.Type:
			types = append(types, v)
		case ExecuteOption:
		case typedInput:
			_, t := v.value()
			types = append(types, t)
		default:
			types = append(types, reflect.TypeOf(in))
		}
	}
	p, err := ix.compile(reflect.TypeFor[Out](), types)
	if err != nil {
		return nil, err
	}
	out := &Plan{Graph: g.name, Target: p.slots[p.target].typ.String()}
	for _, si := range p.inputs {
		out.Inputs = append(out.Inputs, p.slots[si].typ.String())
	}
	for _, ps := range p.steps {
		s := PlanStep{Name: ps.st.name, Output: ps.st.out.String(), Stage: ps.stage,
			Race: len(p.slots[ps.out].producers) > 1}
		for _, t := range ps.st.in {
			s.Inputs = append(s.Inputs, t.String())
		}
		out.Steps = append(out.Steps, s)
	}
	return out, nil
}

// Stages groups the plan's step names by stage.
func (p *Plan) Stages() [][]string {
	var out [][]string
	for _, s := range p.Steps {
		for len(out) < s.Stage {
			out = append(out, nil)
		}
		out[s.Stage-1] = append(out[s.Stage-1], s.Name)
	}
	return out
}

// String renders the plan as one line per stage.
func (p *Plan) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "plan %s -> %s", p.Graph, p.Target)
	if len(p.Inputs) > 0 {
		fmt.Fprintf(&b, " from %s", strings.Join(p.Inputs, ", "))
	}
	b.WriteString("\n")
	for i, st := range p.Stages() {
		fmt.Fprintf(&b, "  stage %d: %s\n", i+1, strings.Join(st, ", "))
	}
	return b.String()
}

// stepIndex finds a step of the plan by name; a nil plan has none.
func (p *plan) stepIndex(name string) (int32, bool) {
	if p == nil {
		return 0, false
	}
	i, ok := p.byName[name]
	return i, ok
}
