package demo

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, s *Set) *docket.Engine {
	t.Helper()
	eng, err := docket.Open(context.Background(), docket.Config{
		Store:  "sqlite:" + filepath.Join(t.TempDir(), "demo.db"),
		Graphs: s.Graphs(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	return eng
}

func wait(t *testing.T, eng *docket.Engine, id string) *docket.Description {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		d, err := eng.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch d.Status {
		case "completed", "failed", "cancelled":
			return d
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not finish", id)
	return nil
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Every demo does what the dev server says it does: the fan-out, the
// retried step and the sleep complete, the approval waits for its signal and
// answers updates and queries meanwhile, the card calls three children, and
// the trip fails at the flight and compensates the car and the hotel.
func TestLaunch(t *testing.T) {
	s := New(Options{Pause: 0.01, ReminderDelay: 200 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	eng := open(t, s)
	ctx := context.Background()

	n, err := NextLaunch(ctx, eng)
	if err != nil || n != 1 {
		t.Fatalf("NextLaunch = %d, %v; want 1", n, err)
	}
	ids, err := s.Launch(ctx, eng, n)
	if err != nil {
		t.Fatal(err)
	}
	if want := "storefront-1 flaky-1 reminder-1 approval-1 card-1 trip-1"; strings.Join(ids, " ") != want {
		t.Fatalf("ids %q, want %q", ids, want)
	}
	if n, err := NextLaunch(ctx, eng); err != nil || n != 0 {
		t.Fatalf("NextLaunch while demos run = %d, %v; want 0", n, err)
	}

	if d := wait(t, eng, "storefront-1"); d.Status != "completed" || len(d.Steps) != 6 {
		t.Errorf("storefront: %s with %d steps", d.Status, len(d.Steps))
	}
	d := wait(t, eng, "flaky-1")
	if d.Status != "completed" || d.Steps[0].Name != "quote" || d.Steps[0].Attempts != 3 {
		t.Errorf("flaky: %s, quote took %d attempts; want completed after 3", d.Status, d.Steps[0].Attempts)
	}
	if d := wait(t, eng, "reminder-1"); d.Status != "completed" {
		t.Errorf("reminder: %s %s", d.Status, d.Error)
	}
	if d := wait(t, eng, "card-1"); d.Status != "completed" || d.Result != CardText("Hello, Ada! / Bonjour, Ada! / Hallo, Ada!") {
		t.Errorf("card: %s %v %s", d.Status, d.Result, d.Error)
	}
	kids, _, err := eng.List(ctx, docket.ListOptions{Graph: Greeting})
	if err != nil || len(kids) != 3 {
		t.Errorf("children: %d, %v; want 3", len(kids), err)
	}
	d = wait(t, eng, "trip-1")
	comp := map[string]string{}
	for _, st := range d.Steps {
		comp[st.Name] = st.Status + "/" + st.Compensation
	}
	if d.Status != "failed" || comp["book-car"] != "done/compensated" || comp["book-hotel"] != "done/compensated" || comp["book-flight"] != "failed/" {
		t.Errorf("trip: %s, steps %v", d.Status, comp)
	}

	// The approval waits for its decision, answering updates and queries.
	waitFor(t, func() bool {
		d, err := eng.Describe(ctx, "approval-1")
		return err == nil && len(d.Waiting) == 1 && d.Waiting[0] == "review: signal decision until "+d.Steps[1].WakeAt.UTC().Format(time.RFC3339)
	})
	if _, err := eng.UpdateEncoded(ctx, "approval-1", CommentUpdate, json.RawMessage(`{"by":"bob","text":""}`)); !errors.As(err, new(*docket.UpdateRejectedError)) {
		t.Errorf("empty comment: %v, want rejected", err)
	}
	resp, err := eng.UpdateEncoded(ctx, "approval-1", CommentUpdate, json.RawMessage(`{"by":"bob","text":"receipts attached"}`))
	if err != nil || string(resp) != "1" {
		t.Errorf("comment: %s, %v", resp, err)
	}
	q, err := eng.QueryEncoded(ctx, "approval-1", CommentsQuery)
	if err != nil || string(q) != `[{"by":"bob","text":"receipts attached"}]` {
		t.Errorf("comments query: %s, %v", q, err)
	}
	if err := eng.SignalEncoded(ctx, "approval-1", DecisionSignal, json.RawMessage(`{"approved":true,"by":"carol"}`)); err != nil {
		t.Fatal(err)
	}
	d = wait(t, eng, "approval-1")
	if o, ok := d.Result.(Outcome); d.Status != "completed" || !ok || o.Paid != 1250 || o.Status != "approved by carol" {
		t.Errorf("approval: %s %#v", d.Status, d.Result)
	}
	if n, err := NextLaunch(ctx, eng); err != nil || n != 2 {
		t.Fatalf("NextLaunch after = %d, %v; want 2", n, err)
	}
}

// Examples are valid start requests for their graphs.
func TestExamples(t *testing.T) {
	s := New(Options{Pause: 0.01, ReminderDelay: 10 * time.Millisecond, RetryInterval: time.Millisecond})
	eng := open(t, s)
	ctx := context.Background()
	for name, raw := range Examples() {
		if strings.Contains(name, "/") {
			continue // a form example, not start inputs
		}
		var inputs map[string]json.RawMessage
		if err := json.Unmarshal(raw, &inputs); err != nil {
			t.Fatal(err)
		}
		id, err := eng.StartEncoded(ctx, docket.StartRequest{Graph: name, ID: "ex-" + name, Inputs: inputs})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if name == Approval {
			waitFor(t, func() bool { d, _ := eng.Describe(ctx, id); return len(d.Waiting) == 1 })
			if err := eng.Cancel(ctx, id); err != nil {
				t.Fatal(err)
			}
		}
		if d := wait(t, eng, id); (d.Status != "completed") != (name == Approval) {
			t.Errorf("%s: %s %s", name, d.Status, d.Error)
		}
	}
}
