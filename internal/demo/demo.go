// Package demo holds the graphs that `docket dev` runs to show Docket off:
// a parallel fan-out, a flaky step retried with backoff, a durable sleep,
// an approval that waits for a signal (and answers an update and a query
// while it waits), a parent graph calling a child graph, and a saga that
// fails at its last step and compensates the ones before it.
//
// The steps pause for a moment here and there (a fraction of a second to a
// couple of seconds) so that a person watching the web UI sees them run.
// Those pauses honour cancellation and are skipped while a step replays, so
// queries stay fast.
//
// Graphs returns them all; Launch starts one execution of each with IDs
// numbered by launch (storefront-1, flaky-1, ...), and Examples gives start
// inputs for the UI's start form.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/docket-run/docket"
)

// Graph names.
const (
	Storefront = "storefront" // parallel fan-out and fan-in
	Flaky      = "flaky"      // retries with backoff
	Reminder   = "reminder"   // a durable sleep
	Approval   = "approval"   // a signal wait, an update and a query
	Card       = "card"       // a parent that calls the child graph Greeting
	Greeting   = "greeting"   // the child graph of Card
	Trip       = "trip"       // a saga that compensates
)

// Options tunes the demos; the zero value gives the pauses a person can
// follow. Tests shorten them.
type Options struct {
	// Pause scales the steps' visible pauses (default 1; 0.01 makes them
	// a hundred times shorter).
	Pause float64
	// ReminderDelay is how long the reminder sleeps durably (default 12s).
	ReminderDelay time.Duration
	// RetryInterval is the flaky step's first backoff (default 1s).
	RetryInterval time.Duration
}

func (o Options) withDefaults() Options {
	if o.Pause <= 0 {
		o.Pause = 1
	}
	if o.ReminderDelay <= 0 {
		o.ReminderDelay = 12 * time.Second
	}
	if o.RetryInterval <= 0 {
		o.RetryInterval = time.Second
	}
	return o
}

// Set is the demo graphs, built with one set of Options.
type Set struct {
	opts                                        Options
	storefront, flaky, reminder, approval, card *docket.Graph
	greeting, trip                              *docket.Graph
}

// New builds the demo graphs.
func New(o Options) *Set {
	s := &Set{opts: o.withDefaults()}
	s.storefront = s.newStorefront()
	s.flaky = s.newFlaky()
	s.reminder = s.newReminder()
	s.approval = s.newApproval()
	s.greeting, s.card = s.newCard()
	s.trip = s.newTrip()
	return s
}

// Graphs returns every demo graph, for docket.Config.Graphs.
func (s *Set) Graphs() []*docket.Graph {
	return []*docket.Graph{s.storefront, s.flaky, s.reminder, s.approval, s.card, s.greeting, s.trip}
}

// pause waits d (scaled by Options.Pause), or until ctx ends. It does not
// wait while the step replays.
func (s *Set) pause(ctx context.Context, d time.Duration) error {
	if docket.Replaying(ctx) {
		return nil
	}
	t := time.NewTimer(time.Duration(float64(d) * s.opts.Pause))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Examples returns sample JSON for the web UI's forms, keyed as
// server.Config.Examples wants: start inputs by graph name, and the
// approval's signal payload, update request and query name.
func Examples() map[string]json.RawMessage {
	raw := func(v any) json.RawMessage {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			panic(err)
		}
		return b
	}
	return map[string]json.RawMessage{
		Storefront: raw(map[string]any{"demo.CustomerID": "c-42"}),
		Flaky:      raw(map[string]any{"demo.QuoteRequest": QuoteRequest{SKU: "lamp-7", Failures: 2}}),
		Reminder:   raw(map[string]any{"demo.ReminderRequest": ReminderRequest{To: "ada@example.com", Text: "stand up and stretch"}}),
		Approval:   raw(map[string]any{"demo.Expense": Expense{Employee: "ada", Amount: 1250, Reason: "conference trip"}}),
		Card:       raw(map[string]any{"demo.CardRequest": CardRequest{Name: "Ada", Languages: []string{"en", "fr", "de"}}}),
		Greeting:   raw(map[string]any{"demo.Phrase": Phrase{Name: "Ada", Language: "it"}}),
		Trip:       raw(map[string]any{"demo.TripRequest": TripRequest{Traveller: "ada", Destination: "Lisbon"}}),

		Approval + "/signal/" + DecisionSignal: raw(Decision{Approved: true, By: "you", Note: "looks fine"}),
		Approval + "/update/" + CommentUpdate:  raw(Comment{By: "you", Text: "receipts attached"}),
		Approval + "/query/" + CommentsQuery:   nil,
	}
}

// Launch starts one execution of each demo graph (except the child graph,
// which the card graph calls), with IDs ending in -n, and returns their IDs.
// Starting is idempotent: a launch number already used starts nothing new.
// The trip goes to a destination with no flights, so it compensates.
func (s *Set) Launch(ctx context.Context, eng *docket.Engine, n int) ([]string, error) {
	starts := []struct {
		g     *docket.Graph
		input any
	}{
		{s.storefront, CustomerID(fmt.Sprintf("c-%d", 40+n))},
		{s.flaky, QuoteRequest{SKU: "lamp-7", Failures: 2}},
		{s.reminder, ReminderRequest{To: "ada@example.com", Text: "stand up and stretch"}},
		{s.approval, Expense{Employee: "ada", Amount: 1250, Reason: "conference trip"}},
		{s.card, CardRequest{Name: "Ada", Languages: []string{"en", "fr", "de"}}},
		{s.trip, TripRequest{Traveller: "ada", Destination: "Atlantis"}},
	}
	var ids []string
	for _, st := range starts {
		b, err := json.Marshal(st.input)
		if err != nil {
			return ids, err
		}
		info := st.g.Info()
		id, err := eng.StartEncoded(ctx, docket.StartRequest{
			Graph:  info.Name,
			ID:     fmt.Sprintf("%s-%d", info.Name, n),
			Inputs: map[string]json.RawMessage{info.Inputs[0]: b},
		})
		if err != nil {
			return ids, fmt.Errorf("demo %s: %w", info.Name, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// NextLaunch returns the first launch number whose executions do not exist
// yet, or 0 when executions of an earlier launch are still running (so a
// dev server started again does not pile up demos).
func NextLaunch(ctx context.Context, eng *docket.Engine) (int, error) {
	running, _, err := eng.List(ctx, docket.ListOptions{Status: "running", Limit: 1})
	if err != nil {
		return 0, err
	}
	if len(running) > 0 {
		return 0, nil
	}
	for n := 1; ; n++ {
		_, err := eng.Describe(ctx, fmt.Sprintf("%s-%d", Approval, n))
		var nf *docket.NotFoundError
		if errors.As(err, &nf) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
}

// ---- storefront: five calls fanned out, combined into one page ----

// CustomerID is the storefront's input.
type CustomerID string

// What the storefront's fetches return.
type (
	// Profile is the customer's account.
	Profile struct {
		Name string `json:"name"`
		Tier string `json:"tier"`
	}
	// Orders are the customer's recent orders.
	Orders []string
	// Recommendations are products picked for the customer.
	Recommendations []string
	// Offers are discounts open to the customer.
	Offers []string
	// Cart is what the customer's cart holds.
	Cart struct {
		Items int `json:"items"`
	}
	// Page is the storefront's result: everything on one page.
	Page struct {
		Title    string   `json:"title"`
		Sections []string `json:"sections"`
	}
)

func (s *Set) newStorefront() *docket.Graph {
	g := docket.NewGraph(Storefront, docket.Input[CustomerID]())
	docket.Register1(g, func(ctx context.Context, id CustomerID) (Profile, error) {
		return Profile{Name: "Customer " + string(id), Tier: "gold"}, s.pause(ctx, 900*time.Millisecond)
	}, docket.Name("profile"))
	docket.Register1(g, func(ctx context.Context, id CustomerID) (Orders, error) {
		return Orders{"o-" + string(id) + "-1", "o-" + string(id) + "-2"}, s.pause(ctx, 1600*time.Millisecond)
	}, docket.Name("orders"))
	docket.Register1(g, func(ctx context.Context, id CustomerID) (Recommendations, error) {
		return Recommendations{"desk lamp", "notebook"}, s.pause(ctx, 2400*time.Millisecond)
	}, docket.Name("recommendations"))
	docket.Register1(g, func(ctx context.Context, id CustomerID) (Offers, error) {
		return Offers{"10% off lamps"}, s.pause(ctx, 1200*time.Millisecond)
	}, docket.Name("offers"))
	docket.Register1(g, func(ctx context.Context, id CustomerID) (Cart, error) {
		return Cart{Items: 3}, s.pause(ctx, 600*time.Millisecond)
	}, docket.Name("cart"))
	docket.Register5(g, func(ctx context.Context, p Profile, o Orders, r Recommendations, f Offers, c Cart) (Page, error) {
		return Page{
			Title: "Welcome back, " + p.Name,
			Sections: []string{
				fmt.Sprintf("%d recent orders", len(o)),
				"picked for you: " + strings.Join(r, ", "),
				"offers: " + strings.Join(f, ", "),
				fmt.Sprintf("%d items in your cart", c.Items),
			},
		}, s.pause(ctx, 400*time.Millisecond)
	}, docket.Name("render-page"))
	return g
}

// ---- flaky: a step that fails twice, retried with backoff ----

// QuoteRequest asks the flaky pricing service for a price. Failures is how
// many attempts fail before one succeeds.
type QuoteRequest struct {
	SKU      string `json:"sku"`
	Failures int    `json:"failures"`
}

// Quote is the price of a SKU.
type Quote struct {
	SKU   string `json:"sku"`
	Cents int    `json:"cents"`
}

// Confirmation is the flaky graph's result.
type Confirmation struct {
	Message string `json:"message"`
}

// ErrUnavailable is the flaky service's failure.
var ErrUnavailable = errors.New("pricing service unavailable")

func (s *Set) newFlaky() *docket.Graph {
	g := docket.NewGraph(Flaky, docket.Input[QuoteRequest]())
	docket.Register1(g, func(ctx context.Context, r QuoteRequest) (Quote, error) {
		if err := s.pause(ctx, 500*time.Millisecond); err != nil {
			return Quote{}, err
		}
		if a := docket.Attempt(ctx); a <= r.Failures {
			return Quote{}, fmt.Errorf("attempt %d: %w", a, ErrUnavailable)
		}
		return Quote{SKU: r.SKU, Cents: 4999}, nil
	}, docket.Name("quote"), docket.Retry(docket.RetryPolicy{
		MaxAttempts:        5,
		InitialInterval:    s.opts.RetryInterval,
		BackoffCoefficient: 2,
		MaxInterval:        8 * s.opts.RetryInterval,
	}))
	docket.Register1(g, func(ctx context.Context, q Quote) (Confirmation, error) {
		return Confirmation{Message: fmt.Sprintf("%s costs $%d.%02d", q.SKU, q.Cents/100, q.Cents%100)}, s.pause(ctx, 300*time.Millisecond)
	}, docket.Name("confirm"))
	return g
}

// ---- reminder: a durable sleep ----

// ReminderRequest is the reminder's input.
type ReminderRequest struct {
	To   string `json:"to"`
	Text string `json:"text"`
}

// What the reminder's steps make.
type (
	// Scheduled says when the reminder is due.
	Scheduled struct {
		To   string    `json:"to"`
		Text string    `json:"text"`
		Due  time.Time `json:"due"`
	}
	// Due is the reminder after its sleep.
	Due struct {
		Scheduled
		WokeAt time.Time `json:"woke_at"`
	}
	// Sent is the reminder's result.
	Sent struct {
		MessageID string `json:"message_id"`
	}
)

func (s *Set) newReminder() *docket.Graph {
	g := docket.NewGraph(Reminder, docket.Input[ReminderRequest]())
	docket.Register1(g, func(ctx context.Context, r ReminderRequest) (Scheduled, error) {
		return Scheduled{To: r.To, Text: r.Text, Due: docket.Now(ctx).Add(s.opts.ReminderDelay).UTC()}, s.pause(ctx, 300*time.Millisecond)
	}, docket.Name("schedule"))
	docket.Register1(g, func(ctx context.Context, sc Scheduled) (Due, error) {
		// The step is suspended while it sleeps: no goroutine, nothing in
		// memory, and a restart does not lose the timer.
		if err := docket.SleepUntil(ctx, sc.Due); err != nil {
			return Due{}, err
		}
		return Due{Scheduled: sc, WokeAt: docket.Now(ctx).UTC()}, nil
	}, docket.Name("sleep"))
	docket.Register1(g, func(ctx context.Context, d Due) (Sent, error) {
		id, err := docket.Run(ctx, "send-email", func(ctx context.Context) (string, error) {
			return "msg-" + docket.UUID(ctx)[:8], s.pause(ctx, 300*time.Millisecond)
		})
		return Sent{MessageID: id}, err
	}, docket.Name("send"))
	return g
}

// ---- approval: waits for a decision signal; answers updates and queries ----

// Expense is the approval's input.
type Expense struct {
	Employee string `json:"employee"`
	Amount   int    `json:"amount"`
	Reason   string `json:"reason"`
}

// Submitted is an expense filed for review.
type Submitted struct {
	Expense
	Ticket string `json:"ticket"`
}

// Decision is the payload of the "decision" signal.
type Decision struct {
	Approved bool   `json:"approved"`
	By       string `json:"by"`
	Note     string `json:"note,omitempty"`
}

// Comment is the request of the "comment" update.
type Comment struct {
	By   string `json:"by"`
	Text string `json:"text"`
}

// Review is what the review step makes: the decision and the comments made
// while it waited.
type Review struct {
	Decision Decision  `json:"decision"`
	Comments []Comment `json:"comments"`
}

// Outcome is the approval's result.
type Outcome struct {
	Status string `json:"status"`
	Paid   int    `json:"paid"`
}

// Names of the approval's signal, update and query.
const (
	DecisionSignal = "decision"
	CommentUpdate  = "comment"
	CommentsQuery  = "comments"
)

func (s *Set) newApproval() *docket.Graph {
	g := docket.NewGraph(Approval, docket.Input[Expense]())
	docket.Register1(g, func(ctx context.Context, e Expense) (Submitted, error) {
		if e.Amount <= 0 {
			return Submitted{}, docket.NonRetryable(fmt.Errorf("amount must be positive, got %d", e.Amount))
		}
		return Submitted{Expense: e, Ticket: "exp-" + docket.UUID(ctx)[:6]}, s.pause(ctx, 500*time.Millisecond)
	}, docket.Name("submit"))
	docket.Register1(g, func(ctx context.Context, sub Submitted) (Review, error) {
		var comments []Comment
		docket.HandleQuery(ctx, CommentsQuery, func() ([]Comment, error) { return comments, nil })
		docket.HandleUpdate(ctx, CommentUpdate, func(_ context.Context, c Comment) (int, error) {
			comments = append(comments, c)
			return len(comments), nil
		}, func(c Comment) error {
			if strings.TrimSpace(c.Text) == "" {
				return errors.New("a comment needs text")
			}
			return nil
		})
		// Suspended, holding nothing, until someone decides (or a day passes).
		d, err := docket.ReceiveTimeout[Decision](ctx, DecisionSignal, 24*time.Hour)
		if errors.Is(err, docket.ErrReceiveTimeout) {
			return Review{Decision: Decision{By: "nobody", Note: "no decision within a day"}, Comments: comments}, nil
		}
		return Review{Decision: d, Comments: comments}, err
	}, docket.Name("review"))
	docket.Register2(g, func(ctx context.Context, e Expense, r Review) (Outcome, error) {
		if !r.Decision.Approved {
			return Outcome{Status: "rejected by " + r.Decision.By}, nil
		}
		return Outcome{Status: "approved by " + r.Decision.By, Paid: e.Amount}, s.pause(ctx, 500*time.Millisecond)
	}, docket.Name("settle"))
	return g
}

// ---- card: a parent graph calling a child graph per language ----

// CardRequest is the card's input.
type CardRequest struct {
	Name      string   `json:"name"`
	Languages []string `json:"languages"`
}

// Phrase is the child graph's input; Greeting text its output.
type (
	Phrase struct {
		Name     string `json:"name"`
		Language string `json:"language"`
	}
	// GreetingText is the child graph's result.
	GreetingText string
	// CardText is the card's result.
	CardText string
)

var hello = map[string]string{"en": "Hello", "fr": "Bonjour", "de": "Hallo", "it": "Ciao", "es": "Hola", "pt": "Olá"}

func (s *Set) newCard() (child, parent *docket.Graph) {
	child = docket.NewGraph(Greeting, docket.Input[Phrase]())
	docket.Register1(child, func(ctx context.Context, p Phrase) (GreetingText, error) {
		h, ok := hello[p.Language]
		if !ok {
			return "", docket.NonRetryable(fmt.Errorf("no greeting in %q", p.Language))
		}
		return GreetingText(h + ", " + p.Name + "!"), s.pause(ctx, 900*time.Millisecond)
	}, docket.Name("translate"))

	parent = docket.NewGraph(Card, docket.Input[CardRequest]())
	docket.Register1(parent, func(ctx context.Context, r CardRequest) (CardText, error) {
		var lines []string
		for _, lang := range r.Languages {
			// Each call is a child execution: <parent>/compose/<lang>.
			g, err := docket.Call[GreetingText](ctx, child, lang, Phrase{Name: r.Name, Language: lang})
			if err != nil {
				return "", err
			}
			lines = append(lines, string(g))
		}
		return CardText(strings.Join(lines, " / ")), nil
	}, docket.Name("compose"))
	return child, parent
}

// ---- trip: a saga whose last booking fails ----

// TripRequest is the trip's input.
type TripRequest struct {
	Traveller   string `json:"traveller"`
	Destination string `json:"destination"`
}

// The trip's bookings.
type (
	// CarBooking is a booked car.
	CarBooking struct {
		Ref string `json:"ref"`
	}
	// HotelBooking is a booked hotel room.
	HotelBooking struct {
		Ref string `json:"ref"`
	}
	// FlightBooking is a booked flight: the trip's result.
	FlightBooking struct {
		Ref string `json:"ref"`
	}
)

// ErrNoFlights is the airline's answer for a destination it does not serve.
var ErrNoFlights = errors.New("no flights to that destination")

func (s *Set) newTrip() *docket.Graph {
	g := docket.NewGraph(Trip, docket.Input[TripRequest](),
		docket.Retry(docket.RetryPolicy{MaxAttempts: 3, InitialInterval: s.opts.RetryInterval, NonRetryable: []error{ErrNoFlights}}))
	book := func(ctx context.Context, kind string, t TripRequest) (string, error) {
		if err := s.pause(ctx, 800*time.Millisecond); err != nil {
			return "", err
		}
		return docket.Run(ctx, "book-"+kind, func(context.Context) (string, error) {
			if kind == "flight" && t.Destination == "Atlantis" {
				return "", fmt.Errorf("%w: %s", ErrNoFlights, t.Destination)
			}
			return kind + "-" + strings.ToLower(t.Traveller) + "-" + strings.ToLower(t.Destination), nil
		})
	}
	undo := func(ctx context.Context) error { return s.pause(ctx, 700*time.Millisecond) }
	docket.Register1(g, func(ctx context.Context, t TripRequest) (CarBooking, error) {
		ref, err := book(ctx, "car", t)
		return CarBooking{ref}, err
	}, docket.Name("book-car"), docket.Compensate(func(ctx context.Context, _ CarBooking) error { return undo(ctx) }))
	docket.Register2(g, func(ctx context.Context, t TripRequest, _ CarBooking) (HotelBooking, error) {
		ref, err := book(ctx, "hotel", t)
		return HotelBooking{ref}, err
	}, docket.Name("book-hotel"), docket.Compensate(func(ctx context.Context, _ HotelBooking) error { return undo(ctx) }))
	docket.Register2(g, func(ctx context.Context, t TripRequest, _ HotelBooking) (FlightBooking, error) {
		ref, err := book(ctx, "flight", t)
		return FlightBooking{ref}, err
	}, docket.Name("book-flight"), docket.Compensate(func(ctx context.Context, _ FlightBooking) error { return undo(ctx) }))
	return g
}
