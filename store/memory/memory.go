// Package memory is an in-process Store for tests. It keeps everything in
// maps under one mutex and passes the same conformance suite as the
// database-backed stores; nothing survives the process.
//
// Claim scans all tasks; workers' liveness (from ExtendLeases), which
// decides whether a pinned task may go to another worker, is a map from
// worker ID to the time it is alive until.
//
// Like a database it keeps copies: records passed in or handed out share no
// memory with the store, and times are kept in UTC to the microsecond
// (store/storetest.Precision), so code tested against it sees what it would
// see from store/sqlite.
package memory

import (
	"cmp"
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
	// workers maps a worker ID to when it is alive until (ExtendLeases).
	workers map[string]time.Time
	closed  bool
}

type execState struct {
	e       store.Execution
	order   int64
	steps   map[string]store.Step
	journal map[string][]store.JournalEntry
	signals []store.Signal // by Seq
	lastSig int64          // the highest Seq ever given, deleted or not
}

type cacheEntry struct {
	value   []byte
	expires time.Time
}

// New returns an empty store.
func New() *Store {
	return &Store{execs: map[string]*execState{}, tasks: map[int64]*store.Task{}, cache: map[string]cacheEntry{},
		workers: map[string]time.Time{}}
}

var _ store.Store = (*Store)(nil)

// lock takes the store's mutex unless ctx is done or the store is closed.
// On success the caller must unlock s.mu.
func (s *Store) lock(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return store.ErrClosed
	}
	return nil
}

// Update implements store.Store. Updates are serialized by the store's mutex;
// fn works on copies that replace the originals only if it succeeds.
func (s *Store) Update(ctx context.Context, id string, fn func(store.Tx) error) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
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
	c := &execState{e: cloneExec(st.e), order: st.order, lastSig: st.lastSig, steps: make(map[string]store.Step, len(st.steps)),
		journal: make(map[string][]store.JournalEntry, len(st.journal))}
	for k, v := range st.steps {
		c.steps[k] = cloneStep(v)
	}
	for k, v := range st.journal {
		c.journal[k] = cloneJournal(v)
	}
	c.signals = cloneSignals(st.signals)
	return c
}

func cloneSignals(ss []store.Signal) []store.Signal {
	if ss == nil {
		return nil
	}
	out := make([]store.Signal, len(ss))
	for i, s := range ss {
		s.Payload.Data = cloneBytes(s.Payload.Data)
		s.SentAt = norm(s.SentAt)
		out[i] = s
	}
	return out
}

func (t *tx) Signals() ([]store.Signal, error) {
	if t.st == nil {
		return nil, nil
	}
	return cloneSignals(t.st.signals), nil
}

func (t *tx) AddSignal(s *store.Signal) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	t.st.lastSig++
	s.Exec, s.Seq = t.id, t.st.lastSig
	t.st.signals = append(t.st.signals, cloneSignals([]store.Signal{*s})...)
	return nil
}

// signal returns the position of the signal with seq in the inbox, or -1.
func (t *tx) signal(seq int64) int {
	if t.st == nil {
		return -1
	}
	i, ok := slices.BinarySearchFunc(t.st.signals, seq, func(s store.Signal, seq int64) int { return cmp.Compare(s.Seq, seq) })
	if !ok {
		return -1
	}
	return i
}

func (t *tx) PutSignal(s *store.Signal) error {
	i := t.signal(s.Seq)
	if i < 0 {
		return store.ErrNotFound
	}
	c := cloneSignals([]store.Signal{*s})[0]
	c.Exec = t.id
	t.st.signals[i] = c
	return nil
}

func (t *tx) DeleteSignal(seq int64) error {
	if i := t.signal(seq); i >= 0 {
		t.st.signals = slices.Delete(t.st.signals, i, i+1)
	}
	return nil
}

// Signals implements store.Store.
func (s *Store) Signals(ctx context.Context, id string) ([]store.Signal, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t := &tx{st: s.execs[id]}
	return t.Signals()
}

// norm is how a database keeps a time: UTC, to the microsecond.
func norm(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Truncate(time.Microsecond).UTC()
}

func cloneBytes(b []byte) []byte {
	if b == nil {
		return nil
	}
	return slices.Clone(b)
}

func cloneValue(v *store.Value) *store.Value {
	if v == nil {
		return nil
	}
	return &store.Value{Type: v.Type, Data: cloneBytes(v.Data)}
}

// cloneExec returns a deep copy of e with normalized times.
func cloneExec(e store.Execution) store.Execution {
	if e.Inputs != nil {
		in := make([]store.Value, len(e.Inputs))
		for i, v := range e.Inputs {
			in[i] = store.Value{Type: v.Type, Data: cloneBytes(v.Data)}
		}
		e.Inputs = in
	}
	e.Result = cloneValue(e.Result)
	if e.Runs != nil {
		runs := make([]store.RunRecord, len(e.Runs))
		for i, r := range e.Runs {
			r.StartedAt, r.EndedAt = norm(r.StartedAt), norm(r.EndedAt)
			runs[i] = r
		}
		e.Runs = runs
	}
	e.Deadline, e.CreatedAt, e.UpdatedAt, e.FinishedAt = norm(e.Deadline), norm(e.CreatedAt), norm(e.UpdatedAt), norm(e.FinishedAt)
	return e
}

// cloneStep returns a deep copy of s with normalized times.
func cloneStep(s store.Step) store.Step {
	s = s.Clone()
	s.WakeAt, s.ReadyAt, s.StartedAt, s.FinishedAt = norm(s.WakeAt), norm(s.ReadyAt), norm(s.StartedAt), norm(s.FinishedAt)
	return s
}

func cloneEntry(e store.JournalEntry) store.JournalEntry {
	e.Data = cloneBytes(e.Data)
	e.WakeAt = norm(e.WakeAt)
	return e
}

func cloneJournal(j []store.JournalEntry) []store.JournalEntry {
	out := make([]store.JournalEntry, len(j))
	for i, e := range j {
		out[i] = cloneEntry(e)
	}
	return out
}

func normTask(t store.Task) store.Task {
	t.ReadyAt, t.LeaseUntil = norm(t.ReadyAt), norm(t.LeaseUntil)
	return t
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
	e := cloneExec(t.st.e)
	return &e, nil
}

func (t *tx) CreateExecution(e *store.Execution) error {
	if t.st != nil {
		return store.ErrExists
	}
	c := cloneExec(*e)
	c.ID = t.id
	t.st = &execState{e: c, steps: map[string]store.Step{}, journal: map[string][]store.JournalEntry{}}
	t.created = true
	return nil
}

func (t *tx) PutExecution(e *store.Execution) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := cloneExec(*e)
	c.ID = t.id
	t.st.e = c
	return nil
}

func (t *tx) Steps() ([]store.Step, error) {
	if t.st == nil {
		return nil, nil
	}
	out := make([]store.Step, 0, len(t.st.steps))
	for _, s := range t.st.steps {
		out = append(out, cloneStep(s))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (t *tx) PutStep(s *store.Step) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := cloneStep(*s)
	c.Exec = t.id
	t.st.steps[s.Name] = c
	return nil
}

func (t *tx) Journal(step string) ([]store.JournalEntry, error) {
	if t.st == nil {
		return nil, nil
	}
	return cloneJournal(t.st.journal[step]), nil
}

func (t *tx) PutJournal(e *store.JournalEntry) error {
	if t.st == nil {
		return store.ErrNotFound
	}
	c := cloneEntry(*e)
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
	c := normTask(*task)
	t.tasks[c.ID] = &c
	return nil
}

func (t *tx) PutTask(task *store.Task) error {
	if _, ok := t.tasks[task.ID]; !ok {
		return store.ErrNotFound
	}
	c := normTask(*task)
	c.Exec = t.id
	t.tasks[c.ID] = &c
	return nil
}

func (t *tx) DeleteStep(name string) error {
	if t.st != nil {
		delete(t.st.steps, name)
		delete(t.st.journal, name)
	}
	return nil
}

func (t *tx) DeleteTask(id int64) error {
	delete(t.tasks, id)
	return nil
}

// Claim implements store.Store, oldest ReadyAt first.
func (s *Store) Claim(ctx context.Context, owner, queue string, now time.Time, lease time.Duration, limit int) ([]store.Task, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	if limit <= 0 {
		return nil, nil
	}
	var ready []*store.Task
	for _, t := range s.tasks {
		if t.Queue == queue && !t.ReadyAt.After(now) && (t.Owner == "" || !t.LeaseUntil.After(now)) &&
			(t.Worker == "" || t.Worker == owner || !s.workers[t.Worker].After(now)) {
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
		t.Owner, t.LeaseUntil = owner, norm(now.Add(lease))
		t.Claims++
		out[i] = *t
	}
	return out, nil
}

// deadFor is how long a worker stays in the workers map after it stopped
// being alive.
const deadFor = 24 * time.Hour

// ExtendLeases implements store.Store. It records owner as alive until
// until, and forgets workers that were dead for more than a day by then.
func (s *Store) ExtendLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	until = norm(until)
	cutoff := until.Add(-deadFor)
	for w, alive := range s.workers {
		if alive.Before(cutoff) {
			delete(s.workers, w)
		}
	}
	s.workers[owner] = until
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
	if err := s.lock(ctx); err != nil {
		return err
	}
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
	if err := s.lock(ctx); err != nil {
		return time.Time{}, false, err
	}
	defer s.mu.Unlock()
	var next time.Time
	found := false
	for _, t := range s.tasks {
		at := t.ReadyAt
		if t.Owner != "" && t.LeaseUntil.After(at) {
			at = t.LeaseUntil
		}
		if at.After(now) && (!found || at.Before(next)) {
			next, found = at, true
		}
	}
	return next, found, nil
}

// Execution implements store.Store.
func (s *Store) Execution(ctx context.Context, id string) (*store.Execution, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	st := s.execs[id]
	if st == nil {
		return nil, store.ErrNotFound
	}
	e := cloneExec(st.e)
	return &e, nil
}

// Steps implements store.Store.
func (s *Store) Steps(ctx context.Context, id string) ([]store.Step, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t := &tx{st: s.execs[id]}
	return t.Steps()
}

// Snapshot implements store.Store.
func (s *Store) Snapshot(ctx context.Context, id, step string) (*store.Snapshot, error) {
	return store.ReadSnapshot(ctx, s, id, step)
}

// Journal implements store.Store.
func (s *Store) Journal(ctx context.Context, id, step string) ([]store.JournalEntry, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	t := &tx{st: s.execs[id]}
	return t.Journal(step)
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, q store.ListQuery) ([]store.Execution, string, error) {
	if err := s.lock(ctx); err != nil {
		return nil, "", err
	}
	defer s.mu.Unlock()
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var before int64 = 1<<63 - 1
	if q.Cursor != "" {
		n, err := strconv.ParseInt(q.Cursor, 10, 64)
		if err != nil || n <= 0 {
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
		out[i] = cloneExec(st.e)
	}
	return out, next, nil
}

// CacheGet implements store.Store. An entry is there until now reaches its expiry.
func (s *Store) CacheGet(ctx context.Context, key string, now time.Time) ([]byte, bool, error) {
	if err := s.lock(ctx); err != nil {
		return nil, false, err
	}
	defer s.mu.Unlock()
	e, ok := s.cache[key]
	if !ok || !now.Before(e.expires) {
		return nil, false, nil
	}
	return slices.Clone(e.value), true, nil
}

// CacheSet implements store.Store.
func (s *Store) CacheSet(ctx context.Context, key string, value []byte, expires time.Time) error {
	if err := s.lock(ctx); err != nil {
		return err
	}
	defer s.mu.Unlock()
	s.cache[key] = cacheEntry{value: slices.Clone(value), expires: norm(expires)}
	return nil
}

// Close implements store.Store. Later calls return store.ErrClosed; closing
// twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

// Tasks implements store.Store.
func (s *Store) Tasks(ctx context.Context, id string) ([]store.Task, error) {
	if err := s.lock(ctx); err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	var out []store.Task
	for _, t := range s.tasks {
		if t.Exec == id {
			out = append(out, *t)
		}
	}
	slices.SortFunc(out, func(a, b store.Task) int { return int(a.ID - b.ID) })
	return out, nil
}
