// Retry shows a step that is tried again after a failure, and an error that
// no retry can fix, which ends the step at once.
//
// The quote step calls a pricing service that fails its first two calls with
// ErrUnavailable, as a service that is restarting would. The step's
// RetryPolicy allows four attempts, waiting 1ms before the second and 2ms
// before the third (InitialInterval × BackoffCoefficient^(n-1), capped at
// MaxInterval), so the third attempt succeeds.
//
// ErrUnknownSKU is in the policy's NonRetryable list: asking about an
// unknown SKU again will not help, so the step fails after one attempt.
// (A step can also mark an error itself with docket.NonRetryable(err).)
// Either way Execute returns a *docket.StepError that says how many
// attempts were made and wraps the last error.
//
// docket.Logger(ctx) gives the step a logger that carries the graph,
// execution, step and attempt number.
//
//	go run ./examples/retry
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/docket-run/docket"
)

var (
	ErrUnavailable = errors.New("pricing service unavailable")
	ErrUnknownSKU  = errors.New("unknown SKU")
)

// Request asks for the price of one SKU.
type Request struct{ SKU string }

// Quote is the answer.
type Quote struct {
	SKU   string
	Cents int
}

// policy is the quote step's retry policy.
var policy = docket.RetryPolicy{
	MaxAttempts:        4, // the first attempt and up to three retries
	InitialInterval:    time.Millisecond,
	BackoffCoefficient: 2,
	MaxInterval:        10 * time.Millisecond,
	NonRetryable:       []error{ErrUnknownSKU},
}

// PricingService is a flaky service: its first FailFirst calls fail.
type PricingService struct {
	FailFirst int
	Prices    map[string]int // cents, by SKU
	calls     atomic.Int32
}

// Calls reports how many times the service was called.
func (s *PricingService) Calls() int { return int(s.calls.Load()) }

// Quote is the step.
func (s *PricingService) Quote(ctx context.Context, r *Request) (*Quote, error) {
	n := int(s.calls.Add(1))
	docket.Logger(ctx).Info("calling pricing service", "sku", r.SKU)
	if n <= s.FailFirst {
		return nil, ErrUnavailable
	}
	cents, ok := s.Prices[r.SKU]
	if !ok {
		return nil, fmt.Errorf("quote %q: %w", r.SKU, ErrUnknownSKU)
	}
	return &Quote{SKU: r.SKU, Cents: cents}, nil
}

func newGraph(svc *PricingService, logger *slog.Logger) *docket.Graph {
	g := docket.NewGraph("quotes", docket.Input[*Request](), docket.WithLogger(logger))
	docket.Register1(g, svc.Quote, docket.Retry(policy))
	return g
}

// run asks for a known SKU while the service is flaky, then for an unknown one.
func run(ctx context.Context, w io.Writer) error {
	svc := &PricingService{FailFirst: 2, Prices: map[string]int{"tea": 450}}
	g := newGraph(svc, slog.New(slog.NewTextHandler(w, nil)))

	q, err := docket.Execute[*Quote](ctx, g, &Request{SKU: "tea"})
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%s costs %d cents; the service was called %d times\n", q.SKU, q.Cents, svc.Calls())

	_, err = docket.Execute[*Quote](ctx, g, &Request{SKU: "coffee"})
	var se *docket.StepError
	if !errors.As(err, &se) {
		return fmt.Errorf("want a step error, got %v", err)
	}
	fmt.Fprintf(w, "step %s gave up after %d attempt(s): %v\n", se.Step, se.Attempts, se.Err)
	return nil
}

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}
