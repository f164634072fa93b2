package docket_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

// The crash test runs a mixed workload on a SQLite file with the workers in
// a child process (this test binary, re-executed) that it SIGKILLs at random
// moments and restarts, many times. It then checks what Docket promises:
//
//   - every execution ends, with the right result (or, for the saga, the
//     right failure and every compensation done);
//   - a step's recorded output never changes once recorded;
//   - a step never runs again after its checkpoint was recorded, and a Run
//     side effect never runs again after its journal entry was recorded.
//     Before the checkpoint a step may run more than once: steps and Run
//     calls are at-least-once, and exactly-once only as far as their
//     recorded results go.
//
// Every step and Run call appends "cycle exec step what value" to a ledger
// file; the cycle is the worker incarnation, so the ledger shows which
// incarnation ran what.

const crashWorkerEnv = "DOCKET_CRASH_WORKER"

type (
	CrashSeed  int
	CrashA     int
	CrashB     int
	CrashSum   int
	CrashItems []int
	CrashTrip  struct{ Booked []string }
	CrashDone  string
	// CrashSignalled is the result of the inbox graph.
	CrashSignalled int
	// CrashCount is the result of the counter graph: the sum of the
	// updates it applied, and how often its timer case was chosen.
	CrashCount struct{ Total, Fired int }
)

var ledgerMu sync.Mutex

func ledger(ctx context.Context, what string, v any) {
	path := os.Getenv("DOCKET_CRASH_LEDGER")
	if path == "" {
		return
	}
	ledgerMu.Lock()
	defer ledgerMu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s %v\n", os.Getenv("DOCKET_CRASH_CYCLE"), what, v)
}

// crashGraphs is the mixed workload: a chain with a durable sleep and Run
// calls, a fan-out, a step that fails twice before it succeeds, and a saga
// that fails and compensates.
func crashGraphs() []*docket.Graph {
	chain := docket.NewGraph("crash-chain", docket.Input[CrashSeed]())
	docket.Register1(chain, func(ctx context.Context, s CrashSeed) (CrashA, error) {
		v, err := docket.Run(ctx, "effect-a", func(ctx context.Context) (int, error) {
			ledger(ctx, "run "+execID(ctx)+" a", int(s)*2)
			return int(s) * 2, nil
		})
		if err != nil {
			return 0, err
		}
		if err := docket.Sleep(ctx, time.Duration(50+rand.IntN(150))*time.Millisecond); err != nil {
			return 0, err
		}
		ledger(ctx, "step "+execID(ctx)+" a", v+1)
		return CrashA(v + 1), nil
	}, docket.Name("a"))
	docket.Register1(chain, func(ctx context.Context, a CrashA) (CrashB, error) {
		busy(ctx)
		if docket.Attempt(ctx) < 3 {
			return 0, errors.New("flaky")
		}
		ledger(ctx, "step "+execID(ctx)+" b", int(a)*10)
		return CrashB(int(a) * 10), nil
	}, docket.Name("b"), docket.Retry(docket.RetryPolicy{MaxAttempts: 5, InitialInterval: 20 * time.Millisecond}))
	docket.Register1(chain, func(ctx context.Context, s CrashSeed) (CrashItems, error) {
		items := make(CrashItems, 20)
		for i := range items {
			items[i] = int(s) + i
		}
		ledger(ctx, "step "+execID(ctx)+" items", len(items))
		return items, nil
	}, docket.Name("items"))
	docket.Register1(chain, func(ctx context.Context, items CrashItems) ([]int, error) { return items, nil }, docket.Name("spread"))
	docket.Map(chain, func(ctx context.Context, n int) (int64, error) { busy(ctx); return int64(n * n), nil },
		docket.Name("square"), docket.Concurrency(4))
	docket.Register3(chain, func(ctx context.Context, b CrashB, a CrashA, sq []int64) (CrashSum, error) {
		sum := int(a) + int(b)
		for _, v := range sq {
			sum += int(v)
		}
		ledger(ctx, "step "+execID(ctx)+" sum", sum)
		return CrashSum(sum), nil
	}, docket.Name("sum"))

	saga := docket.NewGraph("crash-saga", docket.Input[CrashSeed]())
	book := func(what string) func(ctx context.Context, t CrashTrip) (CrashTrip, error) {
		return func(ctx context.Context, t CrashTrip) (CrashTrip, error) {
			_, err := docket.Run(ctx, "book-"+what, func(ctx context.Context) (bool, error) {
				ledger(ctx, "run "+execID(ctx)+" book-"+what, true)
				return true, nil
			})
			busy(ctx)
			return CrashTrip{Booked: append(append([]string(nil), t.Booked...), what)}, err
		}
	}
	type (
		Car   struct{ CrashTrip }
		Hotel struct{ CrashTrip }
	)
	docket.Register1(saga, func(ctx context.Context, s CrashSeed) (Car, error) {
		t, err := book("car")(ctx, CrashTrip{})
		return Car{t}, err
	}, docket.Name("car"), docket.Compensate(func(ctx context.Context, c Car) error {
		ledger(ctx, "comp "+execID(ctx)+" car", true)
		return nil
	}))
	docket.Register1(saga, func(ctx context.Context, c Car) (Hotel, error) {
		t, err := book("hotel")(ctx, c.CrashTrip)
		return Hotel{t}, err
	}, docket.Name("hotel"), docket.Compensate(func(ctx context.Context, h Hotel) error {
		ledger(ctx, "comp "+execID(ctx)+" hotel", true)
		return nil
	}))
	docket.Register1(saga, func(ctx context.Context, h Hotel) (CrashDone, error) {
		busy(ctx)
		return "", docket.NonRetryable(errors.New("no flights"))
	}, docket.Name("flight"))
	// A step that takes three signals sent while workers die, then calls
	// the chain graph as a child.
	inbox := docket.NewGraph("crash-inbox", docket.Input[CrashSeed]())
	docket.Register1(inbox, func(ctx context.Context, s CrashSeed) (CrashSignalled, error) {
		total := 0
		for range 3 {
			n, err := docket.Receive[int](ctx, "n")
			if err != nil {
				return 0, err
			}
			total += n
		}
		sum, err := docket.Call[CrashSum](ctx, chain, "child", s)
		return CrashSignalled(total + int(sum)), err
	}, docket.Name("collect"))
	// A step that takes "add" updates while it waits in a select on a
	// "done" signal and a durable timer.
	counter := docket.NewGraph("crash-counter", docket.Input[CrashSeed]())
	docket.Register1(counter, func(ctx context.Context, s CrashSeed) (CrashCount, error) {
		var c CrashCount
		docket.HandleUpdate(ctx, "add", func(_ context.Context, n int) (int, error) {
			c.Total += n
			return c.Total, nil
		}, func(n int) error {
			if n <= 0 {
				return errors.New("not positive")
			}
			return nil
		})
		done := false
		sel := docket.NewSelector()
		docket.AddSignal(sel, "done", func(bool) { done = true })
		docket.AddFuture(sel, docket.NewTimer(ctx, crashCounterTimer), func(time.Time, error) { c.Fired++ })
		for !done {
			if err := sel.Select(ctx); err != nil {
				return c, err
			}
		}
		return c, nil
		// It runs through every cycle, answering updates, so every kill
		// can land in it: on a slow machine more than the crash allowance
		// of them in a row before it ever suspends. Those are expected here.
	}, docket.Name("count"), docket.Retry(docket.RetryPolicy{MaxAttempts: -1}))
	return []*docket.Graph{chain, saga, inbox, counter}
}

// crashChainResult is the result of the chain graph for seed i.
func crashChainResult(i int) int {
	want := (2*i + 1) * 11 // a + b
	for k := range 20 {
		want += (i + k) * (i + k)
	}
	return want
}

// busy takes a little time, so kills land inside steps too.
func busy(ctx context.Context) {
	select {
	case <-time.After(time.Duration(rand.IntN(20)) * time.Millisecond):
	case <-ctx.Done():
	}
}

func execID(ctx context.Context) string { return docket.ExecutionIDOf(ctx) }

// crashConfig is the engine configuration of the crash and cluster tests;
// db is a SQLite file or a PostgreSQL URL.
func crashConfig(db string, workers int) docket.Config {
	url := "sqlite:" + db
	if strings.Contains(db, "://") {
		url = db
	}
	return docket.Config{Store: url, Graphs: crashGraphs(), Workers: workers,
		Lease: 700 * time.Millisecond, PollInterval: 50 * time.Millisecond}
}

// crashWorker is the child process: a worker that runs until it is killed.
func crashWorker(db string) {
	eng, err := docket.Open(context.Background(), crashConfig(db, 4))
	if err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		os.Exit(2)
	}
	defer eng.Close()
	select {}
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("the crash test takes about half a minute")
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "crash.db")
	ledgerPath := filepath.Join(dir, "ledger.txt")
	ctx := context.Background()
	cfg := crashConfig(db, -1) // a client only: the workers are the child processes
	client, err := docket.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	w := crashWorkload{chains: 24, sagas: 8, inboxes: 6, counters: 4, updatesEach: 12}
	w.start(t, client, cfg.Graphs)
	// Updates to the counters are sent all through the kills.
	stopUpdates := make(chan struct{})
	answers := w.sendUpdates(t, client, 5*time.Second, stopUpdates)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// doneAt[exec/step] is the first cycle at whose end the step was seen
	// recorded, with its output then.
	type seen struct {
		cycle  int
		output string
	}
	doneAt := map[string]seen{}
	runAt := map[string]int{} // journaled Run calls, by exec/step/name
	snapshot := func(cycle int) {
		for _, g := range []struct {
			prefix string
			n      int
		}{{"chain", w.chains}, {"saga", w.sagas}} {
			for i := range g.n {
				id := fmt.Sprintf("%s-%d", g.prefix, i)
				steps, err := client.Store().Steps(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range steps {
					key := id + "/" + s.Name
					if s.Status == store.StepDone {
						out := string(s.Output.Data)
						if prev, ok := doneAt[key]; ok && prev.output != out {
							t.Errorf("%s: recorded output changed from %s to %s", key, prev.output, out)
						} else if !ok {
							doneAt[key] = seen{cycle, out}
						}
					}
					j, err := client.Store().Journal(ctx, id, s.Name)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range j {
						if e.Kind == "run" && e.Error == "" {
							if _, ok := runAt[key+"/"+e.Name]; !ok {
								runAt[key+"/"+e.Name] = cycle
							}
						}
					}
				}
			}
		}
	}

	start := func(cycle int) *exec.Cmd {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWorkerEnv+"="+db, "DOCKET_CRASH_LEDGER="+ledgerPath,
			fmt.Sprintf("DOCKET_CRASH_CYCLE=%d", cycle))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	const cycles = 12
	kills := 0
	for cycle := 1; cycle <= cycles; cycle++ {
		cmd := start(cycle)
		time.Sleep(time.Duration(150+rand.IntN(500)) * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		_ = cmd.Wait()
		kills++
		snapshot(cycle)
		// Signals arrive while no worker runs, and land in the next one.
		if cycle <= 3 {
			for i := range w.inboxes {
				if err := client.Signal(ctx, fmt.Sprintf("inbox-%d", i), "n", 100*cycle); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	final := start(cycles + 1)
	defer func() { _ = final.Process.Kill(); _ = final.Wait() }()

	waitCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	close(stopUpdates)
	w.check(t, waitCtx, client, answers())
	snapshot(cycles + 1)

	// Nothing ran again after it was recorded.
	f, err := os.Open(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lines, reruns := 0, 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var cycle int
		var kind, id, name string
		if _, err := fmt.Sscan(sc.Text(), &cycle, &kind, &id, &name); err != nil {
			t.Fatalf("ledger line %q: %v", sc.Text(), err)
		}
		lines++
		switch kind {
		case "step":
			if s, ok := doneAt[id+"/"+name]; ok && cycle > s.cycle {
				t.Errorf("step %s/%s ran in cycle %d after its checkpoint was seen in cycle %d", id, name, cycle, s.cycle)
			}
		case "run":
			step := map[string]string{"a": "a", "book-car": "car", "book-hotel": "hotel"}[name]
			if c, ok := runAt[id+"/"+step+"/"+name]; ok && cycle > c {
				t.Errorf("Run %s/%s ran in cycle %d after its journal entry was seen in cycle %d", id, name, cycle, c)
			}
		}
	}
	for key, s := range doneAt {
		_ = key
		if s.cycle <= cycles {
			reruns++
		}
	}
	t.Logf("%d kills, %d ledger lines, %d step outputs recorded before the last worker", kills, lines, reruns)
	if kills < cycles {
		t.Fatal("the workers were not killed")
	}
}

// crashWorkload is how many executions of each crash graph a test runs.
// Every execution's ID is its graph's prefix and its number.
type crashWorkload struct {
	chains, sagas, inboxes, counters int
	updatesEach                      int // "add" updates per counter
}

// start starts the workload's executions from client, which was opened
// with graphs (crashConfig's).
func (w crashWorkload) start(t *testing.T, client *docket.Engine, graphs []*docket.Graph) {
	t.Helper()
	ctx := context.Background()
	byName := map[string]*docket.Graph{}
	for _, g := range graphs {
		byName[g.Name()] = g
	}
	starts := []struct {
		n     int
		start func(i int) error
	}{
		{w.counters, func(i int) error {
			_, err := docket.Start[CrashCount](ctx, client, byName["crash-counter"], fmt.Sprintf("counter-%d", i), CrashSeed(i))
			return err
		}},
		{w.inboxes, func(i int) error {
			_, err := docket.Start[CrashSignalled](ctx, client, byName["crash-inbox"], fmt.Sprintf("inbox-%d", i), CrashSeed(i))
			return err
		}},
		{w.sagas, func(i int) error {
			_, err := docket.Start[CrashDone](ctx, client, byName["crash-saga"], fmt.Sprintf("saga-%d", i), CrashSeed(i))
			return err
		}},
		{w.chains, func(i int) error {
			_, err := docket.Start[CrashSum](ctx, client, byName["crash-chain"], fmt.Sprintf("chain-%d", i), CrashSeed(i))
			return err
		}},
	}
	for _, st := range starts {
		for i := range st.n {
			if err := st.start(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A rejected update records nothing.
	if w.counters > 0 {
		var rej *docket.UpdateRejectedError
		if _, err := docket.Update[int](ctx, client, "counter-0", "add", -1); !errors.As(err, &rej) {
			t.Fatalf("invalid update: %v", err)
		}
	}
}

// crashCounterTimer is the timer a counter selects on beside its "done"
// signal: the first time a counter's step runs, it is due this long after.
const crashCounterTimer = 300 * time.Millisecond

// sendUpdates sends the counters their updates, each from a goroutine of
// its own after a random delay of up to spread (cut short when stop is
// closed), retrying under the same update ID until it gets an answer. Each
// adds 1, so the answers of one counter must come out exactly 1..n: none
// lost, none applied twice. The returned function waits for all of them
// and returns the answers, by counter.
//
// It also waits until every counter's timer is due: under heavy faults a
// counter's step may be held back (its attempts that die count, and their
// retries back off) until well after its updates were sent, and first run
// only when it answers them; "done" sent before its timer is due would
// then rightly be chosen first.
func (w crashWorkload) sendUpdates(t *testing.T, client *docket.Engine, spread time.Duration, stop <-chan struct{}) func() [][]int {
	answers := make([][]int, w.counters)
	var last time.Time // the latest answer
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range w.counters {
		for k := range w.updatesEach {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-time.After(time.Duration(rand.Int64N(int64(spread)))):
				case <-stop:
				}
				id := fmt.Sprintf("counter-%d", i)
				for try := 0; ; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					n, err := docket.Update[int](ctx, client, id, "add", 1, docket.UpdateID(fmt.Sprintf("u-%d", k)))
					cancel()
					if err == nil {
						mu.Lock()
						answers[i] = append(answers[i], n)
						last = time.Now()
						mu.Unlock()
						return
					}
					if try > 100 {
						t.Errorf("%s update %d: %v", id, k, err)
						return
					}
				}
			}()
		}
	}
	return func() [][]int {
		wg.Wait()
		time.Sleep(time.Until(last.Add(crashCounterTimer + time.Second)))
		return answers
	}
}

// check waits for every execution of the workload and checks its outcome:
// each chain's sum; each saga failed at the flight with the other bookings
// compensated; each inbox got its three signals (100+200+300) once and its
// child's result; and, once told they are done, each counter applied each
// update once and chose its timer case once.
func (w crashWorkload) check(t *testing.T, ctx context.Context, client *docket.Engine, answers [][]int) {
	t.Helper()
	for i := range w.chains {
		got, err := docket.HandleFor[CrashSum](client, fmt.Sprintf("chain-%d", i)).Result(ctx)
		if err != nil {
			t.Fatalf("chain-%d: %v", i, err)
		}
		if want := crashChainResult(i); int(got) != want {
			t.Errorf("chain-%d = %d, want %d", i, got, want)
		}
	}
	for i := range w.sagas {
		id := fmt.Sprintf("saga-%d", i)
		_, err := docket.HandleFor[CrashDone](client, id).Result(ctx)
		var xe *docket.ExecutionError
		if !errors.As(err, &xe) || xe.Status != "failed" || !strings.Contains(xe.Message, "no flights") {
			t.Fatalf("%s: %v", id, err)
		}
		d, err := client.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range d.Steps {
			if s.Name != "flight" && s.Compensation != "compensated" {
				t.Errorf("%s/%s: compensation %q", id, s.Name, s.Compensation)
			}
		}
	}
	for i := range w.inboxes {
		got, err := docket.HandleFor[CrashSignalled](client, fmt.Sprintf("inbox-%d", i)).Result(ctx)
		if want := 600 + crashChainResult(i); err != nil || int(got) != want {
			t.Errorf("inbox-%d = %d, %v; want %d (each signal once, and the child's result)", i, got, err, want)
		}
	}
	for i := range w.counters {
		id := fmt.Sprintf("counter-%d", i)
		if err := client.Signal(ctx, id, "done", true); err != nil {
			_, why := docket.HandleFor[CrashCount](client, id).Result(ctx)
			t.Fatalf("%s: %v (%v)", id, err, why)
		}
		c, err := docket.HandleFor[CrashCount](client, id).Result(ctx)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		got := append([]int(nil), answers[i]...)
		slices.Sort(got)
		for k, n := range got {
			if n != k+1 {
				t.Fatalf("%s: answers %v, want 1..%d each once", id, got, w.updatesEach)
			}
		}
		if c.Total != w.updatesEach || len(got) != w.updatesEach || c.Fired != 1 {
			t.Errorf("%s: total %d from %d answers, timer chosen %d times; want %d, %d, 1", id, c.Total, len(got), c.Fired, w.updatesEach, w.updatesEach)
		}
	}
}

// TestCrashedAttemptsCount checks that attempts that die with their worker
// count toward MaxAttempts, and that a step without a retry policy ends
// after crashAllowance claims lost in a row, so a step that kills its
// process every time ends instead of running forever; while crashes spread
// over a long step's life, between recorded suspensions, never end it.
func TestCrashedAttemptsCount(t *testing.T) {
	for _, tc := range []struct {
		name      string
		opts      []docket.StepOption
		attempt   int // the task's attempt number before the dead claims
		dead      int // claims whose worker "dies"
		wantError string
	}{
		{"policy", []docket.StepOption{docket.Retry(docket.RetryPolicy{MaxAttempts: 3})}, 0, 3,
			"attempt 4 exceeds the 3 allowed"},
		{"no policy, in a row", nil, 0, 10, "10 claims in a row ended without a result"},
		// Thirty earlier crashes, each followed by a suspension that
		// recorded progress, then nine in a row: the step still runs.
		{"no policy, spread out", nil, 31, 9, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "poison.db")
			g := docket.NewGraph("poison", docket.Input[CrashSeed]())
			docket.Register1(g, func(ctx context.Context, s CrashSeed) (CrashA, error) {
				return 7, nil
			}, append([]docket.StepOption{docket.Name("poison")}, tc.opts...)...)
			ctx := context.Background()
			// Record the execution with a client, then lease its task to
			// workers that "die" (their leases simply run out).
			client, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{g}, Workers: -1})
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			if _, err := docket.Start[CrashA](ctx, client, g, "p", CrashSeed(1)); err != nil {
				t.Fatal(err)
			}
			if tc.attempt > 0 {
				err := client.Store().Update(ctx, "p", func(tx store.Tx) error {
					tasks, err := tx.Tasks()
					if err != nil || len(tasks) != 1 {
						return fmt.Errorf("tasks %v: %w", tasks, err)
					}
					tasks[0].Attempt = tc.attempt
					return tx.PutTask(&tasks[0])
				})
				if err != nil {
					t.Fatal(err)
				}
			}
			now := time.Now()
			for i := range tc.dead {
				now = now.Add(2 * time.Millisecond) // after the last lease ran out
				got, err := client.Store().Claim(ctx, fmt.Sprintf("dead-%d", i), "", now, time.Millisecond, 1)
				if err != nil || len(got) != 1 {
					t.Fatalf("claim %d: %v %v", i, got, err)
				}
			}
			time.Sleep(time.Until(now.Add(5 * time.Millisecond)))
			eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{g}, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer eng.Close()
			got, err := docket.HandleFor[CrashA](eng, "p").Result(ctx)
			switch {
			case tc.wantError == "" && (err != nil || got != 7):
				t.Fatalf("got %v, %v; want 7", got, err)
			case tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)):
				t.Fatalf("got %v; want an error with %q", err, tc.wantError)
			}
		})
	}
}
