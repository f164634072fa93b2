package docket

import "github.com/docket-run/docket/store"

// maxFresh bounds how many executions created here, and not yet waited
// for, results remembers.
const maxFresh = 1024

// results spares callers of Result the reads of the execution: the read
// of its end, which comes with the store's event (store.Event.Final) or
// from this process's worker when it committed the end itself, and, in a
// process that listens to the store's events (see store.Notifier), for an
// execution this process just created, the first read that looks whether
// it has already ended, since its end cannot have been missed.
//
// The engine's waitMu guards it; the zero value is ready.
type results struct {
	// finals holds the final records that came with the events of
	// executions' ends, for those with callers of Result waiting and for
	// fresh ones, until the last caller stops waiting.
	finals map[string]*store.Execution
	// fresh holds the executions that this process created while
	// listening and on which Result has not been called since; order
	// holds them in creation order (and IDs no longer fresh).
	fresh map[string]bool
	order []string
}

// created records that this process is creating execution id while
// listening, before the transaction that creates it commits, so that the
// event of its end is kept even if it comes before anyone waits.
func (r *results) created(id string) {
	if r.fresh == nil {
		r.fresh = map[string]bool{}
	}
	if r.fresh[id] {
		return
	}
	r.fresh[id] = true
	r.order = append(r.order, id)
	for len(r.fresh) > maxFresh {
		old := r.order[0]
		r.order = r.order[1:]
		if r.fresh[old] {
			delete(r.fresh, old)
			delete(r.finals, old)
		}
	}
	if len(r.order) > 4*maxFresh { // IDs forgotten since: compact
		kept := make([]string, 0, len(r.fresh))
		for _, id := range r.order {
			if r.fresh[id] {
				kept = append(kept, id)
			}
		}
		r.order = kept
	}
}

// ended keeps the final record of an execution whose end's event came,
// if someone waits for it (waited) or it is fresh.
func (r *results) ended(x *store.Execution, waited bool) {
	if !waited && !r.fresh[x.ID] {
		return
	}
	if r.finals == nil {
		r.finals = map[string]*store.Execution{}
	}
	r.finals[x.ID] = x
}

// forget drops what is kept for execution id once no one waits for it,
// its freshness included: a later Result reads it.
func (r *results) forget(id string) {
	delete(r.finals, id)
	delete(r.fresh, id)
}

// reset forgets which executions are fresh: events may have been missed.
func (r *results) reset() {
	for id := range r.fresh {
		delete(r.finals, id)
	}
	clear(r.fresh)
	r.order = r.order[:0]
}

// lookup returns the kept final record of execution id, or nil, and
// whether the caller, already waiting for it, may skip reading it: it is
// fresh (created here while listening, with no event missed since), and
// so has not ended if no record is kept.
func (e *Engine) lookup(id string) (final *store.Execution, unread bool) {
	e.waitMu.Lock()
	defer e.waitMu.Unlock()
	return e.results.finals[id], e.results.fresh[id]
}

// creating marks execution id, which this process is about to create, as
// fresh, when the store's events will tell of its end; done says whether
// it was created after all.
func (e *Engine) creating(id string) (done func(created bool)) {
	if !e.listening {
		return func(bool) {}
	}
	e.waitMu.Lock()
	e.results.created(id)
	e.waitMu.Unlock()
	return func(created bool) {
		if !created {
			e.waitMu.Lock()
			if len(e.waiters[id]) == 0 {
				e.results.forget(id)
			}
			e.waitMu.Unlock()
		}
	}
}
