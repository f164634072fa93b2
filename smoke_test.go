package docket_test

import (
	"context"
	"testing"

	"github.com/docket-run/docket"
)

type Order struct{ ID string }
type Charge struct{ Amount int }
type Reservation struct{ Item string }
type Shipment struct {
	Order  string
	Amount int
	Item   string
}

func TestSmoke(t *testing.T) {
	g := docket.NewGraph("checkout", docket.Input[*Order]())
	docket.Register(g, func(ctx context.Context, o *Order) (*Charge, error) { return &Charge{Amount: 42}, nil }, docket.Name("charge"))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Reservation, error) { return &Reservation{Item: "book"}, nil }, docket.Name("reserve"))
	docket.Register2(g, func(ctx context.Context, c *Charge, r *Reservation) (*Shipment, error) {
		return &Shipment{Amount: c.Amount, Item: r.Item}, nil
	}, docket.Name("ship"))
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := docket.Execute[*Shipment](context.Background(), g, &Order{ID: "o1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", s)
	p, err := docket.PlanFor[*Shipment](g, &Order{})
	t.Log(p, err)
	t.Log(g.Mermaid())
	t.Log(g.DOT())
}
