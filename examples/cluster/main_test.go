package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store/postgres/pgtest"
	"go.uber.org/goleak"
)

// TestMain runs the test binary as a worker when run() starts it as one,
// as the program itself does.
func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		if err := worker(name); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// Three worker processes on a PostgreSQL schema of the test's own.
func TestClusterPostgres(t *testing.T) {
	testCluster(t, pgtest.URL(t), 3, 200, true)
}

// The fallback: worker processes sharing a SQLite file. Claims there are
// write transactions that wait for the file's lock, and SQLite's waiting
// is not fair: a busy process can hold off the other's claims for
// seconds (runs have split the 480 steps anywhere from 160/320 to 445/35,
// and once 480/0), so how the work was shared is only logged.
func TestClusterSQLite(t *testing.T) {
	testCluster(t, "sqlite:"+filepath.Join(t.TempDir(), "cluster.db"), 2, 80, false)
}

// testCluster runs the example and checks, from the store rather than the
// output, that every order completed with the right receipt, that the
// workers shared the work (when share is set) and that the gpu steps ran
// only on worker-1.
func testCluster(t *testing.T, storeURL string, workers, orders int, share bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out strings.Builder
	err := run(ctx, &out, storeURL, workers, orders)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), fmt.Sprintf("%d orders done", orders)) {
		t.Errorf("the output does not report %d orders done", orders)
	}

	eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{newGraph()}, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var ids []string
	for cursor := ""; ; {
		page, next, err := eng.List(ctx, docket.ListOptions{Graph: "order", Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range page {
			ids = append(ids, x.ID)
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(ids) != orders {
		t.Fatalf("%d executions in the store, want %d", len(ids), orders)
	}

	// Each worker runs with its share of the cores (or the GOMAXPROCS the
	// test was given, which it inherits).
	procs := coresEach(workers)
	if procs == 0 {
		procs = runtime.GOMAXPROCS(0)
	}
	names := map[string]bool{}
	for i := range workers {
		names[workerName(i)] = true
		ready := 0
		for _, line := range strings.Split(out.String(), "\n") {
			if !strings.HasPrefix(line, workerName(i)+" ") || !strings.Contains(line, readyLine) {
				continue
			}
			ready++
			if !strings.HasSuffix(line, fmt.Sprintf("GOMAXPROCS %d)", procs)) {
				t.Errorf("%s does not run with GOMAXPROCS %d: %q", workerName(i), procs, line)
			}
		}
		if ready != 1 {
			t.Errorf("%s said it was up %d times, want once", workerName(i), ready)
		}
	}
	steps := map[string]int{} // steps run, by worker
	for _, id := range ids {
		batch, num, ok := strings.Cut(id, "/order-")
		i, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("unexpected execution ID %q", id)
		}
		o := makeOrder(batch, i)
		items, cents := 0, 0
		for _, l := range o.Lines {
			items += l.Qty
			cents += l.Qty * prices[l.SKU]
		}
		r, err := docket.HandleFor[Receipt](eng, id).Result(ctx)
		if err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		if r.Order != id || r.Items != items || r.Cents != cents || r.Risk < 0 || r.Risk > 99 || r.Approved != (r.Risk < approveBelow) {
			t.Errorf("%s: receipt %+v, want %d items for %d cents", id, r, items, cents)
		}
		d, err := eng.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.Steps) != 6 {
			t.Fatalf("%s: %d steps, want 6: %+v", id, len(d.Steps), d.Steps)
		}
		for _, s := range d.Steps {
			if s.Status != "done" || !names[s.Worker] {
				t.Errorf("%s: step %s %s on %q", id, s.Name, s.Status, s.Worker)
			}
			if s.Name == "score" && s.Worker != workerName(0) {
				t.Errorf("%s: score (queue gpu) ran on %s, which does not serve the gpu queue", id, s.Worker)
			}
			steps[s.Worker]++
		}
	}
	t.Logf("steps by worker: %v", steps)
	if share && len(steps) < 2 {
		t.Errorf("only %v did any work", steps)
	}
}

// When the default PostgreSQL server does not answer, the program says so
// and uses a SQLite file.
func TestChooseStore(t *testing.T) {
	dir := t.TempDir()
	var out strings.Builder
	got, err := chooseStore(context.Background(), &out, "", "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2", dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := "sqlite:" + filepath.Join(dir, "cluster.db"); got != want {
		t.Errorf("store %q, want %q", got, want)
	}
	if !strings.Contains(out.String(), "unreachable") || !strings.Contains(out.String(), "one machine") {
		t.Errorf("the fallback is not explained:\n%s", out.String())
	}
	out.Reset()
	if got, err := chooseStore(context.Background(), &out, "sqlite:x.db", "postgres://unused", dir); err != nil || got != "sqlite:x.db" {
		t.Errorf("a named store: %q, %v", got, err)
	}
}
