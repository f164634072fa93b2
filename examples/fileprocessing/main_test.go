package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
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

func TestFailoverSQLite(t *testing.T) {
	dir := t.TempDir()
	testFailover(t, "sqlite:"+filepath.Join(dir, "docket.db"), dir)
}

func TestFailoverPostgres(t *testing.T) {
	testFailover(t, pgtest.URL(t), t.TempDir())
}

// want is what the report of a month says, worked out here rather than by
// the steps.
func want(days, cents int) (units, total int) {
	for day := 1; day <= days; day++ {
		units += day%7 + 1
	}
	return units, units * cents
}

// testFailover runs the story and checks, from the store and the remote
// directory rather than the output, that every file was processed right,
// each session on one worker, and the killed session again from its
// download on worker-2.
func testFailover(t *testing.T, storeURL, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out strings.Builder
	err := run(ctx, &out, storeURL, dir)
	t.Logf("output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}

	g := newGraph(&Files{})
	eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}, Workers: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	list, _, err := eng.List(ctx, docket.ListOptions{Graph: "fileprocessing"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(months) {
		t.Fatalf("%d executions, want %d: %+v", len(list), len(months), list)
	}
	ids := map[string]string{} // file name → execution ID
	for _, x := range list {
		ids[x.ID[strings.LastIndex(x.ID, "/")+1:]] = x.ID
	}
	for _, m := range months {
		id, ok := ids[m.name]
		if !ok {
			t.Fatalf("no execution for %s among %+v", m.name, list)
		}
		u, err := docket.HandleFor[Uploaded](eng, id).Result(ctx)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		units, total := want(m.days, m.cents)
		if u.Name != m.name || u.Days != m.days || u.Units != units || u.Cents != total {
			t.Errorf("%s: result %+v, want %d days, %d units, %d cents", m.name, u, m.days, units, total)
		}
		report := strings.TrimSuffix(m.name, ".csv") + ".report"
		data, err := os.ReadFile(filepath.Join(dir, "remote", "outbox", report))
		if err != nil {
			t.Fatal(err)
		}
		if w := fmt.Sprintf("%s: %d days, %d units, %d.%02d\n", m.name, m.days, units, total/100, total%100); string(data) != w {
			t.Errorf("uploaded %s = %q, want %q", report, data, w)
		}

		// The session's three steps ran on one worker: worker-2 for the
		// one whose worker was killed, worker-1 for the others.
		d, err := eng.Describe(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		worker := "worker-1"
		if m.name == hangs {
			worker = "worker-2"
		}
		if len(d.Steps) != 3 {
			t.Fatalf("%s: steps %+v", m.name, d.Steps)
		}
		for _, s := range d.Steps {
			if s.Worker != worker || s.Status != "done" {
				t.Errorf("%s: step %s %s on %q, want done on %s", m.name, s.Name, s.Status, s.Worker, worker)
			}
		}
	}

	// The remote store saw the killed session start again from its
	// download: mar.csv was fetched by both workers, worker-1 first, and
	// its report put by worker-2 only. The others were fetched and put
	// once, by worker-1.
	data, err := os.ReadFile(filepath.Join(dir, "remote", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	log := strings.Split(strings.TrimSpace(string(data)), "\n")
	index := func(line string) int {
		n, at := 0, -1
		for i, l := range log {
			if l == line {
				n, at = n+1, i
			}
		}
		if n != 1 {
			t.Errorf("access log has %q %d times, want once:\n%s", line, n, data)
		}
		return at
	}
	for _, m := range months {
		report := strings.TrimSuffix(m.name, ".csv") + ".report"
		if m.name == hangs {
			if index("GET "+m.name+" worker-1") > index("GET "+m.name+" worker-2") {
				t.Errorf("worker-2 downloaded %s before worker-1:\n%s", m.name, data)
			}
			index("PUT " + report + " worker-2")
			continue
		}
		index("GET " + m.name + " worker-1")
		index("PUT " + report + " worker-1")
	}
	if len(log) != 2*len(months)+1 {
		t.Errorf("access log has %d lines, want %d:\n%s", len(log), 2*len(months)+1, data)
	}
	for _, line := range []string{
		"client    mar.csv: download done on worker-1, process running on worker-1, upload pending",
		"client    killing worker-1 (SIGKILL)",
		"worker-2  download mar.csv",
	} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("the output lacks %q", line)
		}
	}
}

// process refuses a file downloaded to another worker's disk: the mistake
// that affinity prevents.
func TestProcessOnOtherDisk(t *testing.T) {
	dir := t.TempDir()
	other := filepath.Join(dir, "other")
	if err := os.Mkdir(other, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(other, "jan.csv")
	if err := os.WriteFile(path, []byte(sales(1, 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := &Files{Worker: "w", Remote: dir, Disk: filepath.Join(dir, "mine"), Out: &strings.Builder{}}
	_, err := f.process(context.Background(), LocalFile{Name: "jan.csv", Path: path})
	if err == nil || !strings.Contains(err.Error(), "another worker's disk") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	f.Disk = other
	r, err := f.process(context.Background(), LocalFile{Name: "jan.csv", Path: path})
	if err != nil || r.Days != 1 || r.Units != 2 || r.Cents != 200 {
		t.Fatalf("process on its own disk: %+v, %v", r, err)
	}
}

// Two workers at once, in this process, each with a disk of its own: every
// session stays on the worker that downloaded its file (were it not so,
// process would refuse the file, and the execution fail).
func TestSessionsStayOnOneWorker(t *testing.T) {
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote")
	if err := fillInbox(remote); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	storeURL := "sqlite:" + filepath.Join(dir, "docket.db")
	var (
		engines []*docket.Engine
		graphs  []*docket.Graph
	)
	for _, name := range []string{"client", "w1", "w2"} {
		f := &Files{Worker: name, Remote: remote, Disk: filepath.Join(dir, name), Out: &lockedWriter{w: &strings.Builder{}}}
		if err := os.Mkdir(f.Disk, 0o755); err != nil {
			t.Fatal(err)
		}
		workers := 4
		if name == "client" {
			workers = -1
		}
		graphs = append(graphs, newGraph(f))
		eng, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: graphs[len(graphs)-1:],
			WorkerID: name, Workers: workers, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer eng.Close()
		engines = append(engines, eng)
	}
	client, g := engines[0], graphs[0]
	var hs []*docket.Handle[Uploaded]
	for i := range 24 {
		m := months[i%len(months)]
		h, err := docket.Start[Uploaded](ctx, client, g, fmt.Sprint(i, "/", m.name), RemoteFile(m.name))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	ran := map[string]int{}
	for i, h := range hs {
		m := months[i%len(months)]
		u, err := h.Result(ctx)
		if err != nil {
			t.Fatalf("%s: %v", h.ID(), err)
		}
		if _, total := want(m.days, m.cents); u.Cents != total {
			t.Errorf("%s: %d cents, want %d", h.ID(), u.Cents, total)
		}
		d, err := client.Describe(ctx, h.ID())
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range d.Steps {
			if s.Worker != d.Steps[0].Worker || s.Worker == "" {
				t.Fatalf("%s: the session ran on several workers: %s", h.ID(), steps(d))
			}
		}
		ran[d.Steps[0].Worker]++
	}
	t.Logf("sessions per worker: %v", ran)
}
