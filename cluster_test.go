package docket_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// TestPostgresCluster runs the crash test's mixed workload — chains with
// durable sleeps, retries and fan-outs, sagas, signal-fed steps calling
// children, and counters taking updates in a select with a timer — on one
// PostgreSQL database shared by three worker processes. While it runs,
// workers are SIGKILLed and restarted at random and every worker's
// database connections are cut now and then. Then every result must be
// right: each signal received once (the inbox sums), each update applied
// once (the counters' answers are exactly 1..n), each select timer chosen
// once, each saga compensated.
func TestPostgresCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the cluster test takes about half a minute")
	}
	u := pgtest.URL(t)
	workerURL := withParam(t, u, "application_name", "docket-cluster-worker")
	ctx := context.Background()
	cfg := crashConfig(u, -1)
	client, err := docket.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	graphs := cfg.Graphs
	const chains, sagas, inboxes, counters, updatesEach = 1500, 150, 60, 6, 15
	start := func(g *docket.Graph, prefix string, n int) {
		for i := range n {
			var err error
			switch prefix {
			case "chain":
				_, err = docket.Start[CrashSum](ctx, client, g, fmt.Sprintf("%s-%d", prefix, i), CrashSeed(i))
			case "saga":
				_, err = docket.Start[CrashDone](ctx, client, g, fmt.Sprintf("%s-%d", prefix, i), CrashSeed(i))
			case "inbox":
				_, err = docket.Start[CrashSignalled](ctx, client, g, fmt.Sprintf("%s-%d", prefix, i), CrashSeed(i))
			case "counter":
				_, err = docket.Start[CrashCount](ctx, client, g, fmt.Sprintf("%s-%d", prefix, i), CrashSeed(i))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	start(graphs[3], "counter", counters)
	start(graphs[2], "inbox", inboxes)
	start(graphs[1], "saga", sagas)
	start(graphs[0], "chain", chains)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	workers := make([]*exec.Cmd, 3)
	spawn := func(i int) {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), crashWorkerEnv+"="+workerURL)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		workers[i] = cmd
	}
	for i := range workers {
		spawn(i)
	}
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range workers {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
	}()

	// Signals and updates arrive all through the faults.
	var wg sync.WaitGroup
	for i := range inboxes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 1; k <= 3; k++ {
				time.Sleep(time.Duration(rand.IntN(3000)) * time.Millisecond)
				if err := client.Signal(ctx, fmt.Sprintf("inbox-%d", i), "n", 100*k); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	answers := make([][]int, counters)
	for i := range counters {
		for k := range updatesEach {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(rand.IntN(8000)) * time.Millisecond)
				for try := 0; ; try++ {
					uctx, cancel := context.WithTimeout(ctx, 3*time.Second)
					n, err := docket.Update[int](uctx, client, fmt.Sprintf("counter-%d", i), "add", 1, docket.UpdateID(fmt.Sprint("u-", k)))
					cancel()
					if err == nil {
						mu.Lock()
						answers[i] = append(answers[i], n)
						mu.Unlock()
						return
					}
					if try > 30 {
						t.Errorf("counter-%d update %d: %v", i, k, err)
						return
					}
				}
			}()
		}
	}

	// Faults: kill and restart a worker now and then; cut every worker's
	// connections twice.
	kills, cuts := 0, 0
	deadline := time.Now().Add(10 * time.Second)
	for next := 1; time.Now().Before(deadline); next++ {
		time.Sleep(time.Duration(400+rand.IntN(800)) * time.Millisecond)
		if next%4 == 0 {
			cuts += cutConnections(t, u)
			continue
		}
		i := rand.IntN(len(workers))
		mu.Lock()
		_ = workers[i].Process.Kill() // SIGKILL
		_ = workers[i].Wait()
		spawn(i)
		mu.Unlock()
		kills++
	}
	wg.Wait()

	waitCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for i := range chains {
		got, err := docket.HandleFor[CrashSum](client, fmt.Sprintf("chain-%d", i)).Result(waitCtx)
		if err != nil {
			t.Fatalf("chain-%d: %v", i, err)
		}
		if want := crashChainResult(i); int(got) != want {
			t.Errorf("chain-%d = %d, want %d", i, got, want)
		}
	}
	for i := range sagas {
		id := fmt.Sprintf("saga-%d", i)
		_, err := docket.HandleFor[CrashDone](client, id).Result(waitCtx)
		var xe *docket.ExecutionError
		if !errors.As(err, &xe) || xe.Status != "failed" {
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
	for i := range inboxes {
		got, err := docket.HandleFor[CrashSignalled](client, fmt.Sprintf("inbox-%d", i)).Result(waitCtx)
		if want := 600 + crashChainResult(i); err != nil || int(got) != want {
			t.Errorf("inbox-%d = %d, %v; want %d (each signal once, and the child's result)", i, got, err, want)
		}
	}
	for i := range counters {
		id := fmt.Sprintf("counter-%d", i)
		if err := client.Signal(ctx, id, "done", true); err != nil {
			t.Fatal(err)
		}
		c, err := docket.HandleFor[CrashCount](client, id).Result(waitCtx)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		got := append([]int(nil), answers[i]...)
		slices.Sort(got)
		for k, n := range got {
			if n != k+1 {
				t.Fatalf("%s: answers %v, want 1..%d each once", id, got, updatesEach)
			}
		}
		if c.Total != updatesEach || len(got) != updatesEach || c.Fired != 1 {
			t.Errorf("%s: total %d from %d answers, timer chosen %d times; want %d, %d, 1", id, c.Total, len(got), c.Fired, updatesEach, updatesEach)
		}
	}
	t.Logf("%d executions; %d worker kills, %d worker connections cut", chains+sagas+inboxes+counters, kills, cuts)
	if kills == 0 || cuts == 0 {
		t.Fatal("no faults were injected")
	}
}

// cutConnections terminates every connection of the cluster's workers and
// returns how many it cut.
func cutConnections(t *testing.T, u string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = 'docket-cluster-worker' AND pid <> pg_backend_pid()`).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func withParam(t *testing.T, raw, key, value string) string {
	p, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	q := p.Query()
	q.Set(key, value)
	p.RawQuery = q.Encode()
	return p.String()
}
