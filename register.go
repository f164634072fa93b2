package docket

import (
	"context"
	"fmt"
	"reflect"
	"runtime"
	"strings"
)

// invoker calls a step function with the values in vals at the slots in.
// Registration builds one per step; the typed RegisterN forms build it with
// generics, so the hot path makes a direct call with no reflection.
type invoker func(ctx context.Context, vals []any, in []int32) (any, error)

type step struct {
	name   string
	anon   bool // the name was derived from an anonymous function
	in     []reflect.Type
	out    reflect.Type
	invoke invoker
	mapper *mapper // set for Map steps
	cfg    stepConfig
	err    error // a registration problem, reported by Validate
}

// inputTypes lists the distinct types a step takes.
func (s *step) inputTypes() []reflect.Type {
	if len(s.in) < 2 {
		return s.in
	}
	var out []reflect.Type
	for i, t := range s.in {
		dup := false
		for _, u := range s.in[:i] {
			dup = dup || u == t
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out
}

var (
	contextType = reflect.TypeFor[context.Context]()
	errorType   = reflect.TypeFor[error]()
)

// Register adds a step to g. fn must have the form
//
//	func(ctx context.Context, a A, b B, ...) (Out, error)
//
// with any number of inputs of any types: the step runs when values of all
// its input types are available and provides a value of type Out. Methods
// work too (Register(g, svc.Charge)). A function of another form is recorded
// as a *SignatureError that Validate and Execute report.
//
// Register calls fn through reflection, which costs about half a microsecond
// per call. The typed forms Register0 to Register5 check the signature at
// compile time and call fn directly; use them on hot paths.
func Register(g *Graph, fn any, opts ...StepOption) {
	v := reflect.ValueOf(fn)
	s := &step{}
	if v.Kind() != reflect.Func || v.IsNil() {
		s.name = fmt.Sprintf("%T", fn)
		configure(s, opts)
		s.err = &SignatureError{Step: s.name, Reason: fmt.Sprintf("got %T, want a non-nil function", fn)}
		g.add(s)
		return
	}
	s.name, s.anon = funcName(v)
	configure(s, opts)
	t := v.Type()
	switch {
	case t.IsVariadic():
		s.err = &SignatureError{Step: s.name, Reason: "variadic functions cannot be steps"}
	case t.NumIn() == 0 || t.In(0) != contextType:
		s.err = &SignatureError{Step: s.name, Reason: "the first parameter must be context.Context"}
	case t.NumOut() != 2 || t.Out(1) != errorType:
		s.err = &SignatureError{Step: s.name, Reason: "the results must be (Out, error)"}
	case t.Out(0) == errorType || t.Out(0) == contextType:
		s.err = &SignatureError{Step: s.name, Reason: fmt.Sprintf("a step cannot produce %s", t.Out(0))}
	}
	if s.err != nil {
		g.add(s)
		return
	}
	for i := 1; i < t.NumIn(); i++ {
		if t.In(i) == contextType {
			s.err = &SignatureError{Step: s.name, Reason: "only the first parameter may be context.Context"}
		}
		s.in = append(s.in, t.In(i))
	}
	s.out = t.Out(0)
	in := s.in
	s.invoke = func(ctx context.Context, vals []any, slots []int32) (any, error) {
		args := make([]reflect.Value, len(slots)+1)
		args[0] = reflect.ValueOf(&ctx).Elem()
		for i, si := range slots {
			if vals[si] == nil {
				args[i+1] = reflect.Zero(in[i])
			} else {
				args[i+1] = reflect.ValueOf(vals[si])
			}
		}
		res := v.Call(args)
		err, _ := res[1].Interface().(error)
		return res[0].Interface(), err
	}
	g.add(s)
}

func configure(s *step, opts []StepOption) {
	for _, o := range opts {
		o.applyStep(&s.cfg)
	}
	if s.cfg.name != "" {
		s.name, s.anon = s.cfg.name, false
	}
}

// addTyped registers a step built by a typed RegisterN form.
func addTyped(g *Graph, fn any, out reflect.Type, in []reflect.Type, inv invoker, opts []StepOption) {
	s := &step{in: in, out: out, invoke: inv}
	s.name, s.anon = funcName(reflect.ValueOf(fn))
	configure(s, opts)
	if reflect.ValueOf(fn).IsNil() {
		s.err = &SignatureError{Step: s.name, Reason: "the function is nil"}
	}
	g.add(s)
}

// arg returns the value in slot si as a T; a missing (nil) value is T's zero.
func arg[T any](vals []any, si int32) T {
	v, _ := vals[si].(T)
	return v
}

// Register0 registers a step with no inputs (a source), called without reflection.
func Register0[Out any](g *Graph, fn func(context.Context) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](), nil, func(ctx context.Context, _ []any, _ []int32) (any, error) {
		return fn(ctx)
	}, opts)
}

// Register1 registers a step with one input, called without reflection.
func Register1[A, Out any](g *Graph, fn func(context.Context, A) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](), []reflect.Type{reflect.TypeFor[A]()},
		func(ctx context.Context, v []any, in []int32) (any, error) {
			return fn(ctx, arg[A](v, in[0]))
		}, opts)
}

// Register2 registers a step with two inputs, called without reflection.
func Register2[A, B, Out any](g *Graph, fn func(context.Context, A, B) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](), []reflect.Type{reflect.TypeFor[A](), reflect.TypeFor[B]()},
		func(ctx context.Context, v []any, in []int32) (any, error) {
			return fn(ctx, arg[A](v, in[0]), arg[B](v, in[1]))
		}, opts)
}

// Register3 registers a step with three inputs, called without reflection.
func Register3[A, B, C, Out any](g *Graph, fn func(context.Context, A, B, C) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](),
		[]reflect.Type{reflect.TypeFor[A](), reflect.TypeFor[B](), reflect.TypeFor[C]()},
		func(ctx context.Context, v []any, in []int32) (any, error) {
			return fn(ctx, arg[A](v, in[0]), arg[B](v, in[1]), arg[C](v, in[2]))
		}, opts)
}

// Register4 registers a step with four inputs, called without reflection.
func Register4[A, B, C, D, Out any](g *Graph, fn func(context.Context, A, B, C, D) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](),
		[]reflect.Type{reflect.TypeFor[A](), reflect.TypeFor[B](), reflect.TypeFor[C](), reflect.TypeFor[D]()},
		func(ctx context.Context, v []any, in []int32) (any, error) {
			return fn(ctx, arg[A](v, in[0]), arg[B](v, in[1]), arg[C](v, in[2]), arg[D](v, in[3]))
		}, opts)
}

// Register5 registers a step with five inputs, called without reflection.
func Register5[A, B, C, D, E, Out any](g *Graph, fn func(context.Context, A, B, C, D, E) (Out, error), opts ...StepOption) {
	addTyped(g, fn, reflect.TypeFor[Out](),
		[]reflect.Type{reflect.TypeFor[A](), reflect.TypeFor[B](), reflect.TypeFor[C](), reflect.TypeFor[D](), reflect.TypeFor[E]()},
		func(ctx context.Context, v []any, in []int32) (any, error) {
			return fn(ctx, arg[A](v, in[0]), arg[B](v, in[1]), arg[C](v, in[2]), arg[D](v, in[3]), arg[E](v, in[4]))
		}, opts)
}

// funcName derives a step name from a function: "Charge" for a package-level
// function, "Billing.Charge" for a method value, "main.func1" (anonymous)
// for a closure.
func funcName(v reflect.Value) (name string, anon bool) {
	f := runtime.FuncForPC(v.Pointer())
	if f == nil {
		return "step", true
	}
	n := f.Name()
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	if i := strings.IndexByte(n, '.'); i >= 0 {
		n = n[i+1:] // drop the package name
	}
	n = strings.TrimSuffix(n, "-fm")
	n = strings.NewReplacer("(*", "", ")", "", "[...]", "").Replace(n)
	anon = strings.Contains(n, ".func") || strings.HasPrefix(n, "func") || strings.HasPrefix(n, "glob.")
	return n, anon
}
