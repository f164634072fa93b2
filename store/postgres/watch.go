package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// Watching: a transaction whose only news is that an execution was
// created or ended (no signal, cancel request, new run or claimable task)
// notifies through PostgreSQL only when a store other than the one that
// commits it watches the execution: executions.watchers names the stores
// that created it, signalled it or called Watch, and an Update reads it
// with the rest of the execution's row (or keeps it, see Speculative
// Updates). Otherwise the committing store tells its own listeners
// itself, after the commit. A chain started and run by one process so
// sends no notification at all, which matters beyond the notification's
// own cost: PostgreSQL commits notifying transactions one at a time,
// their disk flushes included.

// newStoreID returns a random name for a store among watchers.
func newStoreID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxWatched bounds the executions a store remembers watching; one it
// forgets only costs a Watch a round trip again.
const maxWatched = 4096

// watchSet is the executions this store is known to watch, the oldest
// forgotten first.
type watchSet struct {
	mu    sync.Mutex
	ids   map[string]struct{}
	order []string // a ring, next at n % maxWatched
	n     int
}

func (w *watchSet) add(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.ids[id]; ok {
		return
	}
	if w.ids == nil {
		w.ids = map[string]struct{}{}
		w.order = make([]string, maxWatched)
	}
	i := w.n % maxWatched
	if old := w.order[i]; w.n >= maxWatched {
		delete(w.ids, old)
	}
	w.order[i] = id
	w.ids[id] = struct{}{}
	w.n++
}

func (w *watchSet) has(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.ids[id]
	return ok
}

// sqlWatch names the store $2 among the watchers of execution $1 unless it
// is there already or the execution has ended.
const sqlWatch = `UPDATE executions SET watchers = array_append(watchers, $2::text)
	WHERE id = $1 AND status = 'running' AND NOT coalesce($2 = ANY(watchers), false)`

// Watch implements store.Watcher: once it returns, the status events of
// execution id (its end above all) reach this store's listeners whichever
// process commits them. An execution that this store created or signalled
// is watched already and costs nothing; otherwise Watch costs one round
// trip, a transaction that holds the execution's lock (as Update does,
// so that an Update that ends the execution either sees the watch or ends
// before it) and commits asynchronously (a watch lost in a crash of the
// server only leaves its caller polling). An execution that does not
// exist or has ended is left alone.
func (s *Store) Watch(ctx context.Context, id string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if s.watched.has(id) {
		return nil
	}
	if bad, ok := badValue([]any{id}); ok {
		return fmt.Errorf("postgres %s: watch of execution: %s: %w", s.name, bad, ErrBadValue)
	}
	// One implicit transaction, as the lease statements are.
	b := &pgx.Batch{}
	b.Queue(sqlAsyncCommit)
	b.Queue(`SELECT pg_advisory_xact_lock($1)`, s.lockKey(id))
	b.Queue(sqlWatch, id, s.self)
	err := sendLeases(ctx, s, b, func(br pgx.BatchResults) error {
		for range 2 {
			if _, err := br.Exec(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return s.ctxErr(ctx, "watch of execution "+strconv.Quote(id), err)
	}
	s.watched.add(id)
	return nil
}

// committed notes what a committed transaction made this store watch.
func (s *Store) committed(t *tx) {
	if t.watches {
		s.watched.add(t.id)
	}
}

// localListener is a Listen call's fn, also told of the events that this
// store did not send through PostgreSQL.
type localListener struct{ fn func(store.Event) }

func (s *Store) addLocal(fn func(store.Event)) *localListener {
	l := &localListener{fn}
	s.localMu.Lock()
	s.locals = append(s.locals, l)
	s.localMu.Unlock()
	return l
}

func (s *Store) dropLocal(l *localListener) {
	s.localMu.Lock()
	defer s.localMu.Unlock()
	for i, x := range s.locals {
		if x == l {
			s.locals = append(s.locals[:i:i], s.locals[i+1:]...)
			return
		}
	}
}

// tellLocal gives this store's listeners the events of the notices of a
// committed transaction that were not sent (see notifying).
func (s *Store) tellLocal(nf *notifying) {
	if nf == nil || len(nf.local) == 0 {
		return
	}
	s.localMu.Lock()
	ls := s.locals
	s.localMu.Unlock()
	if len(ls) == 0 {
		return
	}
	for _, n := range nf.local {
		for _, ev := range n.events() {
			for _, l := range ls {
				l.fn(ev)
			}
		}
	}
}

// events returns the events of a watched notice (see notice.watched).
func (n *notice) events() []store.Event {
	out := []store.Event{{Kind: store.EventExec, Exec: n.exec}}
	if n.final != nil {
		out = append(out, store.Event{Kind: store.EventFinished, Exec: n.exec, Final: n.final})
	}
	return out
}
