package docket_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/internal/loadgen"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// Benchmarks of a PostgreSQL cluster: worker processes (this test binary
// re-executed) on one database, driven by a client engine in the
// benchmark's process.

const benchWorkerEnv = "DOCKET_BENCH_WORKER"

type (
	BenchIn   struct{ N int }
	BenchA    int
	BenchB    int
	BenchOut  int
	BenchPing struct{ N int }
)

// benchGraphs are the 3-step chain and a step that waits for a signal.
func benchGraphs() []*docket.Graph {
	chain := docket.NewGraph("bench-chain", docket.Input[BenchIn]())
	docket.Register1(chain, func(_ context.Context, in BenchIn) (BenchA, error) { return BenchA(in.N), nil }, docket.Name("a"))
	docket.Register1(chain, func(_ context.Context, a BenchA) (BenchB, error) { return BenchB(a + 1), nil }, docket.Name("b"))
	docket.Register1(chain, func(_ context.Context, v BenchB) (BenchOut, error) { return BenchOut(v * 2), nil }, docket.Name("c"))
	wait := docket.NewGraph("bench-wait", docket.Input[BenchIn]())
	docket.Register1(wait, func(ctx context.Context, in BenchIn) (BenchOut, error) {
		p, err := docket.Receive[BenchPing](ctx, "ping")
		return BenchOut(p.N), err
	}, docket.Name("wait"))
	return []*docket.Graph{chain, wait}
}

// benchWorker is a worker process: DOCKET_BENCH_WORKER is "url workers".
func benchWorker(spec string) {
	url, n, _ := strings.Cut(spec, " ")
	workers, _ := strconv.Atoi(n)
	eng, err := docket.Open(context.Background(), docket.Config{Store: url, Graphs: benchGraphs(), Workers: workers})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench worker:", err)
		os.Exit(2)
	}
	defer eng.Close()
	select {}
}

// benchURL is a fresh schema's URL with the connection parameters of
// DOCKET_BENCH_PARAMS ("k=v k=v", e.g. "synchronous_commit=off") and the
// pool size of DOCKET_BENCH_POOL.
func benchURL(b *testing.B) string {
	u := pgtest.URL(b)
	for _, kv := range strings.Fields(os.Getenv("DOCKET_BENCH_PARAMS")) {
		k, v, _ := strings.Cut(kv, "=")
		u = pgtest.WithParam(b, u, k, v)
	}
	if pool := os.Getenv("DOCKET_BENCH_POOL"); pool != "" {
		u = pgtest.WithParam(b, u, "pool_max_conns", pool)
	}
	return u
}

// benchCluster starts n worker processes on a fresh schema and returns a
// client engine on it.
func benchCluster(b *testing.B, n, workers int) (*docket.Engine, []*docket.Graph) {
	u := benchURL(b)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	graphs := benchGraphs()
	client, err := docket.Open(context.Background(), docket.Config{Store: u, Graphs: graphs, Workers: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { client.Close() })
	for range n {
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", benchWorkerEnv, u, workers))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	}
	// Warm up: every worker has connected once some executions went through.
	runChains(b, client, graphs[0], "warm", 200, 32)
	return client, graphs
}

// runChains runs n chain executions from conc client goroutines and
// returns each one's start-to-result latency.
func runChains(b *testing.B, eng *docket.Engine, g *docket.Graph, prefix string, n, conc int) []time.Duration {
	lat, err := chainLatencies(eng, g, prefix, n, conc)
	if err != nil {
		b.Fatal(err)
	}
	return lat
}

// runChain starts chain execution i and checks its result.
func runChain(ctx context.Context, eng *docket.Engine, g *docket.Graph, prefix string, i int) error {
	h, err := docket.Start[BenchOut](ctx, eng, g, fmt.Sprintf("%s-%d", prefix, i), BenchIn{i})
	if err != nil {
		return err
	}
	out, err := h.Result(ctx)
	if err == nil && int(out) != 2*(i+1) {
		err = fmt.Errorf("%s-%d: result %d", prefix, i, out)
	}
	return err
}

// chainLatencies runs n chain executions from conc goroutines and returns
// each one's start-to-result latency, or the first failure.
func chainLatencies(eng *docket.Engine, g *docket.Graph, prefix string, n, conc int) ([]time.Duration, error) {
	return loadgen.InFlight(n, conc, func(i int) error { return runChain(context.Background(), eng, g, prefix, i) })
}

// BenchmarkPostgresChain measures the 3-step chain on PostgreSQL with 1, 2
// and 4 worker processes: executions per second and start-to-result
// latency, with 64 executions in flight from a client engine
// (DOCKET_BENCH_CONC sets another number; 1 gives the latency of one
// execution at a time).
func BenchmarkPostgresChain(b *testing.B) {
	conc := loadgen.EnvInt("DOCKET_BENCH_CONC", 64)
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", procs), func(b *testing.B) {
			client, graphs := benchCluster(b, procs, max(64/procs, 8))
			b.ResetTimer()
			t0 := time.Now()
			lat := runChains(b, client, graphs[0], "run", b.N, conc)
			elapsed := time.Since(t0)
			b.StopTimer()
			loadgen.ReportRate(b, b.N, elapsed, lat)
			b.ReportMetric(float64(slices.Max(lat).Microseconds()), "max-µs")
		})
	}
}

// BenchmarkPostgresSignal measures signal-to-reaction across processes:
// from Signal in the client to the client's Result returning, for an
// execution suspended in Receive on a worker process. The wake-up of the
// worker and of the waiting client both come by LISTEN/NOTIFY.
func BenchmarkPostgresSignal(b *testing.B) {
	client, graphs := benchCluster(b, 1, 16)
	ctx := context.Background()
	hs := make([]*docket.Handle[BenchOut], b.N)
	for i := range b.N {
		h, err := docket.Start[BenchOut](ctx, client, graphs[1], fmt.Sprint("w-", i), BenchIn{i})
		if err != nil {
			b.Fatal(err)
		}
		hs[i] = h
	}
	for i := range b.N { // all suspended
		for {
			d, err := client.Describe(ctx, hs[i].ID())
			if err == nil && len(d.Waiting) == 1 {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		if err := client.Signal(ctx, hs[i].ID(), "ping", BenchPing{i}); err != nil {
			b.Fatal(err)
		}
		if out, err := hs[i].Result(ctx); err != nil || int(out) != i {
			b.Fatalf("%v %v", out, err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	loadgen.ReportPercentiles(b, lat)
}

// BenchmarkPostgresChainInProcess is BenchmarkPostgresChain with the
// workers in the benchmark's own process (and starts leased to them at
// once): the same work without the hop to another process, and easy to
// profile. DOCKET_BENCH_CONC sets the executions in flight, as there.
func BenchmarkPostgresChainInProcess(b *testing.B) {
	u := benchURL(b)
	graphs := benchGraphs()
	eng, err := docket.Open(context.Background(), docket.Config{Store: u, Graphs: graphs, Workers: 64})
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	runChains(b, eng, graphs[0], "warm", 200, 32)
	conc := loadgen.EnvInt("DOCKET_BENCH_CONC", 64)
	before := storeStats(eng)
	b.ResetTimer()
	t0 := time.Now()
	lat := runChains(b, eng, graphs[0], "run", b.N, conc)
	elapsed := time.Since(t0)
	b.StopTimer()
	loadgen.ReportRate(b, b.N, elapsed, lat)
	reportGroups(b, storeStats(eng).Sub(before), elapsed)
}

// storeStats returns the group commit figures of eng's PostgreSQL store.
func storeStats(eng *docket.Engine) postgres.Stats {
	if s, ok := eng.Store().(*postgres.Store); ok {
		return s.Stats()
	}
	return postgres.Stats{}
}

// reportGroups reports how Updates were grouped in the processes whose
// summed figures st are, over elapsed: the mean group, the mean time an
// Update waited for a leader and a group ran, how busy the leaders were
// (100% when every leader of every process ran groups all along), and the
// share of Updates whose writes checked the versions kept (no guard).
func reportGroups(b *testing.B, st postgres.Stats, elapsed time.Duration) {
	if st.Groups == 0 || st.Updates == 0 {
		return
	}
	b.ReportMetric(float64(st.Updates)/float64(st.Groups), "group")
	b.ReportMetric(float64(st.Waiting.Microseconds())/float64(st.Updates), "wait-µs")
	b.ReportMetric(float64(st.Running.Microseconds())/float64(st.Groups), "run-µs")
	b.ReportMetric(100*st.Running.Seconds()/(elapsed.Seconds()*float64(st.Leaders)), "leaders-busy-%")
	b.ReportMetric(100*float64(st.Checked)/float64(st.Updates), "checked-%")
}

const benchStarterEnv = "DOCKET_BENCH_STARTER"

// chainsAtRate starts n chain executions at rate per second (see
// loadgen.AtRate) and returns each one's latency from when it was due.
func chainsAtRate(eng *docket.Engine, g *docket.Graph, prefix string, n int, rate float64) ([]time.Duration, error) {
	return loadgen.AtRate(n, rate, func(i int) error { return runChain(context.Background(), eng, g, prefix, i) })
}

// benchProfileEnv names a directory where each starter process writes a
// CPU profile of its measured run (starter-PID.pprof) and, after it, its
// allocation profile (starter-PID.allocs).
const benchProfileEnv = "DOCKET_BENCH_PROFILE"

// profileCPU starts a CPU profile into path; stop ends it.
func profileCPU(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// writeAllocs writes the process's allocation profile (since it started,
// warm-up included) into path.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// benchStarter is a worker process that also starts the executions it
// runs, as an application serving requests does: DOCKET_BENCH_STARTER is
// "url workers conc n rate". It warms up, says "ready", waits for a line
// on stdin, runs n chains with conc in flight (or, when rate is not 0,
// started at rate per second, however many that puts in flight) and
// writes their latencies in microseconds on one line.
func benchStarter(spec string) {
	f := strings.Fields(spec)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "bench starter:", err)
		os.Exit(2)
	}
	if len(f) != 5 {
		fail(fmt.Errorf("bad spec %q", spec))
	}
	workers, _ := strconv.Atoi(f[1])
	conc, _ := strconv.Atoi(f[2])
	n, _ := strconv.Atoi(f[3])
	rate, _ := strconv.ParseFloat(f[4], 64)
	graphs := benchGraphs()
	eng, err := docket.Open(context.Background(), docket.Config{Store: f[0], Graphs: graphs, Workers: workers})
	if err != nil {
		fail(err)
	}
	defer eng.Close()
	prefix := fmt.Sprint("p", os.Getpid())
	if _, err := chainLatencies(eng, graphs[0], prefix+"-warm", 100, conc); err != nil {
		fail(err)
	}
	if err := loadgen.Ready(); err != nil {
		fail(err)
	}
	before := storeStats(eng)
	stopProfile := func() {}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		if stopProfile, err = profileCPU(fmt.Sprintf("%s/starter-%d.pprof", dir, os.Getpid())); err != nil {
			fail(err)
		}
	}
	var lat []time.Duration
	if rate > 0 {
		lat, err = chainsAtRate(eng, graphs[0], prefix, n, rate)
	} else {
		lat, err = chainLatencies(eng, graphs[0], prefix, n, conc)
	}
	stopProfile()
	if err != nil {
		fail(err)
	}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		if err := writeAllocs(fmt.Sprintf("%s/starter-%d.allocs", dir, os.Getpid())); err != nil {
			fail(err)
		}
	}
	st := storeStats(eng).Sub(before)
	if err := loadgen.WriteLatencies(os.Stdout, lat); err != nil {
		fail(err)
	}
	if _, err := fmt.Println(st.Updates, st.Groups, int64(st.Waiting), int64(st.Running), st.Leaders, st.Checked); err != nil {
		fail(err)
	}
}

// BenchmarkPostgresChainLocal measures the 3-step chain on PostgreSQL
// with 1, 2 and 4 worker processes that each start the executions they
// run (and lease them to themselves in the start's transaction), as
// applications that serve requests and run their graphs do: executions
// per second over all processes and start-to-result latency. 64
// executions are in flight over all processes (DOCKET_BENCH_CONC sets
// another number, divided among the processes). DOCKET_BENCH_RATE, when
// set, starts the executions at that many per second over all processes
// instead, however many that puts in flight (an open loop), and measures
// each one's latency from when it was due to start.
func BenchmarkPostgresChainLocal(b *testing.B) {
	conc := loadgen.EnvInt("DOCKET_BENCH_CONC", 64)
	rate := loadgen.EnvFloat("DOCKET_BENCH_RATE", 0)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, procs := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("workers=%d", procs), func(b *testing.B) {
			u := benchURL(b)
			var envs []string
			for k := range procs {
				c := max(1, (conc+k)/procs) // the remainder to the last ones
				workers := max(64/procs, 8, c)
				if rate > 0 {
					workers = 64
				}
				envs = append(envs, fmt.Sprintf("%s=%s %d %d %d %g", benchStarterEnv, u, workers, c,
					loadgen.Share(b.N, procs, k), rate/float64(procs)))
			}
			var st postgres.Stats
			lat, elapsed := loadgen.RunAll(b, exe, envs, func(s *loadgen.Starter) error {
				var gs postgres.Stats
				if _, err := fmt.Fscanln(s.Out, &gs.Updates, &gs.Groups, &gs.Waiting, &gs.Running, &gs.Leaders, &gs.Checked); err != nil {
					return fmt.Errorf("starter's group figures: %w", err)
				}
				st.Updates, st.Groups, st.Leaders = st.Updates+gs.Updates, st.Groups+gs.Groups, st.Leaders+gs.Leaders
				st.Checked += gs.Checked
				st.Waiting, st.Running = st.Waiting+gs.Waiting, st.Running+gs.Running
				return nil
			})
			loadgen.ReportRate(b, b.N, elapsed, lat)
			b.ReportMetric(float64(slices.Max(lat).Microseconds()), "max-µs")
			reportGroups(b, st, elapsed)
		})
	}
}
