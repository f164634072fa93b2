// Fileprocessing downloads a file to a worker's local disk, processes it
// there and uploads the result: three steps that must run on one worker,
// because the file in between lives on that worker's disk only. They share
// docket.Affinity("file"), which makes them a session: the first worker to
// claim one of them gets them all.
//
// When that worker dies half-way through, the downloaded file is gone with
// it, so running just the unfinished step somewhere else would not do. The
// engine notices that the session's worker stopped renewing its leases
// (Config.Lease) and recovers the session by running all of its steps
// again, from the first, on another worker.
//
// The program plays the whole story with real processes:
//
//   - a "remote" directory stands for an object store: inbox/ holds three
//     months of sales as CSV files, outbox/ receives the reports, and
//     access.log records every GET and PUT with the worker that made it;
//   - worker-1 is this program started again in worker mode, with a local
//     disk of its own (a temporary directory); it is told that processing
//     mar.csv hangs — a gate that never opens;
//   - the program starts one execution per file, waits until jan.csv and
//     feb.csv are done and mar.csv is stuck in process, then kills worker-1
//     with SIGKILL and deletes its disk;
//   - worker-2 starts; once worker-1's lease has run out it takes the
//     session over and downloads, processes and uploads mar.csv itself.
//
// Executions live in a SQLite file in a temporary directory, so it runs
// with no set-up; give a PostgreSQL URL to use that instead:
//
//	go run ./examples/fileprocessing
//	go run ./examples/fileprocessing --store 'postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
//
// Each worker needs a WorkerID of its own for as long as the sessions
// pinned to it may live: a session is tied to the ID, not to the process.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docket-run/docket"
)

// The environment of a worker process: its name says that the program runs
// as a worker, and the others what it works on.
const (
	envWorker = "FILEPROCESSING_WORKER" // the worker's name (its WorkerID)
	envStore  = "FILEPROCESSING_STORE"  // the store URL
	envRemote = "FILEPROCESSING_REMOTE" // the remote directory
	envDisk   = "FILEPROCESSING_DISK"   // the worker's local disk
	envHang   = "FILEPROCESSING_HANG"   // a file whose processing never ends on this worker
)

// lease is how long a worker's claim on a step, and its sessions, outlive
// it: a dead worker's session is recovered this long after it died.
const lease = 500 * time.Millisecond

// What the steps pass on.
type (
	// RemoteFile is the input: a file's name in the remote inbox.
	RemoteFile string
	// LocalFile is a file downloaded to a worker's disk.
	LocalFile struct {
		Name, Path string
		Bytes      int
	}
	// Report is a processed file, on the same disk.
	Report struct {
		Name, Path string
		Days       int
		Units      int
		Cents      int
	}
	// Uploaded is the result: where the report went and what it says.
	Uploaded struct {
		Name, URL string
		Days      int
		Units     int
		Cents     int
	}
)

// Files holds the steps, as one worker runs them.
type Files struct {
	Worker string    // this worker's name
	Remote string    // the remote directory: inbox/, outbox/, access.log
	Disk   string    // this worker's local disk
	Hang   string    // processing this file hangs here
	Out    io.Writer // where the steps say what they do
}

func (f *Files) say(format string, args ...any) {
	fmt.Fprintf(f.Out, "%-9s "+format+"\n", append([]any{f.Worker}, args...)...)
}

// local shortens a path on this worker's disk for the output.
func (f *Files) local(path string) string {
	return filepath.Join(filepath.Base(f.Disk), filepath.Base(path))
}

// access appends a line to the remote store's access log.
func (f *Files) access(op, name string) error {
	file, err := os.OpenFile(filepath.Join(f.Remote, "access.log"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(file, "%s %s %s\n", op, name, f.Worker); err != nil {
		file.Close()
		return err
	}
	return file.Close()
}

// download copies the file from the remote inbox to this worker's disk.
func (f *Files) download(_ context.Context, r RemoteFile) (LocalFile, error) {
	name := string(r)
	data, err := os.ReadFile(filepath.Join(f.Remote, "inbox", name))
	if err != nil {
		return LocalFile{}, err
	}
	if err := f.access("GET", name); err != nil {
		return LocalFile{}, err
	}
	path := filepath.Join(f.Disk, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return LocalFile{}, err
	}
	f.say("download %s -> %s (%d bytes)", name, f.local(path), len(data))
	return LocalFile{Name: name, Path: path, Bytes: len(data)}, nil
}

// process reads the downloaded file from this worker's disk, adds up the
// day's sales and writes the report next to it.
func (f *Files) process(ctx context.Context, l LocalFile) (Report, error) {
	if filepath.Dir(l.Path) != f.Disk {
		// Affinity exists so that this never happens.
		return Report{}, docket.NonRetryable(fmt.Errorf("%s was downloaded to another worker's disk", l.Path))
	}
	data, err := os.ReadFile(l.Path)
	if err != nil {
		return Report{}, docket.NonRetryable(err)
	}
	if l.Name == f.Hang {
		f.say("process  %s: hangs (its gate never opens)", l.Name)
		<-ctx.Done()
		return Report{}, ctx.Err()
	}
	r := Report{Name: l.Name, Path: filepath.Join(f.Disk, strings.TrimSuffix(l.Name, ".csv")+".report")}
	for line := range strings.Lines(string(data)) {
		var day, units, cents int
		if _, err := fmt.Sscanf(line, "%d,%d,%d", &day, &units, &cents); err != nil {
			return Report{}, docket.NonRetryable(fmt.Errorf("%s: %q: %w", l.Name, line, err))
		}
		r.Days++
		r.Units += units
		r.Cents += units * cents
	}
	text := fmt.Sprintf("%s: %d days, %d units, %d.%02d\n", r.Name, r.Days, r.Units, r.Cents/100, r.Cents%100)
	if err := os.WriteFile(r.Path, []byte(text), 0o644); err != nil {
		return Report{}, err
	}
	f.say("process  %s -> %s", f.local(l.Path), f.local(r.Path))
	return r, nil
}

// upload copies the report from this worker's disk to the remote outbox.
func (f *Files) upload(_ context.Context, r Report) (Uploaded, error) {
	data, err := os.ReadFile(r.Path)
	if err != nil {
		return Uploaded{}, err
	}
	name := filepath.Base(r.Path)
	url := filepath.Join(f.Remote, "outbox", name)
	if err := os.WriteFile(url, data, 0o644); err != nil {
		return Uploaded{}, err
	}
	if err := f.access("PUT", name); err != nil {
		return Uploaded{}, err
	}
	f.say("upload   %s -> remote/outbox/%s", f.local(r.Path), name)
	return Uploaded{Name: r.Name, URL: url, Days: r.Days, Units: r.Units, Cents: r.Cents}, nil
}

// newGraph is the session: download, process, upload, on one worker.
func newGraph(f *Files) *docket.Graph {
	g := docket.NewGraph("fileprocessing", docket.Input[RemoteFile]())
	docket.Register1(g, f.download, docket.Name("download"), docket.Affinity("file"))
	docket.Register1(g, f.process, docket.Name("process"), docket.Affinity("file"))
	docket.Register1(g, f.upload, docket.Name("upload"), docket.Affinity("file"))
	return g
}

// months are the files in the inbox: how many days each has, and the unit
// price that month, in cents.
var months = []struct {
	name        string
	days, cents int
}{{"jan.csv", 31, 250}, {"feb.csv", 28, 300}, {"mar.csv", 31, 199}}

// hangs is the file whose processing hangs on the first worker.
const hangs = "mar.csv"

// sales is a day's line of a month's file: day, units sold, unit price in
// cents.
func sales(day, cents int) string { return fmt.Sprintf("%d,%d,%d\n", day, day%7+1, cents) }

// fillInbox creates the remote store with the month files in its inbox.
func fillInbox(remote string) error {
	for _, d := range []string{"inbox", "outbox"} {
		if err := os.MkdirAll(filepath.Join(remote, d), 0o755); err != nil {
			return err
		}
	}
	for _, m := range months {
		var b strings.Builder
		for day := 1; day <= m.days; day++ {
			b.WriteString(sales(day, m.cents))
		}
		if err := os.WriteFile(filepath.Join(remote, "inbox", m.name), []byte(b.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// run plays the story on the store at storeURL, with the remote store and
// the workers' disks under dir.
func run(ctx context.Context, w io.Writer, storeURL, dir string) error {
	out := &lockedWriter{w: w}
	remote := filepath.Join(dir, "remote")
	if err := fillInbox(remote); err != nil {
		return err
	}
	g := newGraph(&Files{})
	// This process only starts and inspects executions (Workers: -1).
	client, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}, Workers: -1})
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Fprintf(out, "store: %s\n", redact(storeURL))

	w1, err := startWorker(out, "worker-1", storeURL, remote, dir, hangs)
	if err != nil {
		return err
	}
	defer w1.kill()

	// Execution IDs are the file names, under a batch name of their own
	// so that a rerun on the same store starts new executions.
	batch := "files-" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	id := func(name string) string { return batch + "/" + name }
	handles := map[string]*docket.Handle[Uploaded]{}
	for _, m := range months {
		h, err := docket.Start[Uploaded](ctx, client, g, id(m.name), RemoteFile(m.name))
		if err != nil {
			return err
		}
		handles[m.name] = h
	}
	fmt.Fprintf(out, "client    started %d executions (%s/...)\n", len(months), batch)

	// Wait for the other files to be done and the hanging one to be stuck
	// in process, then kill its worker.
	err = waitFor(ctx, 30*time.Second, func() (bool, error) {
		for _, m := range months {
			d, err := client.Describe(ctx, id(m.name))
			if err != nil {
				return false, err
			}
			st := stepStatus(d)
			if m.name == hangs && (st["download"] != "done" || st["process"] != "running") ||
				m.name != hangs && d.Status != "completed" {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s to hang: %w", hangs, err)
	}
	d, err := client.Describe(ctx, id(hangs))
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "client    %s: %s\n", hangs, steps(d))
	fmt.Fprintf(out, "client    killing worker-1 (SIGKILL) and deleting its disk\n")
	killed := time.Now()
	w1.kill()
	if err := os.RemoveAll(w1.disk); err != nil {
		return err
	}

	w2, err := startWorker(out, "worker-2", storeURL, remote, dir, "")
	if err != nil {
		return err
	}
	defer w2.kill()
	if _, err := handles[hangs].Result(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "client    %s done %s after the kill (the lease is %s)\n", hangs, time.Since(killed).Round(10*time.Millisecond), lease)
	if err := w2.stop(); err != nil {
		return fmt.Errorf("worker-2: %w", err)
	}

	fmt.Fprintln(out, "\nwhich worker ran what (Describe):")
	for _, m := range months {
		u, err := handles[m.name].Result(ctx)
		if err != nil {
			return err
		}
		d, err := client.Describe(ctx, id(m.name))
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s  %s  => %s: %d days, %d units, %d.%02d\n",
			m.name, steps(d), filepath.Base(u.URL), u.Days, u.Units, u.Cents/100, u.Cents%100)
	}
	log, err := os.ReadFile(filepath.Join(remote, "access.log"))
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nthe remote store's access log:")
	for line := range strings.Lines(string(log)) {
		fmt.Fprint(out, "  ", line)
	}
	return nil
}

// stepStatus maps each step of d to its status.
func stepStatus(d *docket.Description) map[string]string {
	m := map[string]string{}
	for _, s := range d.Steps {
		m[s.Name] = s.Status
	}
	return m
}

// steps says, for each step of d, its status and worker.
func steps(d *docket.Description) string {
	var parts []string
	for _, s := range d.Steps {
		part := s.Name + " " + s.Status
		if s.Worker != "" {
			part += " on " + s.Worker
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, ", ")
}

// waitFor calls cond every 20ms until it reports true, for up to limit.
func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// workerProc is a worker process: this program in worker mode.
type workerProc struct {
	name  string
	disk  string
	cmd   *exec.Cmd
	stdin io.Closer
	once  sync.Once
	err   error
}

// startWorker starts this program again as the worker name, with a new
// local disk under dir. Its output goes to out; it runs until its standard
// input is closed (stop) or it is killed.
func startWorker(out io.Writer, name, storeURL, remote, dir, hang string) (*workerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	disk, err := os.MkdirTemp(dir, name+"-disk-")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envWorker+"="+name, envStore+"="+storeURL, envRemote+"="+remote, envDisk+"="+disk, envHang+"="+hang)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return &workerProc{name: name, disk: disk, cmd: cmd, stdin: stdin}, nil
}

// kill kills the worker with SIGKILL: no deferred calls, no clean shutdown.
func (p *workerProc) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	})
}

// stop asks the worker to stop cleanly and waits for it.
func (p *workerProc) stop() error {
	p.once.Do(func() {
		p.stdin.Close()
		p.err = p.cmd.Wait()
	})
	return p.err
}

// worker is the worker mode: it runs the steps of whatever executions are
// in the store until its standard input closes.
func worker(name string) error {
	f := &Files{Worker: name, Remote: os.Getenv(envRemote), Disk: os.Getenv(envDisk), Hang: os.Getenv(envHang), Out: os.Stdout}
	// The engine's own warnings (such as taking a session over) go to the
	// output too, after the worker's name.
	logOut := &prefixWriter{prefix: fmt.Sprintf("%-9s ", name), w: os.Stdout}
	logger := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelWarn,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	eng, err := docket.Open(context.Background(), docket.Config{
		Store:        os.Getenv(envStore),
		Graphs:       []*docket.Graph{newGraph(f)},
		WorkerID:     name,
		Workers:      4,
		Lease:        lease,
		PollInterval: 50 * time.Millisecond,
		Logger:       logger,
	})
	if err != nil {
		return err
	}
	f.say("up, with local disk %s", f.Disk)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it, or dies
	return eng.Close()
}

// lockedWriter lets processes and goroutines share a writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// prefixWriter writes each line after a prefix.
type prefixWriter struct {
	prefix string
	w      io.Writer
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var buf strings.Builder
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		buf.WriteString(p.prefix + sc.Text() + "\n")
	}
	if _, err := io.WriteString(p.w, buf.String()); err != nil {
		return 0, err
	}
	return len(b), nil
}

// redact hides the password in a store URL.
func redact(u string) string {
	if p, err := url.Parse(u); err == nil && p.User != nil {
		return p.Redacted()
	}
	return u
}

func main() {
	if name := os.Getenv(envWorker); name != "" {
		if err := worker(name); err != nil {
			log.Fatalf("%s: %v", name, err)
		}
		return
	}
	storeURL := flag.String("store", "", "the store: a postgres:// URL, or sqlite:path (default: a SQLite file in a temporary directory)")
	flag.Parse()
	if err := mainErr(*storeURL); err != nil {
		log.Fatal(err)
	}
}

// mainErr runs the story in a temporary directory, removed at the end.
func mainErr(storeURL string) error {
	dir, err := os.MkdirTemp("", "fileprocessing-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if storeURL == "" {
		storeURL = "sqlite:" + filepath.Join(dir, "docket.db")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Stdout, storeURL, dir)
}
