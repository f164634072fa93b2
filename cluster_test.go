package docket_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"sync"
	"syscall"
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
// once, each saga compensated. On a failure it logs the stored state of
// the executions that did not finish and the workers' goroutines.
// DOCKET_CLUSTER_INBOXES=n runs n signal-fed inboxes and little else.
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
	w := crashWorkload{chains: 1500, sagas: 150, inboxes: 60, counters: 6, updatesEach: 15}
	if n, _ := strconv.Atoi(os.Getenv("DOCKET_CLUSTER_INBOXES")); n > 0 {
		// Mostly signal-fed inboxes calling children: where lost
		// connections meet signals most often.
		w = crashWorkload{chains: 100, sagas: 10, inboxes: n, counters: 2, updatesEach: 5}
	}
	w.start(t, client, cfg.Graphs)
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
		for _, cmd := range workers {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	// Signals and updates arrive all through the faults.
	var wg sync.WaitGroup
	for i := range w.inboxes {
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
	answers := w.sendUpdates(t, client, 8*time.Second, nil)

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
	defer func() {
		if t.Failed() {
			dumpUnfinished(t, u)
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
			// The workers print their goroutines and exit.
			mu.Lock()
			for _, cmd := range workers {
				_ = cmd.Process.Signal(syscall.SIGQUIT)
			}
			mu.Unlock()
			time.Sleep(2 * time.Second)
		}
	}()
	w.check(t, waitCtx, client, answers())
	t.Logf("%d executions; %d worker kills, %d worker connections cut", w.chains+w.sagas+w.inboxes+w.counters, kills, cuts)
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

// dumpUnfinished logs the stored state of every execution that has not
// finished, and the journals, inboxes and step records of the counters
// (whose checks look at how their steps ran), so that a failure in CI can
// be read without reproducing it.
func dumpUnfinished(t *testing.T, u string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Logf("dump: %v", err)
		return
	}
	defer conn.Close(ctx)
	queries := []string{
		`SELECT id, run, status, seq, signal_seq, parent, parent_step, updated_at FROM executions
			WHERE status NOT IN ('completed', 'failed', 'cancelled', 'continued') ORDER BY ord`,
		`SELECT s.exec, s.name, s.status, s.attempt, s.wait, s.wake_at, s.signal, s.seq, s.worker, s.finished_at FROM steps s
			JOIN executions e ON e.id = s.exec WHERE e.status NOT IN ('completed', 'failed', 'cancelled', 'continued') ORDER BY s.exec, s.name`,
		`SELECT j.exec, j.step, j.seq, j.kind, j.name, j.error, j.done, j.wake_at FROM journal j
			JOIN executions e ON e.id = j.exec WHERE e.status NOT IN ('completed', 'failed', 'cancelled', 'continued') ORDER BY j.exec, j.step, j.seq`,
		`SELECT g.exec, g.seq, g.name, g.consumed_by, g.sent_at FROM signals g
			JOIN executions e ON e.id = g.exec WHERE e.status NOT IN ('completed', 'failed', 'cancelled', 'continued') ORDER BY g.exec, g.seq`,
		`SELECT k.* FROM tasks k ORDER BY k.exec, k.id`,
		`SELECT * FROM workers ORDER BY id`,
		`SELECT 'J', j.exec, j.step, j.seq, j.kind, j.name, j.error, j.done, j.wake_at, length(j.data) FROM journal j WHERE j.exec LIKE 'counter-%' ORDER BY j.exec, j.step, j.seq`,
		`SELECT 'S', g.exec, g.seq, g.name, g.consumed_by, g.sent_at FROM signals g WHERE g.exec LIKE 'counter-%' ORDER BY g.exec, g.seq`,
		`SELECT 'T', s.exec, s.name, s.status, s.attempt, s.wait, s.wake_at, s.started_at, s.finished_at, e.created_at FROM steps s JOIN executions e ON e.id = s.exec WHERE s.exec LIKE 'counter-%'`,
	}
	for _, q := range queries {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			t.Logf("dump: %v", err)
			return
		}
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Logf("dump: %v", err)
				break
			}
			t.Logf("dump: %v", vals)
		}
		rows.Close()
	}
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
