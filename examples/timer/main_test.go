package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
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
	want := "order fast-1: processed before the timer, which was cancelled\n" +
		"order slow-1: processed after a notification that it was taking long\n" +
		"notification: order slow-1: processing is taking long\n"
	if out.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", out.String(), want)
	}
}

// On a real SQLite file and the real clock: the fast order is done before
// the timer and the timer is cancelled (it never fires, even later); the
// slow one is notified once the timer's time has passed and still waits
// for its processing.
func TestFastAndSlowOnSQLite(t *testing.T) {
	const patience = 300 * time.Millisecond
	n := &Notifier{}
	g := NewGraph(Processor{}, n, patience)
	ctx := context.Background()
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + filepath.Join(t.TempDir(), "t.db"), Graphs: []*docket.Graph{g}})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	fast, err := docket.Start[Receipt](ctx, eng, g, "fast", Order{ID: "fast", Work: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	slow, err := docket.Start[Receipt](ctx, eng, g, "slow", Order{ID: "slow", Work: 2 * patience})
	if err != nil {
		t.Fatal(err)
	}

	f, err := fast.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if took := f.Finished.Sub(f.Started); !f.TimerCancelled || !f.NotifiedAt.IsZero() || f.Status != "processed" || took < 20*time.Millisecond || took >= patience {
		t.Fatalf("fast order: %+v (took %s)", f, took)
	}
	// The cancelled timer is journaled as cancelled, not as fired.
	j, err := eng.Store().Journal(ctx, "fast", "process-order")
	if err != nil {
		t.Fatal(err)
	}
	kinds := []string{}
	for _, e := range j {
		kinds = append(kinds, e.Kind)
		if e.Kind == "timer" && !strings.Contains(e.Error, "cancelled") {
			t.Fatalf("timer entry %+v, want cancelled", e)
		}
	}
	if got := strings.Join(kinds, ","); got != "now,go,timer,select,now" {
		t.Fatalf("fast journal %s", got)
	}

	s, err := slow.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	notified, took := s.NotifiedAt.Sub(s.Started), s.Finished.Sub(s.Started)
	if s.TimerCancelled || s.Status != "processed" || notified < patience || notified >= 2*patience || took < 2*patience {
		t.Fatalf("slow order: %+v (notified after %s, took %s)", s, notified, took)
	}
	j, err = eng.Store().Journal(ctx, "slow", "process-order")
	if err != nil {
		t.Fatal(err)
	}
	kinds = kinds[:0]
	for _, e := range j {
		kinds = append(kinds, e.Kind)
	}
	if got := strings.Join(kinds, ","); got != "now,go,timer,select,run,select,now" {
		t.Fatalf("slow journal %s", got)
	}
	// Well after the fast order's timer would have fired: one message only.
	time.Sleep(patience)
	if got := n.Sent(); len(got) != 1 || got[0] != "order slow: processing is taking long" {
		t.Fatalf("notifications %q", got)
	}
	for _, id := range []string{"fast", "slow"} {
		d, err := eng.Describe(ctx, id)
		if err != nil || d.Status != "completed" || d.Steps[0].Attempts != 1 {
			t.Fatalf("%s: %+v %v", id, d, err)
		}
	}
}

// gate is a Processing service that finishes an order when told to.
type gate struct {
	release chan struct{}
	calls   atomic.Int32
}

func (g *gate) Process(ctx context.Context, _ Order) (string, error) {
	g.calls.Add(1)
	select {
	case <-g.release:
		return "processed", nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// On virtual time the notification goes out exactly when the timer is due,
// not a moment before, and the step then waits for the processing however
// long it takes.
func TestNotifiedExactlyAtTheDeadline(t *testing.T) {
	const patience = time.Hour
	n, p := &Notifier{}, &gate{release: make(chan struct{})}
	g := NewGraph(p, n, patience)
	env := docktest.New(t, docktest.Options{ManualTime: true, Store: "sqlite:" + filepath.Join(t.TempDir(), "v.db")}, g)
	ctx := context.Background()
	start := env.Clock.Now()
	h, err := docket.Start[Receipt](ctx, env.Engine, g, "o", Order{ID: "o"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the processing to start", func() bool { return p.calls.Load() == 1 })
	env.Clock.Advance(patience - time.Second)
	time.Sleep(50 * time.Millisecond)
	if got := n.Sent(); len(got) != 0 {
		t.Fatalf("notified early: %q", got)
	}
	env.Clock.Advance(time.Second)
	waitFor(t, "the notification", func() bool { return len(n.Sent()) == 1 })
	env.Clock.Advance(24 * time.Hour) // the processing is still running
	close(p.release)
	r, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !r.NotifiedAt.Equal(start.Add(patience)) || !r.Finished.Equal(start.Add(25*time.Hour)) || r.TimerCancelled {
		t.Fatalf("%+v", r)
	}
	if c := p.calls.Load(); c != 1 {
		t.Fatalf("processed %d times", c)
	}
}

// The process dies after the notification went out and while the order is
// still being processed. The next process resumes the step from its
// journal: it does not notify again, keeps the original notification time,
// and waits for the processing, which runs again (Go work is
// at-least-once, like Run).
func TestRestartAfterTheNotification(t *testing.T) {
	const patience = 100 * time.Millisecond
	ctx := context.Background()
	path := "sqlite:" + filepath.Join(t.TempDir(), "r.db")
	n := &Notifier{}

	first := &gate{release: make(chan struct{})} // never finishes
	g1 := NewGraph(first, n, patience)
	eng1, err := docket.Open(ctx, docket.Config{Store: path, Graphs: []*docket.Graph{g1}, ShutdownTimeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docket.Start[Receipt](ctx, eng1, g1, "o", Order{ID: "o"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the notification", func() bool { return len(n.Sent()) == 1 })
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}

	second := &gate{release: make(chan struct{})}
	close(second.release) // finishes at once
	g2 := NewGraph(second, n, patience)
	eng2, err := docket.Open(ctx, docket.Config{Store: path, Graphs: []*docket.Graph{g2}, Lease: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := docket.HandleFor[Receipt](eng2, "o").Result(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != "processed" || r.NotifiedAt.IsZero() || r.NotifiedAt.Sub(r.Started) < patience {
		t.Fatalf("%+v", r)
	}
	if got := n.Sent(); len(got) != 1 {
		t.Fatalf("notified %d times: %q", len(got), got)
	}
	if c := second.calls.Load(); c != 1 {
		t.Fatalf("the second process ran the processing %d times", c)
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

// The same graph runs ephemerally with Execute: the timer is an in-memory
// timer, and nothing is stored.
func TestEphemeral(t *testing.T) {
	n := &Notifier{}
	g := NewGraph(Processor{}, n, 100*time.Millisecond)
	ctx := context.Background()
	fast, err := docket.Execute[Receipt](ctx, g, Order{ID: "f", Work: 10 * time.Millisecond})
	if err != nil || !fast.TimerCancelled || !fast.NotifiedAt.IsZero() {
		t.Fatalf("fast: %+v %v", fast, err)
	}
	slow, err := docket.Execute[Receipt](ctx, g, Order{ID: "s", Work: 300 * time.Millisecond})
	if err != nil || slow.TimerCancelled || slow.NotifiedAt.Sub(slow.Started) < 100*time.Millisecond || slow.Finished.Sub(slow.Started) < 300*time.Millisecond {
		t.Fatalf("slow: %+v %v", slow, err)
	}
	if got := n.Sent(); len(got) != 1 || got[0] != "order s: processing is taking long" {
		t.Fatalf("notifications %q", got)
	}
}
