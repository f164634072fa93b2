// Crashrecovery kills a process in the middle of a durable execution and
// finishes the execution in the next one, without re-running the steps that
// had completed.
//
// The graph fulfils an order in four steps, one after the other: validate,
// charge, ship and notify. Each appends "started" and "finished" lines to a
// ledger file, the stand-in for side effects in the outside world. The
// engine records each step's output in the SQLite database when the step
// returns — the step's checkpoint — in one transaction with the steps that
// become ready.
//
// Run it with -crash-after 2 and the process kills itself (SIGKILL: no
// deferred calls, no clean shutdown) in the middle of the third step, after
// validate and charge have completed:
//
//	go run ./examples/crashrecovery -db /tmp/order.db -crash-after 2
//	go run ./examples/crashrecovery -db /tmp/order.db
//
// The second run starts the same execution ID. The ID is an idempotency
// key, so it gets the execution already in the database. Once the dead
// process's lease on the third step has run out (-lease), it runs ship again
// from the top, then notify, and prints the result. The ledger shows what
// ran where:
//
//	pid 101: started validate
//	pid 101: finished validate
//	pid 101: started charge
//	pid 101: finished charge
//	pid 101: started ship
//	pid 102: started ship
//	pid 102: finished ship
//	pid 102: started notify
//	pid 102: finished notify
//
// The guarantee: a step whose checkpoint was recorded never runs again, so
// validate and charge ran once. A step interrupted before its checkpoint
// runs again from the start — steps are at-least-once — so the one that was
// running when the process died appears twice. (If the process dies after
// the step's work is done but before its checkpoint, even its "finished"
// line appears twice.) So make a step's side effects idempotent, or make
// each with docket.Run, which records its result: a side effect whose
// result was recorded is not made again when the step re-runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/docket-run/docket"
)

// Order is the input of an execution.
type Order struct {
	ID    string
	Cents int
}

// What the steps produce.
type (
	Validated    struct{ Order Order }
	Receipt      struct{ Order, Payment string }
	Shipment     struct{ Order, Payment, Tracking string }
	Confirmation string
)

// Fulfilment holds the steps of the graph and what they need.
type Fulfilment struct {
	Ledger     string        // the file each step appends its lines to
	CrashAfter int           // die in the middle of the step after this many; -1: never
	StepTime   time.Duration // how long each step works
	w          io.Writer     // where the ledger lines are echoed
}

// work is the body of step number n: "started", some work, "finished". If
// n-1 steps have completed and the process is to crash after them, it dies
// half-way.
func (f *Fulfilment) work(ctx context.Context, n int, name string) error {
	if err := f.note("started", name); err != nil {
		return err
	}
	if n-1 == f.CrashAfter {
		fmt.Fprintf(f.w, "pid %d: crashing in the middle of %s\n", os.Getpid(), name)
		crash()
	}
	t := time.NewTimer(f.StepTime)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return f.note("finished", name)
}

// note appends a line to the ledger file and echoes it.
func (f *Fulfilment) note(what, step string) error {
	line := fmt.Sprintf("pid %d: %s %s\n", os.Getpid(), what, step)
	file, err := os.OpenFile(f.Ledger, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if _, err := file.WriteString(line); err != nil {
		file.Close()
		return err
	}
	io.WriteString(f.w, line)
	return file.Close()
}

// crash kills the process at once, as a power cut or the OOM killer would.
func crash() {
	p, err := os.FindProcess(os.Getpid())
	if err == nil {
		err = p.Kill() // SIGKILL on Unix
	}
	log.Fatalf("could not kill the process: %v", err)
}

func (f *Fulfilment) validate(ctx context.Context, o *Order) (Validated, error) {
	return Validated{*o}, f.work(ctx, 1, "validate")
}

func (f *Fulfilment) charge(ctx context.Context, v Validated) (Receipt, error) {
	return Receipt{Order: v.Order.ID, Payment: fmt.Sprintf("paid %d cents", v.Order.Cents)}, f.work(ctx, 2, "charge")
}

func (f *Fulfilment) ship(ctx context.Context, r Receipt) (Shipment, error) {
	return Shipment{Order: r.Order, Payment: r.Payment, Tracking: "TRACK-" + r.Order}, f.work(ctx, 3, "ship")
}

func (f *Fulfilment) notify(ctx context.Context, s Shipment) (Confirmation, error) {
	c := Confirmation(fmt.Sprintf("order %s: %s, shipped as %s", s.Order, s.Payment, s.Tracking))
	return c, f.work(ctx, 4, "notify")
}

func newGraph(f *Fulfilment) *docket.Graph {
	g := docket.NewGraph("fulfilment", docket.Input[*Order]())
	docket.Register1(g, f.validate, docket.Name("validate"))
	docket.Register1(g, f.charge, docket.Name("charge"))
	docket.Register1(g, f.ship, docket.Name("ship"))
	docket.Register1(g, f.notify, docket.Name("notify"))
	return g
}

// run fulfils order 42, or carries on fulfilling it if an earlier process
// started, on the SQLite database at db. Lease is how long a step claimed
// by a process that died stays with it before this one takes it over.
func run(ctx context.Context, w io.Writer, db string, lease time.Duration, f *Fulfilment) error {
	f.w = w
	g := newGraph(f)
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Graphs: []*docket.Graph{g}, Lease: lease})
	if err != nil {
		return err
	}
	defer eng.Close()

	h, err := docket.Start[Confirmation](ctx, eng, g, "order-42", &Order{ID: "42", Cents: 1999})
	if err != nil {
		return err
	}
	c, err := h.Result(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "pid %d: result: %s\n", os.Getpid(), c)
	return nil
}

func main() {
	db := flag.String("db", "crashrecovery.db", "the SQLite database file")
	ledger := flag.String("ledger", "", "the ledger file (default: the database file's path + .ledger)")
	crashAfter := flag.Int("crash-after", -1, "kill the process in the middle of the step after this many steps (-1: never)")
	stepTime := flag.Duration("step-time", 500*time.Millisecond, "how long each step works")
	lease := flag.Duration("lease", 3*time.Second, "how long a dead process's step stays claimed")
	flag.Parse()
	if *ledger == "" {
		*ledger = *db + ".ledger"
	}
	f := &Fulfilment{Ledger: *ledger, CrashAfter: *crashAfter, StepTime: *stepTime}
	if err := run(context.Background(), os.Stdout, *db, *lease, f); err != nil {
		log.Fatal(err)
	}
}
