package postgres

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/internal/loadgen"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// BenchmarkCommitShape measures what the chain benchmark's commits cost
// without Docket: executions that each make four commits one after the
// other (as a 3-step chain does: the start and three step commits), grouped
// the way the store groups Updates (this package's coalescer, one leader
// per worker process, each on a connection of its own), but with no engine,
// no store code and stand-in tables. Executions are offered at
// DOCKET_BENCH_RATE a second (1,500 unless set) over DOCKET_BENCH_LEADERS
// leaders (2 unless set), and each one's latency runs from when it was due
// to its fourth commit.
//
// Its shapes bound the chain benchmark from below: "bare" commits one row
// insert per execution in each transaction, the least a durable commit of
// a step's outcome can be; "step" sends the statements of a step commit
// that the store speculates on (BEGIN, the advisory locks, a step insert,
// a task update and the execution's progress that each check the row
// versions kept, COMMIT), each merged over the group as the store merges
// them; "writes" is "step" without the locks and the checks; "guarded" is
// the step commit as the store sent it before its writes checked versions:
// the locks, then a guard that locks the tasks and compares versions, then
// the writes. BENCHMARKS.md compares them with the chain benchmark.
func BenchmarkCommitShape(b *testing.B) {
	for _, sh := range commitShapes {
		b.Run(sh.name, func(b *testing.B) { benchShape(b, sh.stmts) })
	}
}

// commitShapes are the transactions that BenchmarkCommitShape compares.
// Each statement takes $1, the group's execution IDs, and $2, the number
// of each one's commit (0 to 3).
var commitShapes = []struct {
	name  string
	stmts []string
}{
	{"bare", []string{
		`INSERT INTO shape_steps (exec, name, output) SELECT u.id, u.n, '\x0a0b0c0d'::bytea FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
	}},
	{"writes", []string{
		`INSERT INTO shape_steps (exec, name, output) SELECT u.id, u.n, '\x0a0b0c0d'::bytea FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
		`UPDATE shape_tasks AS t SET step = u.n + 1, ready_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n) WHERE t.exec = u.id`,
		`UPDATE shape_executions AS e SET seq = u.n, updated_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n) WHERE e.id = u.id`,
	}},
	{"step", []string{
		`SELECT (SELECT count(pg_advisory_xact_lock(hashtext(id))) FROM unnest($1::text[]) AS id), cardinality($2::bigint[]),
			pg_current_xact_id()::xid::text`,
		`INSERT INTO shape_steps (exec, name, output) SELECT u.id, u.n, '\x0a0b0c0d'::bytea FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
		checkedShape(`UPDATE shape_tasks AS t SET step = u.n + 1, ready_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
			WHERE t.exec = u.id AND t.xmin::text <> ''`),
		checkedShape(`UPDATE shape_executions AS e SET seq = u.n, updated_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
			WHERE e.id = u.id AND e.xmin::text <> ''`),
	}},
	{"step-one", []string{oneStatement(
		`SELECT count(pg_advisory_xact_lock(hashtext(id))) AS n, pg_current_xact_id()::xid::text AS x FROM unnest($1::text[]) AS id`,
		`INSERT INTO shape_steps (exec, name, output) SELECT u.id, u.n, '\x0a0b0c0d'::bytea FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
		`UPDATE shape_tasks AS t SET step = u.n + 1, ready_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
			WHERE t.exec = u.id AND t.xmin::text <> ''`,
		`UPDATE shape_executions AS e SET seq = u.n, updated_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n)
			WHERE e.id = u.id AND e.xmin::text <> ''`,
	)}},
	{"guarded", []string{
		`SELECT (SELECT count(pg_advisory_xact_lock(hashtext(id))) FROM unnest($1::text[]) AS id), cardinality($2::bigint[])`,
		`WITH t AS MATERIALIZED (SELECT exec, xmin FROM shape_tasks WHERE exec = ANY($1::text[]) ORDER BY id FOR UPDATE)
		SELECT 1 / (CASE WHEN bool_and(u.n >= 0 AND (SELECT xmin::text FROM shape_executions WHERE id = u.id) <> ''
			AND (SELECT count(*) FROM t WHERE t.exec = u.id) = 1) THEN 1 ELSE 0 END), pg_current_xact_id()::xid::text
		FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
		`INSERT INTO shape_steps (exec, name, output) SELECT u.id, u.n, '\x0a0b0c0d'::bytea FROM unnest($1::text[], $2::bigint[]) AS u(id, n)`,
		`UPDATE shape_tasks AS t SET step = u.n + 1, ready_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n) WHERE t.exec = u.id`,
		`UPDATE shape_executions AS e SET seq = u.n, updated_at = now() FROM unnest($1::text[], $2::bigint[]) AS u(id, n) WHERE e.id = u.id`,
	}},
}

// oneStatement is "step" sent as one statement: the locks and the three
// writes as data-modifying CTEs, each write checked to have written a row
// per execution. It measures what sending a step commit's writes as one
// statement would save; it is not a drop-in form of the store's commit,
// whose writes must see what committed before the locks were granted, while
// one statement's snapshot is taken before them.
func oneStatement(lock, insert, task, exec string) string {
	return `WITH l AS MATERIALIZED (` + lock + `),
		s AS (` + insert + ` RETURNING 1),
		t AS (` + task + ` RETURNING 1),
		e AS (` + exec + ` RETURNING 1)
	SELECT (SELECT n FROM l), (SELECT x FROM l),
		1 / (CASE WHEN (SELECT count(*) FROM s) = cardinality($1::text[]) AND (SELECT count(*) FROM t) = cardinality($1::text[])
			AND (SELECT count(*) FROM e) = cardinality($1::text[]) THEN 1 ELSE 0 END)`
}

// checkedShape wraps a merged update as the store's checked writes are
// wrapped (see everyRow): it fails unless it wrote a row per execution.
func checkedShape(update string) string {
	return everyRow(update, "text")
}

// shapeCommit is one commit of one execution in BenchmarkCommitShape.
type shapeCommit struct {
	id  string
	n   int64
	err error
}

func benchShape(b *testing.B, stmts []string) {
	ctx := context.Background()
	// Planned once, as the store's connections plan (see Open).
	url := pgtest.WithParam(b, pgtest.URL(b), "plan_cache_mode", "force_generic_plan")
	rate := loadgen.EnvFloat("DOCKET_BENCH_RATE", 1500)
	leaders := loadgen.EnvInt("DOCKET_BENCH_LEADERS", 2)
	setup := pgtest.Connect(b, url)
	for _, sql := range []string{
		`CREATE TABLE shape_executions (id text PRIMARY KEY, seq bigint NOT NULL, updated_at timestamptz NOT NULL) WITH (fillfactor = 80)`,
		`CREATE TABLE shape_tasks (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, exec text NOT NULL,
			step bigint NOT NULL, ready_at timestamptz NOT NULL)`,
		`CREATE INDEX ON shape_tasks (exec, id)`,
		`CREATE TABLE shape_steps (exec text NOT NULL, name bigint NOT NULL, output bytea, PRIMARY KEY (exec, name))`,
		fmt.Sprintf(`INSERT INTO shape_executions SELECT 'e' || g, 0, now() FROM generate_series(0, %d) AS g`, b.N),
		fmt.Sprintf(`INSERT INTO shape_tasks (exec, step, ready_at) SELECT 'e' || g, 0, now() FROM generate_series(0, %d) AS g`, b.N),
		`ANALYZE`,
	} {
		if _, err := setup.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}

	groups := make([]*coalescer[*shapeCommit], leaders)
	for i := range groups {
		conn := pgtest.Connect(b, url)
		groups[i] = &coalescer[*shapeCommit]{maxLeaders: 1, pick: pickShape, run: func(batch []*call[*shapeCommit]) []*call[*shapeCommit] {
			runShape(ctx, conn, stmts, batch)
			return nil
		}}
	}
	b.ResetTimer()
	t0 := time.Now()
	lat, err := loadgen.AtRate(b.N, rate, func(i int) error {
		g := groups[i%leaders]
		for n := range int64(4) {
			c := &shapeCommit{id: "e" + strconv.Itoa(i), n: n}
			g.do(ctx, c)
			if c.err != nil {
				return c.err
			}
		}
		return nil
	})
	elapsed := time.Since(t0)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	loadgen.ReportRate(b, b.N, elapsed, lat)
	var calls, batches int64
	for _, g := range groups {
		calls += g.counts.calls.Load()
		batches += g.counts.batches.Load()
	}
	b.ReportMetric(float64(calls)/float64(batches), "group")
}

// pickShape takes up to DefaultMaxGroup commits (each of its own
// execution: an execution's commits come one after the other).
func pickShape(first *call[*shapeCommit], queue []*call[*shapeCommit]) (batch, rest []*call[*shapeCommit]) {
	n := min(len(queue), DefaultMaxGroup-1)
	return append([]*call[*shapeCommit]{first}, queue[:n]...), queue[n:]
}

// runShape commits batch in one transaction of stmts, in one round trip.
func runShape(ctx context.Context, conn *pgx.Conn, stmts []string, batch []*call[*shapeCommit]) {
	ids, ns := make([]string, len(batch)), make([]int64, len(batch))
	for i, c := range batch {
		ids[i], ns[i] = c.req.id, c.req.n
	}
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	for _, sql := range stmts {
		b.Queue(sql, ids, ns)
	}
	b.Queue("COMMIT")
	err := conn.SendBatch(ctx, b).Close()
	for _, c := range batch {
		c.req.err = err
	}
}
