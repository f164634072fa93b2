// Package dbosbench measures DBOS Transact for Go on the same workload and the
// same PostgreSQL server as docket's BenchmarkPostgresChainLocal, so that
// the two can be compared in one sitting: the host's speed varies too much
// between sittings for figures taken on different days to be compared.
//
// It is a module of its own, so that docket's module does not depend on
// DBOS, and it drives the workflows with docket's own load generator
// (internal/loadgen), as docket's benchmark drives executions. Run it from
// this directory:
//
//	DOCKET_BENCH_RATE=750 go test -run '^$' -bench 'DBOSChainLocal/workers=2$' -benchtime 7500x
//
// DOCKET_BENCH_URL names the database (by default
// postgres://postgres@127.0.0.1:5432/postgres); each run makes a schema of
// its own there and drops it afterwards.
package dbosbench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
	"github.com/docket-run/docket/internal/loadgen"
	"github.com/jackc/pgx/v5"
)

// childEnv makes the test binary a starter process: "url schema n rate conc".
const childEnv = "DBOS_BENCH_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		starter(spec)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// chain is the 3-step chain: each step adds one to its input.
func chain(ctx dbos.Context, in int) (int, error) {
	v := in
	for _, name := range []string{"a", "b", "c"} {
		next, err := dbos.RunAsStep(ctx, func(context.Context) (int, error) { return v + 1, nil }, dbos.WithStepName(name))
		if err != nil {
			return 0, err
		}
		v = next
	}
	return v, nil
}

// starter launches DBOS in this process, warms up, says "ready", waits for
// a line on stdin, runs n chains (started at rate per second, or with conc
// in flight when rate is 0) and writes their latencies in microseconds on
// one line.
func starter(spec string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "dbos starter:", err)
		os.Exit(2)
	}
	f := strings.Fields(spec)
	if len(f) != 5 {
		fail(fmt.Errorf("bad spec %q", spec))
	}
	n, _ := strconv.Atoi(f[2])
	rate, _ := strconv.ParseFloat(f[3], 64)
	conc, _ := strconv.Atoi(f[4])
	ctx, err := dbos.NewContext(context.Background(), dbos.Config{
		AppName:        "chainbench",
		DatabaseURL:    f[0],
		DatabaseSchema: f[1],
		ExecutorID:     fmt.Sprint("starter-", os.Getpid()),
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fail(err)
	}
	dbos.RegisterWorkflow(ctx, chain)
	if err := dbos.Launch(ctx); err != nil {
		fail(err)
	}
	defer dbos.Shutdown(ctx, 5*time.Second)
	run := func(i int) error {
		h, err := dbos.RunWorkflow(ctx, chain, i)
		if err != nil {
			return err
		}
		got, err := h.GetResult()
		if err != nil {
			return err
		}
		if got != i+3 {
			return fmt.Errorf("chain(%d) = %d, want %d", i, got, i+3)
		}
		return nil
	}
	if _, err := loadgen.InFlight(100, 8, run); err != nil {
		fail(err)
	}
	if err := loadgen.Ready(); err != nil {
		fail(err)
	}
	var lat []time.Duration
	if rate > 0 {
		lat, err = loadgen.AtRate(n, rate, run)
	} else {
		lat, err = loadgen.InFlight(n, conc, run)
	}
	if err != nil {
		fail(err)
	}
	if err := loadgen.WriteLatencies(os.Stdout, lat); err != nil {
		fail(err)
	}
}

// BenchmarkDBOSChainLocal runs the 3-step chain in 1 and 2 DBOS processes
// that each start the workflows they run, as BenchmarkPostgresChainLocal
// does for docket, with the same knobs: DOCKET_BENCH_RATE starts them at
// that many per second over all processes (an open loop), otherwise
// DOCKET_BENCH_CONC (64 by default) are in flight over all processes.
func BenchmarkDBOSChainLocal(b *testing.B) {
	url := os.Getenv("DOCKET_BENCH_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	rate := loadgen.EnvFloat("DOCKET_BENCH_RATE", 0)
	conc := loadgen.EnvInt("DOCKET_BENCH_CONC", 64)
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	for _, procs := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", procs), func(b *testing.B) {
			schema := fmt.Sprintf("dbos_bench_%d_%d", os.Getpid(), procs)
			b.Cleanup(func() { dropSchema(b, url, schema) })
			// One at a time, so that the first migrates the schema alone.
			var envs []string
			for k := range procs {
				envs = append(envs, fmt.Sprintf("%s=%s %s %d %g %d", childEnv, url, schema,
					loadgen.Share(b.N, procs, k), rate/float64(procs), max(1, (conc+k)/procs)))
			}
			lat, elapsed := loadgen.RunAll(b, exe, envs, nil)
			loadgen.ReportRate(b, b.N, elapsed, lat)
		})
	}
}

// dropSchema removes a run's schema.
func dropSchema(b *testing.B, url, schema string) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		b.Error(err)
		return
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		b.Error(err)
	}
}
