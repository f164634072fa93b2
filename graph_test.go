package docket_test

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/docket-run/docket"
)

type (
	Order       struct{ ID string }
	Charge      struct{ Amount int }
	Reservation struct{ Item string }
	Shipment    struct {
		Order  string
		Amount int
		Item   string
	}
	Invoice struct{ Total int }
)

func charge(_ context.Context, o *Order) (*Charge, error) {
	return &Charge{Amount: len(o.ID) * 10}, nil
}
func reserve(_ context.Context, o *Order) (*Reservation, error) {
	return &Reservation{Item: "item-" + o.ID}, nil
}
func ship(_ context.Context, o *Order, c *Charge, r *Reservation) (*Shipment, error) {
	return &Shipment{Order: o.ID, Amount: c.Amount, Item: r.Item}, nil
}

// checkout builds the graph most tests use: two independent steps feeding a third.
func checkout(opts ...docket.GraphOption) *docket.Graph {
	g := docket.NewGraph("checkout", append([]docket.GraphOption{docket.Input[*Order]()}, opts...)...)
	docket.Register1(g, charge)
	docket.Register(g, reserve) // the reflective form, mixed with typed ones
	docket.Register3(g, ship)
	return g
}

func TestValidateAcceptsGoodGraph(t *testing.T) {
	if err := checkout().Validate(); err != nil {
		t.Fatal(err)
	}
}

func problems[T error](t *testing.T, err error) []T {
	t.Helper()
	var ve *docket.ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %v", err)
	}
	var out []T
	for _, p := range ve.Problems {
		if e, ok := p.(T); ok {
			out = append(out, e)
		}
	}
	return out
}

func TestValidateMissingProducer(t *testing.T) {
	g := docket.NewGraph("g") // *Order not declared as input
	docket.Register1(g, charge)
	err := g.Validate()
	ps := problems[*docket.MissingProducerError](t, err)
	if len(ps) != 1 || ps[0].Step != "charge" || ps[0].Type != reflect.TypeFor[*Order]() {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), "docket.Input[*docket_test.Order]()") {
		t.Errorf("message should say how to fix it: %v", err)
	}
}

func TestValidateDuplicateProducer(t *testing.T) {
	g := checkout()
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) { return nil, nil }, docket.Name("charge2"))
	ps := problems[*docket.DuplicateProducerError](t, g.Validate())
	if len(ps) != 1 || !reflect.DeepEqual(ps[0].Steps, []string{"charge", "charge2"}) {
		t.Fatalf("got %v", ps)
	}
}

func TestValidateRaceNeedsEveryProducerMarked(t *testing.T) {
	g := checkout()
	docket.Register1(g, func(_ context.Context, o *Order) (*Charge, error) { return nil, nil }, docket.Name("c2"), docket.Race())
	if len(problems[*docket.DuplicateProducerError](t, g.Validate())) != 1 {
		t.Fatal("a race group with an unmarked member must be rejected")
	}
}

type (
	A struct{}
	B struct{}
	C struct{}
)

func TestValidateCycle(t *testing.T) {
	g := docket.NewGraph("loop")
	docket.Register1(g, func(context.Context, A) (B, error) { return B{}, nil }, docket.Name("ab"))
	docket.Register1(g, func(context.Context, B) (C, error) { return C{}, nil }, docket.Name("bc"))
	docket.Register1(g, func(context.Context, C) (A, error) { return A{}, nil }, docket.Name("ca"))
	ps := problems[*docket.CycleError](t, g.Validate())
	if len(ps) != 1 {
		t.Fatalf("want one cycle, got %v", ps)
	}
	got := strings.Join(ps[0].Steps, " ")
	if got != "ab bc ca ab" && got != "bc ca ab bc" && got != "ca ab bc ca" {
		t.Fatalf("cycle = %q", got)
	}
	if _, err := docket.Execute[C](context.Background(), g); err == nil {
		t.Fatal("Execute of an invalid graph must fail")
	}
}

func TestValidateSignatures(t *testing.T) {
	cases := map[string]any{
		"not a function": 42,
		"no context":     func(o *Order) (*Charge, error) { return nil, nil },
		"no error":       func(ctx context.Context, o *Order) *Charge { return nil },
		"three results":  func(ctx context.Context) (int, int, error) { return 0, 0, nil },
		"variadic":       func(ctx context.Context, xs ...int) (int, error) { return 0, nil },
		"nil func":       (func(context.Context) (int, error))(nil),
	}
	for name, fn := range cases {
		t.Run(name, func(t *testing.T) {
			g := docket.NewGraph("g")
			docket.Register(g, fn, docket.Name("bad"))
			ps := problems[*docket.SignatureError](t, g.Validate())
			if len(ps) != 1 || ps[0].Step != "bad" {
				t.Fatalf("got %v", ps)
			}
		})
	}
	g := docket.NewGraph("g")
	docket.Register1(g, (func(context.Context, int) (string, error))(nil), docket.Name("nil typed"))
	if len(problems[*docket.SignatureError](t, g.Validate())) != 1 {
		t.Fatal("nil typed function must be rejected")
	}
}

func TestValidateDuplicateNames(t *testing.T) {
	g := docket.NewGraph("g")
	docket.Register0(g, func(context.Context) (A, error) { return A{}, nil }, docket.Name("x"))
	docket.Register0(g, func(context.Context) (B, error) { return B{}, nil }, docket.Name("x"))
	if ps := problems[*docket.DuplicateStepError](t, g.Validate()); len(ps) != 1 || ps[0].Step != "x" {
		t.Fatalf("got %v", ps)
	}
}

type Billing struct{ rate int }

func (b *Billing) Charge(_ context.Context, o *Order) (*Charge, error) {
	return &Charge{Amount: b.rate}, nil
}

func TestStepNames(t *testing.T) {
	g := docket.NewGraph("g", docket.Input[*Order]())
	docket.Register1(g, (&Billing{rate: 7}).Charge)
	docket.Register(g, reserve)
	p, err := docket.PlanFor[*Reservation](g, &Order{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Steps[0].Name != "reserve" {
		t.Errorf("function name: got %q", p.Steps[0].Name)
	}
	p, err = docket.PlanFor[*Charge](g, &Order{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Steps[0].Name != "Billing.Charge" {
		t.Errorf("method name: got %q", p.Steps[0].Name)
	}
	c, err := docket.Execute[*Charge](context.Background(), g, &Order{})
	if err != nil || c.Amount != 7 {
		t.Fatalf("method step: %v %v", c, err)
	}
}

func TestPlan(t *testing.T) {
	g := checkout()
	docket.Register1(g, func(_ context.Context, s *Shipment) (*Invoice, error) { return &Invoice{}, nil }, docket.Name("invoice"))
	p, err := docket.PlanFor[*Shipment](g, reflect.TypeFor[*Order]())
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"charge", "reserve"}, {"ship"}}
	if !reflect.DeepEqual(p.Stages(), want) {
		t.Fatalf("stages = %v, want %v (invoice is not needed)", p.Stages(), want)
	}
	// Providing a value a step produces replaces that step.
	p, err = docket.PlanFor[*Shipment](g, &Order{}, &Charge{})
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"reserve"}, {"ship"}}; !reflect.DeepEqual(p.Stages(), want) {
		t.Fatalf("stages = %v, want %v", p.Stages(), want)
	}
	if s := p.String(); !strings.Contains(s, "stage 1: reserve") {
		t.Errorf("String() = %q", s)
	}
}

func TestRequestInputErrors(t *testing.T) {
	ctx := context.Background()
	g := checkout()
	_, err := docket.Execute[*Shipment](ctx, g)
	var mi *docket.MissingInputError
	if !errors.As(err, &mi) || mi.Type != reflect.TypeFor[*Order]() {
		t.Fatalf("missing input: %v", err)
	}
	_, err = docket.Execute[*Shipment](ctx, g, &Order{}, 42)
	var ui *docket.UnknownInputError
	if !errors.As(err, &ui) || ui.Type != reflect.TypeFor[int]() {
		t.Fatalf("unknown input: %v", err)
	}
	_, err = docket.Execute[*Shipment](ctx, g, nil)
	if !errors.As(err, &ui) || !strings.Contains(err.Error(), "nil input") {
		t.Fatalf("nil input: %v", err)
	}
	_, err = docket.Execute[*Invoice](ctx, g, &Order{})
	var ut *docket.UnknownTargetError
	if !errors.As(err, &ut) {
		t.Fatalf("unknown target: %v", err)
	}
	// A typed nil is a fine input.
	s, err := docket.Execute[*Shipment](ctx, g, docket.As[*Order](&Order{ID: "x"}))
	if err != nil || s.Order != "x" {
		t.Fatalf("As: %v %v", s, err)
	}
}

type upper struct{ s string }

func (u upper) Read(p []byte) (int, error) { return copy(p, strings.ToUpper(u.s)), io.EOF }

func TestInterfaceInput(t *testing.T) {
	g := docket.NewGraph("read", docket.Input[io.Reader]())
	docket.Register1(g, func(_ context.Context, r io.Reader) (string, error) {
		b, err := io.ReadAll(r)
		return string(b), err
	}, docket.Name("read"))
	got, err := docket.Execute[string](context.Background(), g, upper{"hi"})
	if err != nil || got != "HI" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestRender(t *testing.T) {
	g := checkout()
	m := g.Mermaid()
	for _, want := range []string{"flowchart LR", `["charge"]`, `-->|"*docket_test.Charge"|`, `(["*docket_test.Order"])`} {
		if !strings.Contains(m, want) {
			t.Errorf("Mermaid lacks %q:\n%s", want, m)
		}
	}
	d := g.DOT()
	for _, want := range []string{`digraph "checkout"`, `"charge" -> "ship" [label="*docket_test.Charge"]`, `"input *docket_test.Order" [shape=ellipse]`} {
		if !strings.Contains(d, want) {
			t.Errorf("DOT lacks %q:\n%s", want, d)
		}
	}
}
