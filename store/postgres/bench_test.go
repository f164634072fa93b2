package postgres_test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// modes runs a benchmark with the server's default durable commits
// (sync: each commit waits for its WAL fsync, which dominates on most
// disks) and with synchronous_commit=off (async: what is left is round
// trips and the server's work).
func modes(b *testing.B, bench func(*testing.B, *postgres.Store)) {
	for _, mode := range []struct{ name, value string }{{"sync", "on"}, {"async", "off"}} {
		b.Run(mode.name, func(b *testing.B) {
			url := pgtest.WithParam(b, pgtest.URL(b), "synchronous_commit", mode.value)
			bench(b, open(b, url))
		})
	}
}

// BenchmarkUpdate measures the small transaction that starts an execution:
// create it, with a step and a task (three round trips: begin, AddTask,
// commit).
func BenchmarkUpdate(b *testing.B) { modes(b, benchUpdate) }

func benchUpdate(b *testing.B, s *postgres.Store) {
	ctx := b.Context()
	now := time.Now()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprint("e", i)
		err := s.Update(ctx, id, func(tx store.Tx) error {
			if err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: now}); err != nil {
				return err
			}
			if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady, ReadyAt: now}); err != nil {
				return err
			}
			return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: now, Attempt: 1})
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateExisting measures a step's commit without a new task:
// read the execution and its tasks, write the execution, a step and the
// task (two round trips: begin, commit).
func BenchmarkUpdateExisting(b *testing.B) { modes(b, benchUpdateExisting) }

// BenchmarkUpdateExistingLargeInputs is BenchmarkUpdateExisting on an
// execution whose inputs take 32 KiB.
func BenchmarkUpdateExistingLargeInputs(b *testing.B) {
	modes(b, func(b *testing.B, s *postgres.Store) {
		big := []byte(`"` + strings.Repeat("x", 32<<10) + `"`)
		err := s.Update(b.Context(), "e", func(tx store.Tx) error {
			return tx.CreateExecution(&store.Execution{ID: "e", Run: 1, Graph: "g", Status: store.Running, CreatedAt: base,
				Inputs: []store.Value{{Type: "string", Data: big}}})
		})
		if err != nil {
			b.Fatal(err)
		}
		updateExisting(b, s)
	})
}

func benchUpdateExisting(b *testing.B, s *postgres.Store) {
	create(b, s, "e")
	updateExisting(b, s)
}

// updateExisting commits a step of execution e, as a worker does, b.N times.
func updateExisting(b *testing.B, s *postgres.Store) {
	ctx := b.Context()
	if err := s.Update(ctx, "e", func(tx store.Tx) error {
		return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: base, Owner: "w", LeaseUntil: base.Add(time.Hour)})
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		err := s.Update(ctx, "e", func(tx store.Tx) error {
			tasks, err := tx.Tasks()
			if err != nil {
				return err
			}
			e, err := tx.Execution()
			if err != nil {
				return err
			}
			e.Seq++
			if err := tx.PutExecution(e); err != nil {
				return err
			}
			if err := tx.PutStep(&store.Step{Name: fmt.Sprint(i % 10), Status: store.StepDone, Output: &store.Value{Type: "int", Data: []byte("42")}}); err != nil {
				return err
			}
			tasks[0].Attempt++
			return tx.PutTask(&tasks[0])
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateParallel runs the Update of BenchmarkUpdate from several
// goroutines at once, each on executions of its own.
func BenchmarkUpdateParallel(b *testing.B) { modes(b, benchUpdateParallel(2)) }

// BenchmarkUpdateParallel64 is BenchmarkUpdateParallel with 64 goroutines
// (on two CPUs), as a busy worker process has: their Updates share
// transactions.
func BenchmarkUpdateParallel64(b *testing.B) { modes(b, benchUpdateParallel(32)) }

// benchUpdateParallel creates executions from p × GOMAXPROCS goroutines.
func benchUpdateParallel(p int) func(b *testing.B, s *postgres.Store) {
	return func(b *testing.B, s *postgres.Store) { updateParallel(b, s, p) }
}

func updateParallel(b *testing.B, s *postgres.Store, p int) {
	ctx := b.Context()
	now := time.Now()
	var n atomic.Int64
	b.SetParallelism(p)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprint("e", n.Add(1))
			err := s.Update(ctx, id, func(tx store.Tx) error {
				if err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: now}); err != nil {
					return err
				}
				if err := tx.PutStep(&store.Step{Name: "a", Status: store.StepReady, ReadyAt: now}); err != nil {
					return err
				}
				return tx.AddTask(&store.Task{Step: "a", Kind: store.TaskStep, ReadyAt: now, Attempt: 1})
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkClaimCycle measures a worker's cycle: claim a task, then commit
// its step and delete the task in an Update fenced by the lease.
func BenchmarkClaimCycle(b *testing.B) { modes(b, benchClaimCycle) }

func benchClaimCycle(b *testing.B, s *postgres.Store) {
	ctx := b.Context()
	const perExec = 100
	for i := 0; i < b.N; i += perExec {
		id := fmt.Sprint("e", i/perExec)
		err := s.Update(ctx, id, func(tx store.Tx) error {
			if err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base}); err != nil {
				return err
			}
			for j := range min(perExec, b.N-i) {
				if err := tx.AddTask(&store.Task{Step: fmt.Sprint(j), Kind: store.TaskStep, ReadyAt: base.Add(time.Duration(i+j) * time.Millisecond)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	now := base.Add(time.Hour)
	b.ResetTimer()
	for range b.N {
		got, err := s.Claim(ctx, "w", "", now, time.Minute, 1)
		if err != nil || len(got) != 1 {
			b.Fatalf("Claim = %v, %v", got, err)
		}
		task := got[0]
		err = s.Update(ctx, task.Exec, func(tx store.Tx) error {
			tasks, err := tx.Tasks()
			if err != nil {
				return err
			}
			held := false
			for _, t := range tasks {
				held = held || (t.ID == task.ID && t.Owner == "w")
			}
			if !held {
				return fmt.Errorf("lost task %d", task.ID)
			}
			if err := tx.PutStep(&store.Step{Name: task.Step, Status: store.StepDone, Output: &store.Value{Type: "int", Data: []byte("1")}}); err != nil {
				return err
			}
			return tx.DeleteTask(task.ID)
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaim measures Claim alone (and the Release that puts the task
// back) over 15,000 ready tasks, a third of them in the default queue that
// it claims from and the others in two other queues. In "pinned", the 100
// oldest tasks of the default queue are pinned to another worker that is
// alive, so that each Claim passes over them.
func BenchmarkClaim(b *testing.B) {
	for _, pinned := range []int{0, 100} {
		name := "unpinned"
		if pinned > 0 {
			name = "pinned"
		}
		b.Run(name, func(b *testing.B) { modes(b, func(b *testing.B, s *postgres.Store) { benchClaim(b, s, pinned) }) })
	}
}

func benchClaim(b *testing.B, s *postgres.Store, pinned int) {
	ctx := b.Context()
	const execs, perExec = 20, 750
	for e := range execs {
		id := fmt.Sprint("e", e)
		err := s.Update(ctx, id, func(tx store.Tx) error {
			if err := tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base}); err != nil {
				return err
			}
			for j := range perExec {
				n := e*perExec + j
				task := store.Task{Step: fmt.Sprint(j), Kind: store.TaskStep, ReadyAt: base.Add(time.Duration(n) * time.Millisecond)}
				switch {
				case n%3 == 1:
					task.Queue = "a"
				case n%3 == 2:
					task.Queue = "b"
				case n/3 < pinned:
					task.Worker = "other"
				}
				if err := tx.AddTask(&task); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	now := base.Add(time.Hour)
	if _, err := s.ExtendLeases(ctx, "other", nil, now.Add(time.Hour)); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		got, err := s.Claim(ctx, "w", "", now, time.Minute, 1)
		if err != nil || len(got) != 1 || got[0].Worker != "" {
			b.Fatalf("Claim = %+v, %v", got, err)
		}
		if err := s.Release(ctx, "w", []int64{got[0].ID}); err != nil {
			b.Fatal(err)
		}
	}
}
