package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func quote(t *testing.T, svc *PricingService, logs io.Writer, sku string) (*Quote, error) {
	t.Helper()
	g := newGraph(svc, slog.New(slog.NewTextHandler(logs, nil)))
	return docket.Execute[*Quote](context.Background(), g, &Request{SKU: sku})
}

func TestRecoversAfterTwoFailures(t *testing.T) {
	svc := &PricingService{FailFirst: 2, Prices: map[string]int{"tea": 450}}
	var logs strings.Builder
	start := time.Now()
	q, err := quote(t, svc, &logs, "tea")
	if err != nil {
		t.Fatal(err)
	}
	if q.SKU != "tea" || q.Cents != 450 {
		t.Errorf("quote = %+v, want tea at 450 cents", q)
	}
	if got := svc.Calls(); got != 3 {
		t.Errorf("service called %d times, want 3", got)
	}
	// The waits between attempts are 1ms and 2ms (no jitter).
	if elapsed := time.Since(start); elapsed < 3*time.Millisecond {
		t.Errorf("Execute took %v, want at least the 3ms of backoff", elapsed)
	}
	// Every attempt logged once, with its attempt number.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("logged %d lines, want 3:\n%s", len(lines), logs.String())
	}
	for i, line := range lines {
		for _, want := range []string{"graph=quotes", "step=PricingService.Quote", fmt.Sprintf("attempt=%d", i+1), "sku=tea"} {
			if !strings.Contains(line, want) {
				t.Errorf("log line %d = %q, want it to contain %q", i+1, line, want)
			}
		}
	}
}

func TestGivesUpAfterMaxAttempts(t *testing.T) {
	svc := &PricingService{FailFirst: 100, Prices: map[string]int{"tea": 450}}
	_, err := quote(t, svc, io.Discard, "tea")
	var se *docket.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *docket.StepError", err)
	}
	if se.Attempts != policy.MaxAttempts || svc.Calls() != policy.MaxAttempts {
		t.Errorf("%d attempts, %d calls; want %d of each", se.Attempts, svc.Calls(), policy.MaxAttempts)
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("err = %v, want it to wrap ErrUnavailable", err)
	}
}

func TestNonRetryableFailsAtOnce(t *testing.T) {
	svc := &PricingService{Prices: map[string]int{"tea": 450}}
	_, err := quote(t, svc, io.Discard, "coffee")
	var se *docket.StepError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want a *docket.StepError", err)
	}
	if se.Step != "PricingService.Quote" || se.Attempts != 1 || svc.Calls() != 1 {
		t.Errorf("step %q: %d attempts, %d calls; want PricingService.Quote, 1 attempt, 1 call", se.Step, se.Attempts, svc.Calls())
	}
	if !errors.Is(err, ErrUnknownSKU) {
		t.Errorf("err = %v, want it to wrap ErrUnknownSKU", err)
	}
}

func TestRun(t *testing.T) {
	var out strings.Builder
	if err := run(context.Background(), &out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"tea costs 450 cents; the service was called 3 times\n",
		`step PricingService.Quote gave up after 1 attempt(s): quote "coffee": unknown SKU` + "\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output:\n%s\nwant it to contain %q", out.String(), want)
		}
	}
}
