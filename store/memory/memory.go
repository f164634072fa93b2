// Package memory is an in-process Store for tests. It keeps everything in
// maps under one mutex and passes the same conformance suite as the
// database-backed stores; nothing survives the process.
package memory

import (
	"context"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/docket-run/docket/store"
)

// Store is an in-memory store.Store.
type Store struct {
	mu     sync.Mutex
	execs  map[string]*execState
	tasks  map[int64]*store.Task
	nextID int64
	order  int64 // creation counter, for List
	cache  map[string]cacheEntry
	closed bool
}

type execState struct {
	e       store.Execution
	order   int64
	steps   map[string]store.Step
	journal map[string][]store.JournalEntry
}

type cacheEntry struct {
	value   []byte
	expires time.Time
}

// New returns an empty store.
func New() *Store {
	return &Store{execs: map[string]*execState{}, tasks: map[int64]*store.Task{}, cache: map[string]cacheEntry{}}
}

var _ store.Store = (*Store)(nil)

// Update implements store.Store. Updates are serialized by the store's mutex;
// fn works on copies that replace the originals only if it succeeds.
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	tx := &tx{s: s, id: id, tasks: map[int64]*store.Task{}}
	if st := s.execs[id]; st != nil {
		tx.st = st.clone()
	}
	for tid, t := range s.tasks {
		if t.Exec == id {
			c := *t
			tx.tasks[tid] = &c
		}
	}
	if err := fn(tx); err != nil {
		return err
	}
	if tx.st != nil {
		if tx.created {
			s.order++
			tx.st.order = s.order
		}
		s.execs[id] = tx.st
	}
	for tid, t := range s.tasks {
		if t.Exec == id {
			delete(s.tasks, tid)
		}
	}
	for tid, t := range tx.tasks {
		s.tasks[tid] = t
	}
	return nil
}

func (st *execState) clone() *execState {
	c := &execState{e: st.e, order: st.order, steps: make(map[string]store.Step, len(st.steps)),
		journal: make(map[string][]store.JournalEntry, len(st.journal))}
	c.e.Inputs = slices.Clone(st.e.Inputs)
	for k, v := range st.steps {
		c.steps[k] = v
	}
	for k, v := range st.journal {
		c.journal[k] = slices.Clone(v)
	}
	return c
}

type tx struct {
	s       *Store
	id      string
	st      *execState
	created bool
	tasks   map[int64]*store.Task
}

func (t *tx) Execution() (*store.Execution, error) {
	if t.st == nil {
		return nil, store.ErrNotFound
	}
	e := t.st.e
	e.Inputs = slices.Clone(e.Inputs)
	return &e, nil
}

func (t *tx) CreateExecution(e *store.Execution) error {
	if t.st != nil {
		return store.ErrExists
	}
	c := *e
	c.ID = t.id
	c.Inputs = slices.Clone(e.Inputs)
	t.st = &execState{e: c, steps: map[string]store.Step{}, journal: map[string][]store.JournalEntry{}}
	t.created = true
	return nil
}

func (t *tx) PutExecution(e *store.Execution) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := *e
	c.ID = t.id
	c.Inputs = slices.Clone(e.Inputs)
	t.st.e = c
	return nil
}

func (t *tx) Steps() ([]store.Step, error) {
	if t.st == nil {
		return nil, nil
	}
	out := make([]store.Step, 0, len(t.st.steps))
	for _, s := range t.st.steps {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (t *tx) PutStep(s *store.Step) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := *s
	c.Exec = t.id
	t.st.steps[s.Name] = c
	return nil
}

func (t *tx) Journal(step string) ([]store.JournalEntry, error) {
	if t.st == nil {
		return nil, nil
	}
	return slices.Clone(t.st.journal[step]), nil
}

func (t *tx) PutJournal(e *store.JournalEntry) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := *e
	c.Exec = t.id
	j := t.st.journal[e.Step]
	i := sort.Search(len(j), func(i int) bool { return j[i].Seq >= e.Seq })
	if i < len(j) && j[i].Seq == e.Seq {
		j[i] = c
	} else {
		j = slices.Insert(j, i, c)
	}
	t.st.journal[e.Step] = j
	return nil
}

func (t *tx) TruncateJournal(step string, seq int) error {
	if t.st == nil {
		return nil
	}
	j := t.st.journal[step]
	t.st.journal[step] = slices.DeleteFunc(j, func(e store.JournalEntry) bool { return e.Seq >= seq })
	return nil
}

func (t *tx) Tasks() ([]store.Task, error) {
	out := make([]store.Task, 0, len(t.tasks))
	for _, k := range t.sortedTaskIDs() {
		out = append(out, *t.tasks[k])
	}
	return out, nil
}

func (t *tx) sortedTaskIDs() []int64 {
	ids := make([]int64, 0, len(t.tasks))
	for id := range t.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (t *tx) AddTask(task *store.Task) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	t.s.nextID++
	task.ID = t.s.nextID
	task.Exec = t.id
	c := *task
	t.tasks[c.ID] = &c
	return nil
}

func (t *tx) PutTask(task *store.Task) error {
	if _, ok := t.tasks[task.ID]; !ok {
		return store.ErrNotFound
	}
	c := *task
	c.Exec = t.id
	t.tasks[c.ID] = &c
	return nil
}

func (t *tx) DeleteTask(id int64) error {
	delete(t.tasks, id)
	return nil
}

// Claim implements store.Store, oldest ReadyAt first.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]store.Task, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var ready []*store.Task
	for _, t := range s.tasks {
		if !t.ReadyAt.After(now) && (t.Owner == "" || !t.LeaseUntil.After(now)) {
			ready = append(ready, t)
		}
	}
	sort.Slice(ready, func(i, j int) bool {
		if !ready[i].ReadyAt.Equal(ready[j].ReadyAt) {
			return ready[i].ReadyAt.Before(ready[j].ReadyAt)
		}
		return ready[i].ID < ready[j].ID
	})
	if len(ready) > limit {
		ready = ready[:limit]
	}
	out := make([]store.Task, len(ready))
	for i, t := range ready {
		t.Owner, t.LeaseUntil = owner, now.Add(lease)
		out[i] = *t
	}
	return out, nil
}

// ExtendLeases implements store.Store.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var lost []int64
	for _, id := range ids {
		t := s.tasks[id]
		if t == nil || t.Owner != owner {
			lost = append(lost, id)
			continue
		}
		t.LeaseUntil = until
	}
	return lost, nil
}

// Release implements store.Store.
func (s *Store) Release(ctx context.Context, owner string, ids []int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if t := s.tasks[id]; t != nil && t.Owner == owner {
			t.Owner, t.LeaseUntil = "", time.Time{}
		}
	}
	return nil
}

// NextReadyAt implements store.Store.
func (s *Store) NextReadyAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	for _, t := range s.tasks {
		at := t.ReadyAt
		if t.Owner != "" && t.LeaseUntil.After(at) {
			at = t.LeaseUntil
		}
		if at.After(now) && (next.IsZero() || at.Before(next)) {
			next = at
		}
	}
	return next, !next.IsZero(), nil
}

// Execution implements store.Store.
func (s *Store) Execution(ctx context.Context, id string) (*store.Execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.execs[id]
	if st == nil {
		return nil, store.ErrNotFound
	}
	e := st.e
	e.Inputs = slices.Clone(e.Inputs)
	return &e, nil
}

// Steps implements store.Store.
func (s *Store) Steps(ctx context.Context, id string) ([]store.Step, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{st: s.execs[id]}
	return t.Steps()
}

// Journal implements store.Store.
func (s *Store) Journal(ctx context.Context, id, step string) ([]store.JournalEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &tx{st: s.execs[id]}
	return t.Journal(step)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Execution, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var before int64 = 1<<63 - 1
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil {
			return nil, "", store.ErrBadCursor
		}
		before = n
	}
	var all []*execState
	for _, st := range s.execs {
		e := &st.e
		if st.order >= before || (q.Graph != "" && e.Graph != q.Graph) || (q.Status != "" && e.Status != q.Status) ||
			(!q.CreatedAfter.IsZero() && !e.CreatedAt.After(q.CreatedAfter)) ||
			(!q.CreatedBefore.IsZero() && !e.CreatedAt.Before(q.CreatedBefore)) {
			continue
		}
		all = append(all, st)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].order > all[j].order })
	next := ""
	if len(all) > limit {
		all = all[:limit]
		next = strconv.FormatInt(all[limit-1].order, 10)
	}
	out := make([]store.Execution, len(all))
	for i, st := range all {
		out[i] = st.e
		out[i].Inputs = slices.Clone(st.e.Inputs)
	}
	return out, next, nil
}

// CacheGet implements store.Store.
func (s *Store) CacheGet(ctx context.Context, key string, now time.Time) ([]byte, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.cache[key]
	if !ok || !now.Before(e.expires) {
		return nil, false, nil
	}
	return e.value, true, nil
}

// CacheSet implements store.Store.
func (s *Store) CacheSet(ctx context.Context, key string, value []byte, expires time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cache[key] = cacheEntry{value: slices.Clone(value), expires: expires}
	return nil
}

// Close implements store.Store.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}
