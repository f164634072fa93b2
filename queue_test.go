package docket_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
)

type (
	Frame    struct{ N int }
	Rendered struct{ N int }
	Shipped  struct{ N int }
)

// Steps routed to a queue run only on workers serving it, within its limit.
func TestQueues(t *testing.T) {
	var inflight, most atomic.Int32
	g := docket.NewGraph("render", docket.Input[Frame]())
	docket.Register1(g, func(ctx context.Context, f Frame) (Rendered, error) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		return Rendered(f), nil
	}, docket.Name("render"), docket.Queue("gpu"))
	docket.Register1(g, func(ctx context.Context, r Rendered) (Shipped, error) { return Shipped(r), nil }, docket.Name("ship"))

	db := "sqlite:" + filepath.Join(t.TempDir(), "q.db")
	ctx := context.Background()
	open := func(cfg docket.Config) *docket.Engine {
		cfg.Store, cfg.Graphs, cfg.PollInterval = db, []*docket.Graph{g}, 20*time.Millisecond
		eng, err := docket.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		return eng
	}
	cpu := open(docket.Config{WorkerID: "cpu", Workers: 4})
	if _, err := docket.Open(ctx, docket.Config{Store: "memory:", Queues: map[string]int{"gpu": 0}}); err == nil {
		t.Fatal("a queue with no concurrency was accepted")
	}
	var hs []*docket.Handle[Shipped]
	for i := range 6 {
		h, err := docket.Start[Shipped](ctx, cpu, g, fmt.Sprint("frame-", i), Frame{i})
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	// No GPU worker yet: the render steps wait in their queue.
	time.Sleep(100 * time.Millisecond)
	if d, _ := cpu.Describe(ctx, "frame-0"); d.Steps[0].Status != "ready" {
		t.Fatalf("render ran without a gpu worker: %+v", d.Steps[0])
	}
	open(docket.Config{WorkerID: "gpu", Workers: -1, Queues: map[string]int{"gpu": 1}})
	for i, h := range hs {
		s, err := h.Result(ctx)
		if err != nil || s.N != i {
			t.Fatalf("frame %d: %v %v", i, s, err)
		}
		d, _ := cpu.Describe(ctx, h.ID())
		if d.Steps[0].Worker != "gpu" || d.Steps[1].Worker != "cpu" {
			t.Fatalf("frame %d ran render on %q and ship on %q", i, d.Steps[0].Worker, d.Steps[1].Worker)
		}
	}
	if m := most.Load(); m != 1 {
		t.Fatalf("%d renders ran at once on a queue limited to 1", m)
	}
}

// Session steps (one affinity key) run on one worker.
func TestAffinity(t *testing.T) {
	g := sessionGraph()
	db := "sqlite:" + filepath.Join(t.TempDir(), "a.db")
	ctx := context.Background()
	var engines []*docket.Engine
	for _, id := range []string{"w1", "w2", "client"} {
		workers := 4
		if id == "client" {
			workers = -1
		}
		eng, err := docket.Open(ctx, docket.Config{Store: db, Graphs: []*docket.Graph{g}, WorkerID: id, Workers: workers, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = eng.Close() })
		engines = append(engines, eng)
	}
	client := engines[2]
	used := map[string]bool{}
	for i := range 12 {
		id := fmt.Sprint("file-", i)
		h, err := docket.Start[Uploaded](ctx, client, g, id, FileName(id))
		if err != nil {
			t.Fatal(err)
		}
		if u, err := h.Result(ctx); err != nil || u.Name != id {
			t.Fatalf("%s: %v %v", id, u, err)
		}
		d, _ := client.Describe(ctx, id)
		w := d.Steps[0].Worker
		for _, s := range d.Steps {
			if s.Worker != w {
				t.Fatalf("%s: the session ran on several workers: %+v", id, d.Steps)
			}
		}
		used[w] = true
	}
	t.Logf("sessions ran on %v", used)
}

type (
	FileName   string
	Downloaded struct{ Name, Path string }
	Processed  struct{ Name, Path string }
	Uploaded   struct{ Name, By string }
)

// sessionGraph downloads, processes and uploads a file on one worker: the
// downloaded file is on that worker's disk. It notes every step run in the
// ledger, and "process" waits for a gate file when one is named.
func sessionGraph() *docket.Graph {
	g := docket.NewGraph("file", docket.Input[FileName]())
	host := func() string { return fmt.Sprint(os.Getpid()) }
	docket.Register1(g, func(ctx context.Context, f FileName) (Downloaded, error) {
		ledger(ctx, "session "+execID(ctx)+" download", host())
		return Downloaded{string(f), "/tmp/" + host() + "/" + string(f)}, nil
	}, docket.Name("download"), docket.Affinity("file"))
	docket.Register1(g, func(ctx context.Context, d Downloaded) (Processed, error) {
		ledger(ctx, "session "+execID(ctx)+" process", host())
		if !strings.Contains(d.Path, "/"+host()+"/") {
			return Processed{}, docket.NonRetryable(fmt.Errorf("%s is on another host", d.Path))
		}
		if gate := os.Getenv("DOCKET_SESSION_GATE"); gate != "" {
			for {
				if _, err := os.Stat(gate); err == nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		return Processed(d), nil
	}, docket.Name("process"), docket.Affinity("file"))
	docket.Register1(g, func(ctx context.Context, p Processed) (Uploaded, error) {
		ledger(ctx, "session "+execID(ctx)+" upload", host())
		return Uploaded{p.Name, host()}, nil
	}, docket.Name("upload"), docket.Affinity("file"))
	return g
}

const sessionWorkerEnv = "DOCKET_SESSION_WORKER"

// sessionWorker is a worker process for TestSessionRecovery.
func sessionWorker(db string) {
	eng, err := docket.Open(context.Background(), docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{sessionGraph()},
		Lease: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "session worker:", err)
		os.Exit(2)
	}
	defer eng.Close()
	select {}
}

// When a session's worker dies, the session runs again from its first
// step on another worker.
func TestSessionRecovery(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "s.db")
	ledgerPath := filepath.Join(dir, "ledger.txt")
	t.Setenv("DOCKET_CRASH_LEDGER", ledgerPath)
	t.Setenv("DOCKET_CRASH_CYCLE", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command(exe, "-test.run=^$")
	child.Env = append(os.Environ(), sessionWorkerEnv+"="+db, "DOCKET_SESSION_GATE="+filepath.Join(dir, "never"))
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	ctx := context.Background()
	g := sessionGraph()
	client, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{g}, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	h, err := docket.Start[Uploaded](ctx, client, g, "f-1", FileName("f-1"))
	if err != nil {
		t.Fatal(err)
	}
	// The child downloads and gets stuck processing: kill it there.
	waitUntil(t, func() bool {
		d, _ := client.Describe(ctx, "f-1")
		return d != nil && d.Steps[0].Status == "done" && d.Steps[1].Status == "running"
	})
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	t.Setenv("DOCKET_CRASH_CYCLE", "2")
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{g}, WorkerID: "rescuer",
		Lease: 500 * time.Millisecond, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	u, err := h.Result(ctx)
	if err != nil || u.By != fmt.Sprint(os.Getpid()) {
		t.Fatalf("%+v %v", u, err)
	}
	d, _ := client.Describe(ctx, "f-1")
	for _, s := range d.Steps {
		if s.Worker != "rescuer" || s.Status != "done" {
			t.Fatalf("after recovery: %+v", d.Steps)
		}
	}
	data, err := os.ReadFile(ledgerPath)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Count(string(data), " download ")
	if got != 2 || strings.Count(string(data), "2 session f-1 download") != 1 {
		t.Fatalf("the session did not start again from its first step:\n%s", data)
	}
}
