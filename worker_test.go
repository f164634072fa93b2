package docket_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

func TestWorkerConcurrencyLimit(t *testing.T) {
	var live gate
	g := docket.NewGraph("limited", docket.Input[int]())
	docket.Register1(g, func(ctx context.Context, n int) (string, error) {
		defer live.enter()()
		time.Sleep(5 * time.Millisecond)
		return fmt.Sprint(n), nil
	}, docket.Name("work"))
	eng, err := docket.Open(context.Background(), docket.Config{Store: "memory:", Graphs: []*docket.Graph{g}, Workers: 3,
		PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	ctx := context.Background()
	var hs []*docket.Handle[string]
	for i := range 30 {
		h, err := docket.Start[string](ctx, eng, g, fmt.Sprintf("w-%d", i), i)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	for i, h := range hs {
		if v, err := h.Result(ctx); err != nil || v != fmt.Sprint(i) {
			t.Fatalf("%d: %v %v", i, v, err)
		}
	}
	if p := live.peak.Load(); p > 3 || p < 2 {
		t.Fatalf("peak concurrency %d, want at most 3 (and some overlap)", p)
	}
}

func TestGracefulShutdownFinishesOrHandsBack(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "shutdown.db")
	var runs atomic.Int32
	release := make(chan struct{})
	mk := func() *docket.Graph {
		g := docket.NewGraph("shut", docket.Input[int]())
		docket.Register1(g, func(ctx context.Context, n int) (string, error) {
			runs.Add(1)
			if n == 1 { // finishes during the grace period
				<-release
				return "quick", nil
			}
			<-ctx.Done() // outlives the grace period: cancelled, handed back
			return "", ctx.Err()
		}, docket.Name("work"))
		return g
	}
	ctx := context.Background()
	g1 := mk()
	eng1, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g1}, ShutdownTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := docket.Start[string](ctx, eng1, g1, "quick", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := docket.Start[string](ctx, eng1, g1, "slow", 2); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return runs.Load() == 2 })
	time.AfterFunc(50*time.Millisecond, func() { close(release) })
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}

	// A new engine on the same file: "quick" finished before shutdown;
	// "slow" was handed back, not failed, and runs again here.
	g2 := docket.NewGraph("shut", docket.Input[int]())
	docket.Register1(g2, func(ctx context.Context, n int) (string, error) { return "rerun", nil }, docket.Name("work"))
	eng2, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g2}, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	if v, err := docket.HandleFor[string](eng2, "quick").Result(ctx); err != nil || v != "quick" {
		t.Fatalf("quick: %v %v", v, err)
	}
	if v, err := docket.HandleFor[string](eng2, "slow").Result(ctx); err != nil || v != "rerun" {
		t.Fatalf("slow: %v %v", v, err)
	}
	d, _ := eng2.Describe(ctx, "slow")
	if d.Steps[0].Attempts != 1 {
		t.Fatalf("a handed-back attempt must not count as failed: %+v", d.Steps[0])
	}
}

// A Run or Go call that shutdown cuts short is not recorded: the step's
// next attempt makes it again, rather than replaying the cancellation as
// the call's outcome.
func TestShutdownDoesNotRecordInterruptedCalls(t *testing.T) {
	db := "sqlite:" + filepath.Join(t.TempDir(), "interrupted.db")
	var started atomic.Int32
	mk := func(block bool) *docket.Graph {
		g := docket.NewGraph("cut", docket.Input[int]())
		docket.Register1(g, func(ctx context.Context, n int) (string, error) {
			work := func(ctx context.Context) (string, error) {
				started.Add(1)
				if block {
					<-ctx.Done()
					return "", ctx.Err()
				}
				return "done", nil
			}
			if n == 1 {
				return docket.Run(ctx, "call", work)
			}
			return docket.Go(ctx, "call", work).Get(ctx)
		}, docket.Name("work"), docket.Retry(docket.RetryPolicy{MaxAttempts: 1}))
		return g
	}
	ctx := context.Background()
	g1 := mk(true)
	eng1, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g1}, ShutdownTimeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"run", "go"} {
		if _, err := docket.Start[string](ctx, eng1, g1, id, map[string]int{"run": 1, "go": 2}[id]); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, func() bool { return started.Load() == 2 })
	if err := eng1.Close(); err != nil {
		t.Fatal(err)
	}
	g2 := mk(false)
	eng2, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g2}, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng2.Close()
	for _, id := range []string{"run", "go"} {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v, err := docket.HandleFor[string](eng2, id).Result(rctx)
		cancel()
		if err != nil || v != "done" {
			t.Errorf("%s: %q, %v; want the call made again after the shutdown", id, v, err)
		}
	}
}

// lateClaims holds the first claim after arm until the claiming worker is
// told to stop (its context ends) or release is closed, then claims for
// real; if the context has ended by then, the answer is lost as it would
// be to a cancellation: the leases are committed and the worker never
// hears of them. That is what a claim looks like when the server commits
// it just as Close begins.
type lateClaims struct {
	store.Store
	armed            atomic.Bool
	entered, release chan struct{}
}

func (s *lateClaims) arm() {
	s.entered, s.release = make(chan struct{}), make(chan struct{})
	s.armed.Store(true)
}

func (s *lateClaims) late(ctx context.Context, claim func(context.Context) error) error {
	if !s.armed.CompareAndSwap(true, false) {
		return claim(ctx)
	}
	close(s.entered)
	select {
	case <-ctx.Done():
	case <-s.release:
	}
	if err := claim(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	return ctx.Err()
}

func (s *lateClaims) Claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) (ts []store.Task, err error) {
	err = s.late(ctx, func(ctx context.Context) error {
		ts, err = s.Store.Claim(ctx, owner, queue, now, lease, limit)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ts, nil
}

// lateNextClaims is lateClaims for a store that claims with ClaimNext.
type lateNextClaims struct{ *lateClaims }

func (s lateNextClaims) ClaimNext(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) (c store.Claimed, err error) {
	err = s.late(ctx, func(ctx context.Context) error {
		c, err = s.Store.(store.NextClaimer).ClaimNext(ctx, owner, queue, now, lease, limit)
		return err
	})
	if err != nil {
		return store.Claimed{}, err
	}
	return c, nil
}

// A worker told to stop while a claim is in flight hands back what the
// claim took, so that another worker runs it at once rather than after
// the lease.
func TestStopDuringClaimHandsTasksBack(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			url := "sqlite:" + filepath.Join(t.TempDir(), "stop.db")
			if backend == "postgres" {
				url = pgtest.URL(t)
			}
			inner, err := docket.OpenStore(ctx, url)
			if err != nil {
				t.Fatal(err)
			}
			defer inner.Close()
			// The step waits for unblock, so that if the claim returns
			// before the stop after all, its run is cut short by the stop
			// and handed back too: either way the task must end up free.
			unblock := make(chan struct{})
			g := docket.NewGraph("stop-claim", docket.Input[int]())
			docket.Register1(g, func(ctx context.Context, n int) (string, error) {
				select {
				case <-unblock:
					return fmt.Sprint(n), nil
				case <-ctx.Done():
					return "", ctx.Err()
				}
			}, docket.Name("work"))
			open := func(st store.Store, workers int) *docket.Engine {
				eng, err := docket.Open(ctx, docket.Config{Backend: st, Graphs: []*docket.Graph{g}, Workers: workers,
					Lease: time.Hour, PollInterval: time.Hour, ShutdownTimeout: 50 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				return eng
			}
			client := open(inner, -1)
			defer client.Close()
			h, err := docket.Start[string](ctx, client, g, "claimed-at-stop", 7)
			if err != nil {
				t.Fatal(err)
			}
			late := &lateClaims{Store: inner}
			late.arm()
			var st store.Store = late
			if _, ok := inner.(store.NextClaimer); ok {
				st = lateNextClaims{late}
			}
			w := open(st, 1) // its first claim takes the task, late
			<-late.entered
			closed := make(chan error)
			go func() { closed <- w.Close() }()
			// The claim goes on once Close has most likely begun (one that
			// the stop cuts short goes on as soon as it begins).
			time.Sleep(100 * time.Millisecond)
			close(late.release)
			if err := <-closed; err != nil {
				t.Fatal(err)
			}
			tasks, err := inner.Tasks(ctx, "claimed-at-stop")
			if err != nil || len(tasks) != 1 || tasks[0].Owner != "" {
				t.Fatalf("after the stop, the task must be free: %+v %v", tasks, err)
			}
			close(unblock)
			w2 := open(inner, 1)
			defer w2.Close()
			if v, err := h.Result(ctx); err != nil || v != "7" {
				t.Fatalf("%q %v", v, err)
			}
		})
	}
}
