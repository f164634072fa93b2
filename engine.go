package docket

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/docket-run/docket/codec"
	"github.com/docket-run/docket/store"
)

// Config configures an Engine. The zero value is usable: executions go to
// the SQLite file docket.db in the working directory and eight tasks run at
// a time.
type Config struct {
	// Store says where executions live: "sqlite:path/to/file.db" (the
	// default is "sqlite:docket.db"), a "postgres://" or "postgresql://"
	// URL (a PostgreSQL database that many processes share; see
	// store/postgres) or "memory:" (nothing survives the process; for tests).
	Store string
	// Backend, when set, is used instead of Store. The engine does not
	// close a Backend it was given.
	Backend store.Store
	// Graphs are the graphs this engine starts and runs. A process restarted
	// with the same graphs picks up the executions its predecessor left.
	Graphs []*Graph
	// Workers is how many tasks (step attempts, compensations) of the
	// default queue the engine runs at once (default 8). Negative means
	// none: with no Queues either, the engine is only a client that starts,
	// inspects and cancels executions.
	Workers int
	// Queues names the task queues (see Queue) this engine also serves,
	// each with how many of its tasks run at once.
	Queues map[string]int
	// Lease is how long a claimed task stays with this engine without an
	// extension (default 30s); a crashed engine's tasks are taken over
	// after it.
	Lease time.Duration
	// PollInterval is the longest an idle worker waits before looking for
	// tasks that another process created (default 500ms). On a store that
	// announces changes (PostgreSQL's LISTEN/NOTIFY) workers and callers
	// of Result and Update are woken at once, and also use it as the
	// interval of their fallback polling.
	PollInterval time.Duration
	// ShutdownTimeout is how long Close lets running steps finish before
	// cancelling them and handing their tasks back (default 10s).
	ShutdownTimeout time.Duration
	// Clock is the source of time (default: the system clock).
	Clock Clock
	// Codec encodes inputs, outputs and journal values (default codec.Default:
	// protobuf for proto messages, JSON for everything else).
	Codec codec.Codec
	// Logger receives the engine's own logs (default slog.Default()).
	Logger *slog.Logger
	// WorkerID names this engine's worker in leases (default host-pid-n).
	WorkerID string
	// HistoryLimit is the journal length of a step past which
	// ContinueAsNewSuggested reports true (default 1000).
	HistoryLimit int
}

// Engine runs durable executions: it records them in a store, runs their
// steps as tasks on its worker, and answers questions about them.
type Engine struct {
	cfg       Config
	st        store.Store
	ownsStore bool
	graphs    map[string]*Graph
	clock     Clock
	codec     codec.Codec
	log       *slog.Logger
	cache     Cache
	w         *worker

	waitMu  sync.Mutex
	waiters map[string][]chan struct{}
	results results // guarded by waitMu

	listenCtx  context.Context
	stopListen context.CancelFunc
	listening  bool // the store's events wake waiters and the worker

	closeOnce sync.Once
	closeErr  error
}

var workerSeq int

// Open opens the engine's store, checks its graphs and starts its worker.
func Open(ctx context.Context, cfg Config) (*Engine, error) {
	e := &Engine{cfg: cfg, graphs: map[string]*Graph{}, waiters: map[string][]chan struct{}{}}
	if e.clock = cfg.Clock; e.clock == nil {
		e.clock = systemClock{}
	}
	if e.codec = cfg.Codec; e.codec == nil {
		e.codec = codec.Default
	}
	if e.log = cfg.Logger; e.log == nil {
		e.log = slog.Default()
	}
	if e.cfg.Lease <= 0 {
		e.cfg.Lease = 30 * time.Second
	}
	if e.cfg.PollInterval <= 0 {
		e.cfg.PollInterval = 500 * time.Millisecond
	}
	if e.cfg.ShutdownTimeout <= 0 {
		e.cfg.ShutdownTimeout = 10 * time.Second
	}
	if e.cfg.Workers == 0 {
		e.cfg.Workers = 8
	}
	if e.cfg.HistoryLimit <= 0 {
		e.cfg.HistoryLimit = 1000
	}
	var probs []error
	for _, g := range cfg.Graphs {
		if other, ok := e.graphs[g.name]; ok && other != g {
			return nil, fmt.Errorf("docket: two graphs are named %q", g.name)
		}
		e.graphs[g.name] = g
		ix := g.index()
		if ix.err != nil {
			probs = append(probs, ix.err)
			continue
		}
		if err := ix.durableErr(); err != nil {
			probs = append(probs, err)
		}
	}
	if len(probs) > 0 {
		return nil, errors.Join(probs...)
	}
	if cfg.Backend != nil {
		e.st = cfg.Backend
	} else {
		st, err := OpenStore(ctx, cfg.Store)
		if err != nil {
			return nil, err
		}
		e.st, e.ownsStore = st, true
	}
	e.cache = storeCache{e}
	queues := map[string]int{}
	if e.cfg.Workers > 0 {
		queues[""] = e.cfg.Workers
	}
	for name, n := range cfg.Queues {
		if n <= 0 {
			return nil, fmt.Errorf("docket: queue %q needs a positive concurrency, not %d", name, n)
		}
		queues[name] = n
	}
	if len(queues) > 0 {
		id := cfg.WorkerID
		if id == "" {
			host, _ := os.Hostname()
			workerSeq++
			id = host + "-" + strconv.Itoa(os.Getpid()) + "-" + strconv.Itoa(workerSeq)
		}
		e.w = newWorker(e, id, queues)
	}
	e.listenCtx, e.stopListen = context.WithCancel(context.Background())
	if n, ok := e.st.(store.Notifier); ok {
		if err := n.Listen(e.listenCtx, e.event); err != nil {
			e.log.Warn("docket: listening for the store's events failed; polling instead", "error", err)
		} else {
			e.listening = true
		}
	}
	if e.w != nil {
		e.w.start()
	}
	return e, nil
}

// event handles a change another process (or this one) committed to a
// shared store: a claimable task wakes the worker, a changed execution
// the steps and callers waiting on its signals and updates, a finished one
// also the callers waiting for its result.
func (e *Engine) event(ev store.Event) {
	switch ev.Kind {
	case store.EventTask:
		// A task handed to one worker (see store.Event.Worker) is not
		// for the others to race for.
		if ev.Worker == "" || (e.w != nil && ev.Worker == e.w.id) {
			e.pokeWorker()
		}
		e.notifyExec(ev.Exec, false)
	case store.EventExec:
		e.notifyExec(ev.Exec, false)
	case store.EventFinished:
		if ev.Final != nil && ev.Final.ID == ev.Exec {
			e.waitMu.Lock()
			e.results.ended(ev.Final, len(e.waiters[ev.Exec]) > 0)
			e.waitMu.Unlock()
		}
		e.notifyExec(ev.Exec, true)
	case store.EventReset:
		e.waitMu.Lock()
		e.results.reset()
		e.waitMu.Unlock()
		e.pokeWorker()
		e.notifyExec("", true)
	}
}

// notifyExec wakes this process's waiters on execution id (for signals and
// update answers, and with result set for its result too), or all waiters
// when id is "".
func (e *Engine) notifyExec(id string, result bool) {
	sig, update := signalKey(id), "update\x00"+id+"\x00"
	e.waitMu.Lock()
	var keys []string
	for k := range e.waiters {
		if id == "" || (result && k == id) || k == sig || strings.HasPrefix(k, update) {
			keys = append(keys, k)
		}
	}
	e.waitMu.Unlock()
	for _, k := range keys {
		e.notify(k)
	}
}

// Store returns the engine's store.
func (e *Engine) Store() store.Store { return e.st }

// Close stops the worker — letting running steps finish for up to
// Config.ShutdownTimeout, then cancelling them and handing their tasks back
// for another worker, and handing back at once whatever a claim still in
// flight takes — and closes the store if the engine opened it.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		if e.w != nil {
			e.w.stop(e.cfg.ShutdownTimeout)
		}
		e.stopListen()
		if e.ownsStore {
			e.closeErr = e.st.Close()
		}
	})
	return e.closeErr
}

// graph returns the registered graph of that name.
func (e *Engine) graph(name string) (*Graph, error) {
	g := e.graphs[name]
	if g == nil {
		return nil, &UnknownGraphError{Graph: name}
	}
	return g, nil
}

// waitChan returns a channel closed when this process sees execution id finish.
func (e *Engine) waitChan(id string) chan struct{} {
	ch := make(chan struct{})
	e.waitMu.Lock()
	e.waiters[id] = append(e.waiters[id], ch)
	e.waitMu.Unlock()
	return ch
}

func (e *Engine) dropWait(id string, ch chan struct{}) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	ws := e.waiters[id]
	for i, c := range ws {
		if c == ch {
			e.waiters[id] = append(ws[:i], ws[i+1:]...)
			break
		}
	}
	if len(e.waiters[id]) == 0 {
		delete(e.waiters, id)
		e.results.forget(id)
	}
}

// finished wakes the callers waiting for execution id, which this process
// has just seen finish, and settles its family: a child's parent is woken,
// and a parent that did not complete cancels its children (see Call).
// final, when known, is the execution as its end was committed: callers
// of Result here take it (see results) rather than read it back.
func (e *Engine) finished(id string, final *store.Execution) {
	if final != nil {
		e.waitMu.Lock()
		e.results.ended(final, len(e.waiters[id]) > 0)
		e.waitMu.Unlock()
	}
	e.notify(id)
	e.committed() // for the settle task
}

// notify wakes the callers of waitChan(key).
func (e *Engine) notify(key string) {
	e.waitMu.Lock()
	ws := e.waiters[key]
	delete(e.waiters, key)
	e.waitMu.Unlock()
	for _, c := range ws {
		close(c)
	}
}

// decode turns a stored value into a Go value of type t.
func (e *Engine) decode(t reflect.Type, data []byte) (any, error) {
	p := reflect.New(t)
	if err := e.codec.Unmarshal(data, p.Interface()); err != nil {
		return nil, &CorruptPayloadError{Type: t.String(), Err: err}
	}
	return p.Elem().Interface(), nil
}

// storeCache is the Cache of durable executions: the store's cache table.
type storeCache struct{ e *Engine }

func (c storeCache) Get(ctx context.Context, key string) ([]byte, bool, error) {
	return c.e.st.CacheGet(ctx, key, c.e.clock.Now())
}

func (c storeCache) Set(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return c.e.st.CacheSet(ctx, key, value, c.e.clock.Now().Add(ttl))
}

// pokeWorker wakes this engine's worker, if it has one.
func (e *Engine) pokeWorker() {
	if e.w != nil {
		e.w.poke()
	}
}

// committed wakes this engine's worker after a commit that may have left
// tasks to claim, unless the store's notifications do that: a listening
// store announces every commit that leaves a claimable task to every
// process, this one included, and a second wake-up only costs the store
// an empty claim.
func (e *Engine) committed() {
	if !e.listening {
		e.pokeWorker()
	}
}
