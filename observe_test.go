package docket_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

// recorder is an Observer that keeps a log of the events it sees.
type recorder struct {
	docket.BaseObserver
	mu      sync.Mutex
	events  []string
	onRetry func(docket.StepEvent)
}

func (r *recorder) add(s string) { r.mu.Lock(); r.events = append(r.events, s); r.mu.Unlock() }

func (r *recorder) ExecutionStarted(_ context.Context, e docket.ExecutionEvent) {
	r.add("exec start " + e.Graph)
}
func (r *recorder) ExecutionFinished(_ context.Context, e docket.ExecutionEvent) {
	r.add("exec end " + errString(e.Err))
}
func (r *recorder) StepStarted(_ context.Context, e docket.StepEvent) {
	r.add("start " + e.Step + " #" + itoa(e.Attempt))
}
func (r *recorder) StepFinished(_ context.Context, e docket.StepEvent) {
	r.add("end " + e.Step + " #" + itoa(e.Attempt) + " " + errString(e.Err))
}
func (r *recorder) RetryScheduled(_ context.Context, e docket.StepEvent) {
	r.add("retry " + e.Step + " after #" + itoa(e.Attempt))
	if r.onRetry != nil {
		r.onRetry(e)
	}
}
func (r *recorder) CacheChecked(_ context.Context, e docket.StepEvent) {
	if e.CacheHit {
		r.add("cache hit " + e.Step)
	} else {
		r.add("cache miss " + e.Step)
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return "err"
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestObserverSeesAttemptsAndRetries(t *testing.T) {
	rec := &recorder{}
	var n atomic.Int32
	g := docket.NewGraph("obs", docket.Input[*Order](), docket.WithObserver(rec))
	docket.Register1(g, func(context.Context, *Order) (*Charge, error) {
		if n.Add(1) == 1 {
			return nil, errors.New("flaky")
		}
		return &Charge{}, nil
	}, docket.Name("charge"), docket.Retry(docket.RetryPolicy{MaxAttempts: 2, InitialInterval: time.Microsecond}))
	if _, err := docket.Execute[*Charge](context.Background(), g, &Order{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"exec start obs", "start charge #1", "end charge #1 err", "retry charge after #1",
		"start charge #2", "end charge #2 ok", "exec end ok"}
	if !equal(rec.events, want) {
		t.Fatalf("events:\n got %q\nwant %q", rec.events, want)
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLoggerCarriesStepAttributes(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	l := slog.New(slog.NewJSONHandler(&lockedWriter{w: &buf, mu: &mu}, nil))
	g := docket.NewGraph("logs", docket.Input[*Order](), docket.WithLogger(l))
	docket.Register1(g, func(ctx context.Context, o *Order) (*Charge, error) {
		docket.Logger(ctx).Info("charging", "order", o.ID)
		return &Charge{}, nil
	}, docket.Name("charge"))
	if _, err := docket.Execute[*Charge](context.Background(), g, &Order{ID: "o-5"}, docket.ExecutionID("exec-1")); err != nil {
		t.Fatal(err)
	}
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	for k, v := range map[string]any{"graph": "logs", "execution": "exec-1", "step": "charge", "attempt": 1.0, "order": "o-5", "msg": "charging"} {
		if rec[k] != v {
			t.Errorf("%s = %v, want %v (record %v)", k, rec[k], v, rec)
		}
	}
	if docket.Logger(context.Background()) != slog.Default() {
		t.Error("outside a step Logger should return slog.Default()")
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
