package docket_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
)

// The untyped API drives the same executions as the typed one, with JSON.
func TestEncodedAPI(t *testing.T) {
	approve, basket := approvalGraph(), basketGraph()
	env := docktest.New(t, docktest.Options{ManualTime: true}, approve, basket)
	ctx := context.Background()

	infos := env.Graphs()
	if len(infos) != 2 || infos[0].Name != "approve" || infos[1].Name != "basket" {
		t.Fatalf("graphs: %+v", infos)
	}
	ai := infos[0]
	if strings.Join(ai.Inputs, ",") != "*docket_test.Order" || strings.Join(ai.Results, ",") != "*docket_test.Shipment" ||
		ai.Signals["approve"] != "*docket_test.Approval" || len(ai.Steps) != 2 || !strings.Contains(ai.Mermaid, "ship") {
		t.Fatalf("approve info: %+v", ai)
	}

	// Bad requests are typed errors and record nothing.
	var ie *docket.InputError
	_, err := env.StartEncoded(ctx, docket.StartRequest{Graph: "approve", ID: "x", Inputs: map[string]json.RawMessage{"*docket_test.Order": json.RawMessage(`{"ID": 5}`)}})
	if !errors.As(err, &ie) {
		t.Fatalf("bad input: %v", err)
	}
	_, err = env.StartEncoded(ctx, docket.StartRequest{Graph: "approve", ID: "x", Inputs: map[string]json.RawMessage{"int": json.RawMessage(`5`)}})
	if !errors.As(err, &ie) {
		t.Fatalf("unknown input: %v", err)
	}
	var ug *docket.UnknownGraphError
	if _, err := env.StartEncoded(ctx, docket.StartRequest{Graph: "nope"}); !errors.As(err, &ug) {
		t.Fatalf("unknown graph: %v", err)
	}
	var me *docket.MissingInputError
	if _, err := env.StartEncoded(ctx, docket.StartRequest{Graph: "approve", ID: "x"}); !errors.As(err, &me) {
		t.Fatalf("missing input: %v", err)
	}
	if _, err := env.Describe(ctx, "x"); err == nil {
		t.Fatal("a failed start recorded an execution")
	}

	id, err := env.StartEncoded(ctx, docket.StartRequest{Graph: "approve", ID: "a-1",
		Inputs: map[string]json.RawMessage{"*docket_test.Order": json.RawMessage(`{"ID": "a-1"}`)}})
	if err != nil || id != "a-1" {
		t.Fatal(id, err)
	}
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, id); return d != nil && len(d.Waiting) == 1 })
	if err := env.SignalEncoded(ctx, id, "approve", json.RawMessage(`{"By": 7}`)); !errors.As(err, &ie) {
		t.Fatalf("badly typed signal: %v", err)
	}
	if err := env.SignalEncoded(ctx, id, "approve", json.RawMessage(`{"By": "ann"}`)); err != nil {
		t.Fatal(err)
	}
	s, err := docket.HandleFor[*Shipment](env.Engine, id).Result(ctx)
	if err != nil || s.Item != "approved by ann" {
		t.Fatalf("%v %v", s, err)
	}
	hist, err := env.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, h := range hist {
		kinds = append(kinds, h.Kind+":"+h.Step+h.Name)
	}
	got := strings.Join(kinds, " ")
	for _, want := range []string{"started:approve", "signal:signal:approveapprove", "step-done:ship", "finished:completed"} {
		if !strings.Contains(got, want) {
			t.Fatalf("history %q lacks %q", got, want)
		}
	}
	if got[:len("started")] != "started" || !strings.HasSuffix(got, "finished:completed") {
		t.Fatalf("history out of order: %s", got)
	}

	// Updates, queries and an undeclared signal on the basket graph.
	id, err = env.StartEncoded(ctx, docket.StartRequest{Graph: "basket", Inputs: map[string]json.RawMessage{"*docket_test.Order": json.RawMessage(`{}`)}})
	if err != nil || id == "" {
		t.Fatal(id, err)
	}
	waitUntil(t, func() bool { d, _ := env.Describe(ctx, id); return d != nil && len(d.Waiting) == 1 })
	resp, err := env.UpdateEncoded(ctx, id, "add", json.RawMessage(`"tea"`))
	if err != nil || string(resp) != "1" {
		t.Fatalf("update: %s %v", resp, err)
	}
	var rej *docket.UpdateRejectedError
	if _, err := env.UpdateEncoded(ctx, id, "add", json.RawMessage(`""`)); !errors.As(err, &rej) {
		t.Fatalf("rejected update: %v", err)
	}
	if _, err := env.UpdateEncoded(ctx, id, "add", json.RawMessage(`{`)); !errors.As(err, &ie) {
		t.Fatalf("invalid JSON: %v", err)
	}
	items, err := env.QueryEncoded(ctx, id, "items")
	if err != nil || string(items) != `["tea"]` {
		t.Fatalf("query: %s %v", items, err)
	}
	if err := env.SignalEncoded(ctx, id, "checkout", json.RawMessage(`true`)); err != nil {
		t.Fatal(err)
	}
	cart, err := docket.HandleFor[Cart](env.Engine, id).Result(ctx)
	if err != nil || len(cart) != 1 || cart[0] != "tea" {
		t.Fatalf("%v %v", cart, err)
	}
	var nf *docket.NotFoundError
	if err := env.SignalEncoded(ctx, "nope", "checkout", nil); !errors.As(err, &nf) {
		t.Fatalf("unknown execution: %v", err)
	}
}
