// Cluster runs several worker processes on one database, with one command:
//
//	go run ./examples/cluster
//	go run ./examples/cluster --workers 5 --orders 1000
//	go run ./examples/cluster --store 'postgres://docket@db.internal:5432/docket'
//
// The program starts the workers — itself again, in worker mode, each
// named by its Config.WorkerID — then, as a client that runs nothing
// itself (Workers: -1), starts a batch of order executions, waits for them
// all and reports how many steps each worker ran and the throughput.
//
// An order's graph fans out: after itemize, three branches run side by
// side — price, a docket.Map over the order's lines followed by total;
// score, a fraud model on a GPU, routed with docket.Queue("gpu"); and
// settle, which waits for the payment to settle with a durable sleep (its
// goroutine ends; a timer task resumes it on whichever worker claims it) —
// and confirm joins them. Every worker serves the default queue, and only
// worker-1 also serves "gpu" (Config.Queues), so every score step runs on
// worker-1 while the other steps go to whichever worker claims them first.
// Each worker runs with GOMAXPROCS set to its share of the machine's cores
// (unless GOMAXPROCS is set), as worker processes that share a machine
// should.
//
// The store is a PostgreSQL URL (--store, or $DOCKET_STORE), by default the
// local server postgres://postgres@127.0.0.1:5432/postgres. Workers claim
// tasks with FOR UPDATE SKIP LOCKED and wake each other with
// LISTEN/NOTIFY, so they could as well run on different machines. When the
// default server cannot be reached, the program says so and uses a SQLite
// file instead: that works too, for processes on one machine only, as
// they share the file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store"
)

// DefaultStore is the PostgreSQL server used when none is named.
const DefaultStore = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// The environment of a worker process.
const (
	envWorker = "CLUSTER_WORKER" // the worker's name: this process is a worker
	envStore  = "CLUSTER_STORE"  // the store URL
	envGPU    = "CLUSTER_GPU"    // "true": the worker also serves the gpu queue
)

const (
	workersEach  = 8                      // default-queue tasks a worker runs at once
	gpusEach     = 2                      // gpu tasks the gpu worker runs at once
	settleTime   = 300 * time.Millisecond // the durable sleep of every order
	approveBelow = 80                     // the highest risk score approved, plus one
)

// prices are the shop's prices in cents, by SKU.
var prices = map[string]int{"tea": 450, "mug": 900, "pot": 2500, "cup": 350, "tin": 600}

var skus = []string{"tea", "mug", "pot", "cup", "tin"}

// What the steps pass on.
type (
	// Order is the input of an execution.
	Order struct {
		ID    string
		Lines []Line
	}
	Line struct {
		SKU string
		Qty int
	}
	// PricedLine is a line with its price (the Map step makes []PricedLine).
	PricedLine struct {
		SKU   string
		Cents int
	}
	Total struct{ Cents int }
	// Risk is the fraud model's score, 0 to 99.
	Risk    struct{ Score int }
	Settled struct{ At time.Time }
	// Receipt is the result.
	Receipt struct {
		Order    string
		Items    int
		Cents    int
		Risk     int
		Approved bool
	}
)

// makeOrder is the i-th order of a batch: one to four lines.
func makeOrder(batch string, i int) *Order {
	o := &Order{ID: fmt.Sprintf("%s/order-%03d", batch, i)}
	for k := range 1 + i%4 {
		o.Lines = append(o.Lines, Line{SKU: skus[(i+k)%len(skus)], Qty: 1 + (i*(k+1))%3})
	}
	return o
}

// work stands for a step's real work.
func work(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func itemize(ctx context.Context, o *Order) ([]Line, error) {
	if len(o.Lines) == 0 {
		return nil, docket.NonRetryable(fmt.Errorf("order %s has no lines", o.ID))
	}
	return o.Lines, work(ctx, 2*time.Millisecond)
}

func price(ctx context.Context, l Line) (PricedLine, error) {
	cents, ok := prices[l.SKU]
	if !ok {
		return PricedLine{}, docket.NonRetryable(fmt.Errorf("unknown SKU %q", l.SKU))
	}
	return PricedLine{SKU: l.SKU, Cents: cents * l.Qty}, work(ctx, time.Millisecond)
}

func total(ctx context.Context, lines []PricedLine) (Total, error) {
	var t Total
	for _, l := range lines {
		t.Cents += l.Cents
	}
	return t, work(ctx, time.Millisecond)
}

// score is the fraud model: it needs a GPU, so it runs on the gpu queue.
func score(ctx context.Context, o *Order) (Risk, error) {
	h := 0
	for _, c := range o.ID {
		h = (h*31 + int(c)) % 100003
	}
	return Risk{Score: h % 100}, work(ctx, 4*time.Millisecond)
}

// settle waits for the payment to settle: a durable sleep.
func settle(ctx context.Context, o *Order) (Settled, error) {
	if err := docket.Sleep(ctx, settleTime); err != nil {
		return Settled{}, err
	}
	return Settled{At: docket.Now(ctx)}, nil
}

func confirm(ctx context.Context, o *Order, t Total, r Risk, _ Settled) (Receipt, error) {
	items := 0
	for _, l := range o.Lines {
		items += l.Qty
	}
	return Receipt{Order: o.ID, Items: items, Cents: t.Cents, Risk: r.Score, Approved: r.Score < approveBelow},
		work(ctx, time.Millisecond)
}

func newGraph() *docket.Graph {
	g := docket.NewGraph("order", docket.Input[*Order]())
	docket.Register1(g, itemize, docket.Name("itemize"))
	docket.Map(g, price, docket.Name("price"), docket.Concurrency(4))
	docket.Register1(g, total, docket.Name("total"))
	docket.Register1(g, score, docket.Name("score"), docket.Queue("gpu"))
	docket.Register1(g, settle, docket.Name("settle"))
	docket.Register4(g, confirm, docket.Name("confirm"))
	return g
}

// workerName is the name of worker i (from 0); worker-1 serves the gpu queue.
func workerName(i int) string { return "worker-" + strconv.Itoa(i+1) }

// run starts workers worker processes on the store at storeURL, runs a
// batch of orders executions on them and reports who ran what.
func run(ctx context.Context, w io.Writer, storeURL string, workers, orders int) error {
	out := &lockedWriter{w: w}
	g := newGraph()
	// The client opens the store first, so the schema is made before the
	// workers start. It runs no tasks.
	client, err := docket.Open(ctx, docket.Config{Store: storeURL, Graphs: []*docket.Graph{g}, Workers: -1})
	if err != nil {
		return err
	}
	defer client.Close()

	begin := time.Now()
	procs := make([]*workerProc, workers)
	defer func() {
		for _, p := range procs {
			if p != nil {
				p.kill()
			}
		}
	}()
	for i := range procs {
		if procs[i], err = startWorker(out, workerName(i), storeURL, i == 0, coresEach(workers)); err != nil {
			return err
		}
	}
	for _, p := range procs {
		if err := p.waitReady(ctx, 30*time.Second); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "%d worker processes up in %s\n", workers, time.Since(begin).Round(time.Millisecond))

	batch := "cluster-" + strconv.FormatInt(time.Now().UnixMilli(), 36)
	start := time.Now()
	handles := make([]*docket.Handle[Receipt], orders)
	starters, sctx := errgroup.WithContext(ctx)
	starters.SetLimit(8) // Starts at once
	for i := range handles {
		starters.Go(func() (err error) {
			o := makeOrder(batch, i)
			for {
				handles[i], err = docket.Start[Receipt](sctx, client, g, o.ID, o)
				// A SQLite file that several processes write can stay locked
				// past its busy timeout under load: nothing was written, so
				// the Start is simply tried again.
				if !errors.Is(err, store.ErrBusy) || sctx.Err() != nil {
					return err
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
	if err := starters.Wait(); err != nil {
		return err
	}
	fmt.Fprintf(out, "started %d orders (%s/...) in %s\n", orders, batch, time.Since(start).Round(time.Millisecond))
	approved := 0
	for _, h := range handles {
		r, err := h.Result(ctx)
		if err != nil {
			return err
		}
		if r.Approved {
			approved++
		}
	}
	elapsed := time.Since(start)

	// Who ran what, from the store.
	type tally struct{ steps, gpu, confirmed int }
	by := map[string]*tally{}
	steps := 0
	for _, h := range handles {
		d, err := client.Describe(ctx, h.ID())
		if err != nil {
			return err
		}
		for _, s := range d.Steps {
			t := by[s.Worker]
			if t == nil {
				t = &tally{}
				by[s.Worker] = t
			}
			t.steps++
			steps++
			switch s.Name {
			case "score":
				t.gpu++
			case "confirm":
				t.confirmed++
			}
		}
	}
	fmt.Fprintf(out, "%d orders done (%d approved) in %s: %.0f orders/s, %.0f steps/s\n",
		orders, approved, elapsed.Round(time.Millisecond), float64(orders)/elapsed.Seconds(), float64(steps)/elapsed.Seconds())
	names := make([]string, 0, len(by))
	for name := range by {
		names = append(names, name)
	}
	slices.Sort(names)
	fmt.Fprintf(out, "\n%-10s %-13s %6s %11s %9s\n", "worker", "queues", "steps", "score (gpu)", "confirmed")
	for _, name := range names {
		queues := "default"
		if name == workerName(0) {
			queues += ", gpu"
		}
		t := by[name]
		fmt.Fprintf(out, "%-10s %-13s %6d %11d %9d\n", name, queues, t.steps, t.gpu, t.confirmed)
	}
	fmt.Fprintln(out)

	for _, p := range procs {
		if err := p.stop(); err != nil {
			return fmt.Errorf("%s: %w", p.name, err)
		}
	}
	return nil
}

// readyLine is what a worker prints once its engine is open.
const readyLine = " up, serving "

// workerProc is a worker process: this program in worker mode.
type workerProc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.Closer
	out    *watchWriter
	exited chan struct{} // closed when the process has ended
	err    error         // how it ended
	once   sync.Once
}

// coresEach is the GOMAXPROCS of each of n worker processes on this
// machine: their share of its cores, at least one. Go processes that share
// the cores, each running as many threads as there are cores, spend a good
// part of their CPU waking threads to look for work that is not there (see
// the README's cluster section). 0 when GOMAXPROCS is set already: the
// workers then inherit it.
func coresEach(n int) int {
	if os.Getenv("GOMAXPROCS") != "" {
		return 0
	}
	return max(1, runtime.NumCPU()/n)
}

// startWorker starts this program again as a worker, with GOMAXPROCS set to
// procs unless it is 0. Its output goes to out; it runs until its standard
// input is closed (stop) or it is killed.
func startWorker(out io.Writer, name, storeURL string, gpu bool, procs int) (*workerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envWorker+"="+name, envStore+"="+storeURL, envGPU+"="+strconv.FormatBool(gpu))
	if procs > 0 {
		cmd.Env = append(cmd.Env, "GOMAXPROCS="+strconv.Itoa(procs))
	}
	p := &workerProc{name: name, cmd: cmd, out: &watchWriter{w: out, mark: readyLine, seen: make(chan struct{})}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, os.Stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// waitReady waits until the worker says it is up.
func (p *workerProc) waitReady(ctx context.Context, limit time.Duration) error {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.out.seen:
		return nil
	case <-p.exited:
		return fmt.Errorf("%s ended before it was up: %v", p.name, p.err)
	case <-t.C:
		return fmt.Errorf("%s was not up after %s", p.name, limit)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// stop asks the worker to stop cleanly and waits for it.
func (p *workerProc) stop() error {
	p.once.Do(func() { p.stdin.Close() })
	<-p.exited
	return p.err
}

// kill ends the worker at once, unless it has ended.
func (p *workerProc) kill() {
	p.once.Do(func() { _ = p.cmd.Process.Kill() })
	<-p.exited
}

// worker is the worker mode: it runs tasks of the store's executions until
// its standard input closes.
func worker(name string) error {
	queues := map[string]int{}
	serving := fmt.Sprintf("default ×%d", workersEach)
	if os.Getenv(envGPU) == "true" {
		queues["gpu"] = gpusEach
		serving += fmt.Sprintf(", gpu ×%d", gpusEach)
	}
	eng, err := docket.Open(context.Background(), docket.Config{
		Store:    os.Getenv(envStore),
		Graphs:   []*docket.Graph{newGraph()},
		WorkerID: name,
		Workers:  workersEach,
		Queues:   queues,
		// Processes on one SQLite file learn of each other's work only by
		// polling, so they poll often; PostgreSQL notifies them at once.
		PollInterval: 20 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	fmt.Printf("%-10s%s%s (pid %d, GOMAXPROCS %d)\n", name, readyLine, serving, os.Getpid(), runtime.GOMAXPROCS(0))
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

// watchWriter passes a process's output on, and closes seen once it has
// written mark (each of a worker's lines reaches it in one write).
type watchWriter struct {
	w    io.Writer
	mark string
	seen chan struct{}
	once sync.Once
}

func (c *watchWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if strings.Contains(string(p), c.mark) {
		c.once.Do(func() { close(c.seen) })
	}
	return n, err
}

// chooseStore returns the store to use: the one named; or else the
// default PostgreSQL server def if it answers; or else a SQLite file in dir.
func chooseStore(ctx context.Context, w io.Writer, named, def, dir string) (string, error) {
	if named != "" {
		fmt.Fprintf(w, "store: %s\n", redact(named))
		return named, nil
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := docket.OpenStore(pctx, def)
	if err == nil {
		fmt.Fprintf(w, "store: %s (PostgreSQL: the workers could as well be on other machines)\n", redact(def))
		return def, st.Close()
	}
	if ctx.Err() != nil {
		return "", ctx.Err()
	}
	db := "sqlite:" + filepath.Join(dir, "cluster.db")
	fmt.Fprintf(w, "PostgreSQL at %s is unreachable: %v\n", redact(def), err)
	fmt.Fprintf(w, "falling back to %s: a SQLite file is shared by processes on this one machine only;\n", db)
	fmt.Fprintf(w, "name a PostgreSQL server with --store or DOCKET_STORE to run workers on several machines\n")
	return db, nil
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
	storeURL := flag.String("store", os.Getenv("DOCKET_STORE"), "the store: a postgres:// URL (or sqlite:path); default $DOCKET_STORE, else "+DefaultStore)
	workers := flag.Int("workers", 3, "worker processes to start")
	orders := flag.Int("orders", 200, "orders to run")
	flag.Parse()
	if *workers < 1 || *orders < 1 {
		log.Fatal("--workers and --orders must be at least 1")
	}
	if err := mainErr(*storeURL, *workers, *orders); err != nil {
		log.Fatal(err)
	}
}

func mainErr(named string, workers, orders int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "docket-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	storeURL, err := chooseStore(ctx, os.Stdout, named, DefaultStore, dir)
	if err != nil {
		return err
	}
	err = run(ctx, os.Stdout, storeURL, workers, orders)
	if errors.Is(err, context.Canceled) {
		return errors.New("interrupted")
	}
	return err
}
