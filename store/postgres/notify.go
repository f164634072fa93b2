package postgres

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/docket-run/docket/store"
)

// A notification's payload is the kinds of change, a colon and the
// execution ID: "x" stands for store.EventExec, "f" for store.EventFinished
// and "t" for store.EventTask, so "xt:ID" is both of the first and third.
// A finished execution's payload also carries its outcome when it fits:
// the kind "o" says that a JSON outcome (with the ID) follows the colon
// instead of the bare ID, so that callers waiting for the result need not
// read it. NOTIFY takes payloads shorter than 8000 bytes; an execution
// whose ID does not fit sends "r", which listeners take as store.EventReset.
const maxIDInPayload = 7900

// outcome is the JSON of a finished execution in a payload.
type outcome struct {
	ID         string       `json:"id"`
	Graph      string       `json:"g"`
	Status     store.Status `json:"s"`
	Error      string       `json:"e,omitempty"`
	Result     *store.Value `json:"r,omitempty"`
	FinishedAt time.Time    `json:"at"`
}

// eventPayload returns the payload of an Update's notification, or "" when
// it changed nothing. final, if known, is the execution as it finished.
func eventPayload(id string, changed, finished, ready bool, final *store.Execution) string {
	var kinds string
	if changed {
		kinds += "x"
	}
	if finished {
		kinds += "f"
	}
	if ready {
		kinds += "t"
	}
	switch {
	case kinds == "":
		return ""
	case len(id) > maxIDInPayload:
		return "r"
	}
	if finished && final != nil {
		b, err := json.Marshal(outcome{ID: id, Graph: final.Graph, Status: final.Status, Error: final.Error,
			Result: final.Result, FinishedAt: final.FinishedAt})
		if err == nil && len(kinds)+2+len(b) <= maxIDInPayload {
			return kinds + "o:" + string(b)
		}
	}
	return kinds + ":" + id
}

// payload returns the payload of the transaction's notification, or "".
func (t *tx) payload() string {
	var final *store.Execution
	if t.finished && t.exec != nil && t.exec.Status.Finished() {
		final = t.exec
	}
	return eventPayload(t.id, t.changed || t.status, t.finished, t.offers > 0, final)
}

// A notice is a transaction's notification, with what handing its task
// off and telling this store's listeners need.
type notice struct {
	payload string
	// hand: the transaction made exactly one task claimable, ready now and
	// pinned to no worker, in queue; exec is its execution.
	hand  bool
	queue string
	exec  string
	// local: all the notice tells is that the execution was created or
	// ended (final, as it ended, when it did), and no other store watches
	// it, so it goes to this store's listeners alone (see Watch).
	local bool
	final *store.Execution
}

// notice returns the transaction's notice; its payload is "" when it
// changed nothing.
func (t *tx) notice() notice {
	n := notice{payload: t.payload(), exec: t.id}
	if o := t.offer; t.offers == 1 && o.Worker == "" && !o.ReadyAt.After(time.Now()) {
		n.hand, n.queue = true, o.Queue
	}
	self := t.s.self
	elsewhere := slices.ContainsFunc(t.watchers, func(w string) bool { return w != self })
	if n.payload != "" && n.payload != "r" && !t.changed && t.offers == 0 && !elsewhere {
		n.local = true
		if t.finished && t.exec != nil && t.exec.Status.Finished() {
			x := t.exec
			n.final = &store.Execution{ID: t.id, Graph: x.Graph, Status: x.Status, Error: x.Error,
				Result: cloneValue(x.Result), FinishedAt: x.FinishedAt}
		}
	}
	return n
}

// offered records that task became claimable in the transaction.
func (t *tx) offered(task *store.Task) {
	t.offers++
	t.offer = *task
}

// Handing a task off: a notification that makes one task claimable names
// one of the workers waiting for tasks of its queue (see claimWaiting),
// chosen by a hash of the execution's ID and the worker's, so that only
// that worker claims: "t@N/WORKER:ID", where N is the length in bytes of
// the worker's ID. Without a waiting worker the payload goes as it is.
const sqlNotifyHanded = `SELECT pg_notify($1, $2 || coalesce((SELECT '@' || octet_length(w.worker) || '/' || w.worker
	FROM waiting w WHERE w.queue = $4 AND w.until > now() AND octet_length(w.worker) <= $6
	ORDER BY hashtext(w.worker || $5) LIMIT 1), '') || $3)`

// maxPayload is the longest payload NOTIFY takes.
const maxPayload = 7999

// notifying is what a transaction's notices queued: the statements that
// send them, and the notices left for this store's listeners alone (see
// tellLocal).
type notifying struct {
	stmts int
	local []notice
}

// queueNotifies queues the notifications of notices (those with a
// payload, but for those local to this store).
func queueNotifies(b *pgx.Batch, channel string, notices []notice) *notifying {
	nf := &notifying{}
	var payloads []string
	var only notice
	for _, n := range notices {
		switch {
		case n.payload == "":
		case n.local:
			nf.local = append(nf.local, n)
		default:
			payloads = append(payloads, n.payload)
			only = n
		}
	}
	switch len(payloads) {
	case 0:
	case 1:
		nf.stmts = 1
		kinds, rest, ok := strings.Cut(only.payload, ":")
		if !only.hand || !ok {
			b.Queue(sqlNotify, channel, only.payload)
			break
		}
		room := maxPayload - len(only.payload) - len("@9999/")
		b.Queue(sqlNotifyHanded, channel, kinds, ":"+rest, only.queue, only.exec, room)
	default:
		nf.stmts = 1
		b.Queue(sqlNotifyMany, channel, textArray(payloads))
	}
	return nf
}

// read reads the results of what queueNotifies queued.
func (nf *notifying) read(br pgx.BatchResults) error {
	for range nf.stmts {
		if _, err := br.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// splitPayload splits a payload into its kinds, the worker it names (or
// ""), and what follows the colon.
func splitPayload(p string) (kinds, worker, rest string, ok bool) {
	i := strings.IndexFunc(p, func(r rune) bool { return r < 'a' || r > 'z' })
	if i <= 0 {
		return "", "", "", false
	}
	kinds, p = p[:i], p[i:]
	if p[0] == '@' {
		n, after, found := strings.Cut(p[1:], "/")
		size, err := strconv.Atoi(n)
		if !found || err != nil || size <= 0 || size >= len(after) {
			return "", "", "", false
		}
		worker, p = after[:size], after[size:]
	}
	if p[0] != ':' {
		return "", "", "", false
	}
	return kinds, worker, p[1:], true
}

// parsePayload returns the events of a notification. Anything it does not
// understand is a reset, so that listeners look at everything again.
func parsePayload(p string) []store.Event {
	reset := []store.Event{{Kind: store.EventReset}}
	kinds, worker, id, ok := splitPayload(p)
	if !ok {
		return reset
	}
	var final *store.Execution
	if strings.ContainsRune(kinds, 'o') {
		var o outcome
		if err := json.Unmarshal([]byte(id), &o); err != nil || !o.Status.Finished() {
			return reset
		}
		id = o.ID
		final = &store.Execution{ID: o.ID, Graph: o.Graph, Status: o.Status, Error: o.Error, Result: o.Result,
			FinishedAt: o.FinishedAt}
	}
	out := make([]store.Event, 0, len(kinds))
	for _, k := range kinds {
		switch k {
		case 'x':
			out = append(out, store.Event{Kind: store.EventExec, Exec: id})
		case 'f':
			out = append(out, store.Event{Kind: store.EventFinished, Exec: id, Final: final})
		case 't':
			out = append(out, store.Event{Kind: store.EventTask, Exec: id, Worker: worker})
		case 'o':
			if final == nil || !strings.ContainsRune(kinds, 'f') {
				return reset
			}
		default:
			return reset
		}
	}
	return out
}

// Timings of the listener connection.
var (
	// idlePing: after this long without a notification the listener checks
	// that its connection is alive (a dead peer can leave a socket that
	// neither reads nor fails for many minutes).
	idlePing = 30 * time.Second
	// pingTimeout bounds that check.
	pingTimeout = 10 * time.Second
	// minBackoff and maxBackoff bound the wait between reconnection attempts.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 10 * time.Second
)

// Listen implements store.Notifier. Each call opens a connection of its own
// (outside the pool), LISTENs on the schema's channel and returns; a
// goroutine then calls fn for each notification until ctx ends or the
// store is closed. When the connection is lost, it reconnects, retrying
// with exponential backoff, and calls fn with store.EventReset once it
// listens again. fn runs on that goroutine and should return quickly:
// notifications queue while it runs. The events of this store's own
// commits that went to no other process (see Watch) are given to fn by
// the goroutine that committed them, once committed, so fn may be called
// from several goroutines at once.
func (s *Store) Listen(ctx context.Context, fn func(store.Event)) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	conn, err := s.listenConn(ctx)
	if err != nil {
		return s.ctxErr(ctx, "listen", err)
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		closeConn(conn)
		return s.check(ctx)
	}
	s.wg.Add(1)
	s.listening.Add(1)
	s.mu.Unlock()
	local := s.addLocal(fn)
	go func() {
		defer s.dropLocal(local)
		s.listenLoop(ctx, conn, fn)
	}()
	return nil
}

// listenConn connects and listens.
func (s *Store) listenConn(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, s.listen)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	return conn, nil
}

// closeConn closes a connection and waits until it is all gone.
func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
	select {
	case <-c.PgConn().CleanupDone():
	case <-ctx.Done():
	}
}

func (s *Store) listenLoop(ctx context.Context, conn *pgx.Conn, fn func(store.Event)) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	for {
		done := s.wait(ctx, conn, fn)
		s.listening.Add(-1)
		closeConn(conn)
		if done {
			return
		}
		if conn = s.reconnect(ctx); conn == nil {
			return
		}
		s.listening.Add(1)
		fn(store.Event{Kind: store.EventReset})
	}
}

// wait delivers notifications until the connection fails (false) or ctx
// ends (true).
func (s *Store) wait(ctx context.Context, conn *pgx.Conn, fn func(store.Event)) bool {
	for {
		wctx, cancel := context.WithTimeout(ctx, idlePing)
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return true
		case err == nil:
			for _, ev := range parsePayload(n.Payload) {
				fn(ev)
			}
			continue
		case !idle || conn.IsClosed():
			return false
		}
		pctx, cancel := context.WithTimeout(ctx, pingTimeout)
		err = conn.Ping(pctx)
		cancel()
		if ctx.Err() != nil {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// reconnect connects again, waiting between attempts, until it listens or
// ctx ends (nil).
func (s *Store) reconnect(ctx context.Context) *pgx.Conn {
	backoff := minBackoff
	for {
		conn, err := s.listenConn(ctx)
		if err == nil {
			return conn
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}
