// Sleepfordays sends a subscriber an email every thirty days: a loop that
// sleeps for a month, sends an email and sleeps again. It is Temporal's
// "sleep for days" sample, on docket.
//
// The loop is one durable step. docket.Sleep suspends it: the step's
// goroutine ends, and while it sleeps nothing of it stays in memory — only
// rows in the store and a timer task that wakes it. When the timer fires (in
// this process, or in another one opened on the same database after a crash
// or a deploy), the step runs again from the top and the durable calls it
// already made return what the journal recorded: sleeps that are over
// return at once, and each docket.Run that sent an email returns the
// recorded send time without sending it again. So the code reads like a
// plain loop, and each email goes out once, a month after the one before.
// (Once as far as the journal goes: a process that dies after sending an
// email but before recording it sends that email again when the step
// resumes. Run is at-least-once.)
//
// Because the step re-executes, its code between durable calls must do the
// same thing every time: side effects go inside docket.Run, and the time
// comes from docket.Now, which reads the engine's clock.
//
// main runs the loop for real, on a SQLite file in a temporary directory,
// with a short period so that it ends in seconds:
//
//	go run ./examples/sleepfordays -period 2s -months 3
//
// The test runs the thirty-day version on docktest's virtual clock, which
// skips the time in which nothing happens: a year of emails takes
// milliseconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/docket-run/docket"
)

// Month is the time between two emails in production.
const Month = 30 * 24 * time.Hour

// Subscription is the input of an execution.
type Subscription struct {
	Email  string
	Months int           // how many emails to send
	Period time.Duration // the wait before each email: Month, except in a demo
}

// Sent is the result: when each email went out.
type Sent struct{ At []time.Time }

// Email is a message the mailer sent.
type Email struct {
	To, Subject string
	At          time.Time
}

// Mailer stands in for an email service: it prints each email and keeps a
// list of them.
type Mailer struct {
	w    io.Writer
	mu   sync.Mutex
	sent []Email
}

// Send sends e.
func (m *Mailer) Send(e Email) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sent = append(m.sent, e)
	fmt.Fprintf(m.w, "%s  to %s: %s\n", e.At.Format("2006-01-02 15:04:05.000"), e.To, e.Subject)
}

// Sent returns the emails sent so far.
func (m *Mailer) Sent() []Email {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Email(nil), m.sent...)
}

// monthly is the step: Months times, sleep for a period, then send an email.
func (m *Mailer) monthly(ctx context.Context, s *Subscription) (*Sent, error) {
	sent := &Sent{}
	for i := 1; i <= s.Months; i++ {
		// The first time through, this suspends the step until the period
		// is over. When the step re-executes later, a sleep that is over
		// returns at once.
		if err := docket.Sleep(ctx, s.Period); err != nil {
			return nil, err
		}
		// The side effect, journaled: when the step re-executes, Run
		// returns the recorded send time and does not call the function.
		at, err := docket.Run(ctx, "send-email", func(ctx context.Context) (time.Time, error) {
			e := Email{To: s.Email, Subject: fmt.Sprintf("Your report for month %d", i), At: docket.Now(ctx)}
			m.Send(e)
			return e.At, nil
		})
		if err != nil {
			return nil, err
		}
		sent.At = append(sent.At, at)
	}
	return sent, nil
}

// newGraph builds the graph. A durable step needs a name: it identifies the
// step in the store across restarts and deploys.
func newGraph(m *Mailer) *docket.Graph {
	g := docket.NewGraph("newsletter", docket.Input[*Subscription]())
	docket.Register1(g, m.monthly, docket.Name("monthly-email"))
	return g
}

// run sends sub's emails on an engine whose executions live in the store at
// storeURL, and returns when they have all been sent.
func run(ctx context.Context, w io.Writer, storeURL string, sub *Subscription) (*Sent, error) {
	m := &Mailer{w: w}
	g := newGraph(m)
	eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}})
	if err != nil {
		return nil, err
	}
	defer eng.Close()

	// The execution ID is an idempotency key: starting it again, say after
	// a restart, returns the execution that is already under way.
	h, err := docket.Start[*Sent](ctx, eng, g, "newsletter/"+sub.Email, sub)
	if err != nil {
		return nil, err
	}
	return h.Result(ctx)
}

func main() {
	period := flag.Duration("period", 2*time.Second, "time between emails (720h is thirty days)")
	months := flag.Int("months", 3, "number of emails to send")
	flag.Parse()

	dir, err := os.MkdirTemp("", "sleepfordays")
	if err != nil {
		log.Fatal(err)
	}
	sub := &Subscription{Email: "ann@example.com", Months: *months, Period: *period}
	start := time.Now()
	sent, err := run(context.Background(), os.Stdout, "sqlite:"+filepath.Join(dir, "docket.db"), sub)
	os.RemoveAll(dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("sent %d emails in %v\n", len(sent.At), time.Since(start).Round(time.Millisecond))
}
