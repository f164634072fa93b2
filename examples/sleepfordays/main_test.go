package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/docktest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// sqliteStore returns the URL of a fresh SQLite database.
func sqliteStore(t *testing.T) string {
	return "sqlite:" + filepath.Join(t.TempDir(), "docket.db")
}

// checkSent checks that the mailer sent exactly the emails in sent, one a
// month after the other, starting a month after start.
func checkSent(t *testing.T, m *Mailer, sent *Sent, start time.Time, months int) {
	t.Helper()
	emails := m.Sent()
	if len(emails) != months || len(sent.At) != months {
		t.Fatalf("the mailer sent %d emails and the result lists %d; want %d of each", len(emails), len(sent.At), months)
	}
	for i, e := range emails {
		want := start.Add(time.Duration(i+1) * Month)
		if !e.At.Equal(want) || !sent.At[i].Equal(want) {
			t.Errorf("email %d sent at %v (result says %v), want exactly %v", i+1, e.At, sent.At[i], want)
		}
	}
}

// A year of monthly emails on virtual time: every send is exactly thirty
// virtual days after the one before, each email is sent once although the
// step re-executes after every sleep, and the year passes in moments.
func TestAYearOfEmailsOnVirtualTime(t *testing.T) {
	m := &Mailer{w: io.Discard}
	g := newGraph(m)
	env := docktest.New(t, docktest.Options{Store: sqliteStore(t)}, g)
	ctx := context.Background()

	start := env.Clock.Now()
	began := time.Now()
	h, err := docket.Start[*Sent](ctx, env.Engine, g, "newsletter/ann", &Subscription{Email: "ann@example.com", Months: 12, Period: Month})
	if err != nil {
		t.Fatal(err)
	}
	sent, err := h.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkSent(t, m, sent, start, 12)
	// 360 virtual days. Real time is a fraction of a second; the bound is
	// loose so that a loaded machine does not fail the test.
	if took := time.Since(began); took > 30*time.Second {
		t.Errorf("a year of virtual time took %v of real time", took)
	}
	d, err := env.Describe(ctx, "newsletter/ann")
	if err != nil {
		t.Fatal(err)
	}
	// One attempt: suspending and resuming is not retrying.
	if s := d.Steps[0]; d.Status != "completed" || s.Status != "done" || s.Attempts != 1 {
		t.Errorf("execution %s, step %s after %d attempts; want completed, done, 1", d.Status, s.Status, s.Attempts)
	}
}

// pausingClock is docktest's virtual clock, which skips the time in which
// the engine has nothing to do, but never past until: an engine on it does
// what is due by then, and then waits.
type pausingClock struct {
	*docktest.Clock
	until time.Time
}

func (c pausingClock) Idle(next time.Time) bool {
	return !next.After(c.until) && c.Clock.Idle(next)
}

// The process stops while the step sleeps, and another engine opened on the
// same database carries on: the email already sent is not sent again, and
// the rest go out on schedule.
func TestSurvivesARestartMidSleep(t *testing.T) {
	m := &Mailer{w: io.Discard}
	g := newGraph(m)
	db := sqliteStore(t)
	ctx := context.Background()
	const id = "newsletter/bob"

	// The first engine lives for one month of virtual time.
	start := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := pausingClock{docktest.NewClock(start), start.Add(Month)}
	eng, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g}, Clock: clock, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docket.Start[*Sent](ctx, eng, g, id, &Subscription{Email: "bob@example.com", Months: 3, Period: Month}); err != nil {
		eng.Close()
		t.Fatal(err)
	}
	// Once it has sent the first email and sleeps until the second, it stops.
	waitForSleep(t, eng, id, start.Add(2*Month))
	if err := eng.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(m.Sent()); n != 1 {
		t.Fatalf("%d emails sent in the first month, want 1", n)
	}

	// A new engine on the same database, with time going on from where it
	// was, finishes the execution.
	env := docktest.New(t, docktest.Options{Store: db, Start: clock.Now()}, g)
	sent, err := docket.HandleFor[*Sent](env.Engine, id).Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkSent(t, m, sent, start, 3)
}

// waitForSleep waits until the execution's step sleeps until wake.
func waitForSleep(t *testing.T, eng *docket.Engine, id string, wake time.Time) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := eng.Describe(context.Background(), id)
		if err == nil && len(d.Waiting) == 1 && d.Steps[0].WakeAt.Equal(wake) {
			return
		}
		if time.Now().After(deadline) {
			eng.Close()
			t.Fatalf("the step is not sleeping until %v: %+v, %v", wake, d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// run on the real clock, with a short period: the emails go out in order,
// at least a period apart.
func TestRun(t *testing.T) {
	const period = 100 * time.Millisecond
	var out strings.Builder
	sent, err := run(context.Background(), &out, sqliteStore(t), &Subscription{Email: "cy@example.com", Months: 3, Period: period})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent.At) != 3 {
		t.Fatalf("sent %v, want 3 emails", sent.At)
	}
	for i := 1; i < len(sent.At); i++ {
		if gap := sent.At[i].Sub(sent.At[i-1]); gap < period {
			t.Errorf("email %d went out %v after email %d, want at least %v", i+1, gap, i, period)
		}
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("output:\n%s\nwant 3 lines, one per email", out.String())
	}
	for i, line := range lines {
		if want := fmt.Sprintf("to cy@example.com: Your report for month %d", i+1); !strings.HasSuffix(line, want) {
			t.Errorf("line %d = %q, want it to end with %q", i+1, line, want)
		}
	}
}
