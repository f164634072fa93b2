package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	want := "inventory is ready after 7 polls\n" +
		"child deploy-1/wait-until-ready/poll: completed in run 3\n" +
		"polls the service answered: [1 2 3 4 5 6 7]\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

const childID = "p/wait-until-ready/poll"

// On a real SQLite file and the real clock: the parent gets the result of
// the child's last run, each poll ran once, the polls were an interval
// apart, and the child's stored history is only its last run's.
func TestPollsOnSQLite(t *testing.T) {
	const interval = 15 * time.Millisecond
	svc := &Service{ReadyAt: 8}
	parent, child := NewGraphs(svc, interval, 3)
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "p.db"), Graphs: []*docket.Graph{parent, child}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	start := time.Now()
	h, err := docket.Start[Report](ctx, eng, parent, "p", Job{Service: "db"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Service != "db" || r.Ready.Polls != 8 || r.Ready.Waited < 7*interval || time.Since(start) < 7*interval {
		t.Fatalf("%+v after %s", r, time.Since(start))
	}
	if got := svc.Polls(); !slices.Equal(got, []int{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("the service answered polls %v, want each of 1..8 once", got)
	}
	d, err := eng.Describe(ctx, childID)
	if err != nil {
		t.Fatal(err)
	}
	// Polls 1-3, 4-6, 7-8: two continue-as-new.
	if d.Run != 3 || d.Status != "completed" || d.Result != (Ready{Polls: 8, Waited: r.Ready.Waited}) {
		t.Fatalf("child: run %d, %s, %+v", d.Run, d.Status, d.Result)
	}
	j, err := eng.Store().Journal(ctx, childID, "poll")
	if err != nil {
		t.Fatal(err)
	}
	var calls []string
	for _, e := range j {
		calls = append(calls, e.Kind+" "+e.Name)
	}
	if want := []string{"sleep ", "run poll-7", "now ", "sleep ", "run poll-8", "now "}; !slices.Equal(calls, want) {
		t.Fatalf("the last run's journal is %q, want %q", calls, want)
	}
	pd, err := eng.Describe(ctx, "p")
	if err != nil || pd.Run != 1 || pd.Status != "completed" {
		t.Fatalf("parent: %+v %v", pd, err)
	}
}

// On virtual time, a day of hourly polls passes in moments, and the waits
// add up exactly.
func TestHourlyPollsOnVirtualTime(t *testing.T) {
	svc := &Service{ReadyAt: 25}
	parent, child := NewGraphs(svc, time.Hour, 10)
	env := docktest.New(t, docktest.Options{Store: "sqlite:" + filepath.Join(t.TempDir(), "v.db")}, parent, child)
	ctx := context.Background()
	h, err := docket.Start[Report](ctx, env.Engine, parent, "p", Job{Service: "slow"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ready != (Ready{Polls: 25, Waited: 24 * time.Hour}) {
		t.Fatalf("%+v", r)
	}
	want := make([]int, 25)
	for i := range want {
		want[i] = i + 1
	}
	if got := svc.Polls(); !slices.Equal(got, want) {
		t.Fatalf("polls %v", got)
	}
	if d, err := env.Describe(ctx, childID); err != nil || d.Run != 3 {
		t.Fatalf("child %+v %v", d, err)
	}
}

// Cancelling the parent cancels the child, whichever run it is in, and the
// polling stops.
//
// The lease is short because of a race in the engine as it stands: a step
// task cancelled while it is still loading its records gives up without
// releasing its lease, so the cancellation reaches it only when the lease
// runs out (30s by default). The child, always about to start its next
// poll, hits that now and then.
func TestCancellingTheParentStopsThePolls(t *testing.T) {
	svc := &Service{ReadyAt: 1 << 30}
	parent, child := NewGraphs(svc, 5*time.Millisecond, 2)
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "c.db"),
		Graphs: []*docket.Graph{parent, child}, Lease: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[Report](ctx, eng, parent, "p", Job{Service: "never"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the child's third run", func() bool {
		d, err := eng.Describe(ctx, childID)
		return err == nil && d.Run >= 3
	})
	if err := eng.Cancel(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Result(ctx); !errors.Is(err, docket.ErrCancelled) {
		t.Fatalf("parent: %v", err)
	}
	waitFor(t, "the child to be cancelled", func() bool {
		d, err := eng.Describe(ctx, childID)
		return err == nil && d.Status == "cancelled"
	})
	n := len(svc.Polls())
	time.Sleep(50 * time.Millisecond) // ten intervals
	if got := svc.Polls(); len(got) != n {
		t.Fatalf("polls went on after the cancellation: %d then %d", n, len(got))
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 10s for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
