package docket_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// commitCutter is a TCP proxy in front of the PostgreSQL test server. Once
// armed, it cuts the first connection whose server answers the COMMIT of
// a transaction that wrote, just before that answer reaches the client: the transaction is committed, but
// the client sees its connection lost and cannot tell whether it was.
type commitCutter struct {
	ln    net.Listener
	armed atomic.Bool
	once  atomic.Bool // armOnce has armed it
	cuts  atomic.Int32
	wg    sync.WaitGroup
}

// newCommitCutter starts a cutter in front of the test server, on a schema
// of the test's own, and returns it with the URL that goes through it.
func newCommitCutter(t *testing.T) (*commitCutter, string) {
	p, err := url.Parse(pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	server := p.Host
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &commitCutter{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); c.wg.Wait() })
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", server)
			if err != nil {
				_ = client.Close()
				continue
			}
			c.wg.Add(2)
			go func() { defer c.wg.Done(); _, _ = io.Copy(srv, client); _ = srv.Close() }()
			go func() { defer c.wg.Done(); c.answers(client, srv) }()
		}
	}()
	p.Host = ln.Addr().String()
	return c, p.String()
}

// armOnce arms the cutter the first time it is called, so that a step
// that calls it is cut on its first attempt only.
func (c *commitCutter) armOnce() {
	if c.once.CompareAndSwap(false, true) {
		c.armed.Store(true)
	}
}

// answers copies the server's messages to the client, cutting both
// connections instead of passing on a COMMIT's CommandComplete when armed.
func (c *commitCutter) answers(client, srv net.Conn) {
	defer client.Close()
	defer srv.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := srv.Read(buf)
		if n > 0 {
			if wroteAndCommitted(buf[:n]) && c.armed.CompareAndSwap(true, false) {
				c.cuts.Add(1)
				return
			}
			if _, werr := client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// wroteAndCommitted reports whether the server's messages hold the
// CommandComplete of a COMMIT ('C', its length 4 + len("COMMIT\x00"), the
// tag) after one of an INSERT or an UPDATE: the end of a transaction that
// wrote, not of a batch of reads.
func wroteAndCommitted(msgs []byte) bool {
	commit := bytes.Index(msgs, []byte("C\x00\x00\x00\x0bCOMMIT\x00"))
	return commit > 0 && (bytes.Contains(msgs[:commit], []byte("INSERT 0 ")) || bytes.Contains(msgs[:commit], []byte("UPDATE ")))
}

// A connection lost as the server commits leaves the engine not knowing
// whether its write was recorded. Here the write is a step taking a signal
// from the inbox: it was recorded, though the step saw a failure. The
// attempt must then write nothing more — an earlier version gave the task
// back together with its journal as it was in memory, which marked the
// receive as still waiting and lost the signal, so the step waited forever.
func TestCommitLostInFlightKeepsSignal(t *testing.T) {
	cutter, cutURL := newCommitCutter(t)
	g := docket.NewGraph("cut-receive", docket.Input[BenchIn]())
	docket.Register1(g, func(ctx context.Context, in BenchIn) (BenchOut, error) {
		cutter.armOnce() // the next COMMIT is the receive's
		n, err := docket.Receive[int](ctx, "n")
		return BenchOut(in.N + n), err
	}, docket.Name("take"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := docket.Open(ctx, docket.Config{Store: cutURL, Graphs: []*docket.Graph{g},
		Lease: 2 * time.Second, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	// The signal is in the inbox before the step runs, so the step's first
	// write is the one that takes it.
	h, err := docket.SignalWithStart[BenchOut](ctx, eng, g, "cut-1", "n", 5, BenchIn{N: 100})
	if err != nil {
		t.Fatal(err)
	}
	out, err := h.Result(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		sigs, _ := eng.Describe(context.Background(), "cut-1")
		t.Fatalf("the step never got its signal back: %+v", sigs)
	}
	if err != nil || out != 105 {
		t.Fatalf("result %v, %v; want 105", out, err)
	}
	if cutter.cuts.Load() != 1 {
		t.Fatalf("%d connections cut at COMMIT, want 1", cutter.cuts.Load())
	}
}

// A child started in a transaction whose COMMIT answer was lost exists,
// though the parent's step saw a failure. That failure is the store's,
// not the step's: the step runs again and finds its child, rather than
// failing its execution (it has no retry policy).
func TestCommitLostInFlightStartingChild(t *testing.T) {
	cutter, cutURL := newCommitCutter(t)
	child := docket.NewGraph("cut-child", docket.Input[BenchIn]())
	docket.Register1(child, func(_ context.Context, in BenchIn) (BenchA, error) { return BenchA(2 * in.N), nil }, docket.Name("double"))
	parent := docket.NewGraph("cut-parent", docket.Input[BenchIn]())
	docket.Register1(parent, func(ctx context.Context, in BenchIn) (BenchOut, error) {
		cutter.armOnce() // the next COMMIT is the child's start
		a, err := docket.Call[BenchA](ctx, child, "c", in)
		return BenchOut(a + 1), err
	}, docket.Name("call"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := docket.Open(ctx, docket.Config{Store: cutURL, Graphs: []*docket.Graph{parent, child},
		Lease: time.Second, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[BenchOut](ctx, eng, parent, "cut-2", BenchIn{N: 20})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := h.Result(ctx); err != nil || out != 41 {
		t.Fatalf("result %v, %v; want 41", out, err)
	}
	if cutter.cuts.Load() != 1 {
		t.Fatalf("%d connections cut at COMMIT, want 1", cutter.cuts.Load())
	}
}

// A value that the store cannot hold (a NUL byte in a child's ID, on
// PostgreSQL) fails again however often it is written: starting that
// child is the step's failure, not a store failure to run the step again
// for.
func TestChildIDTheStoreRefuses(t *testing.T) {
	child := docket.NewGraph("bad-child", docket.Input[BenchIn]())
	docket.Register1(child, func(_ context.Context, in BenchIn) (BenchA, error) { return BenchA(in.N), nil }, docket.Name("echo"))
	var attempts atomic.Int32
	parent := docket.NewGraph("bad-parent", docket.Input[BenchIn]())
	docket.Register1(parent, func(ctx context.Context, in BenchIn) (BenchOut, error) {
		attempts.Add(1)
		a, err := docket.Call[BenchA](ctx, child, "nul\x00key", in)
		return BenchOut(a), err
	}, docket.Name("call"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := docket.Open(ctx, docket.Config{Store: pgtest.URL(t), Graphs: []*docket.Graph{parent, child},
		PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	h, err := docket.Start[BenchOut](ctx, eng, parent, "bad-1", BenchIn{N: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = h.Result(ctx)
	var xe *docket.ExecutionError
	if !errors.As(err, &xe) || xe.Status != "failed" || !strings.Contains(xe.Message, "cannot be stored") {
		t.Fatalf("result: %v; want the execution failed for the child's ID", err)
	}
	if n := attempts.Load(); n != 1 {
		t.Errorf("the step ran %d times, want 1", n)
	}
}
