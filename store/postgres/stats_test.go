package postgres_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/postgres"
	"github.com/docket-run/docket/store/postgres/pgtest"
)

// Stats counts the Updates, the groups they ran in, and the time they
// spent queued and running: Updates that queue behind a busy leader run
// together in one group, and their wait is counted.
func TestStats(t *testing.T) {
	s := open(t, pgtest.URL(t), postgres.MaxConns(4)) // one leader
	zero := s.Stats()
	if zero.Leaders != 1 || zero.Updates != 0 || zero.Groups != 0 || zero.Queued != 0 {
		t.Fatalf("fresh store: %+v", zero)
	}
	create(t, s, "lone")
	lone := s.Stats()
	if d := lone.Sub(zero); d.Updates != 1 || d.Groups != 1 || d.Running <= 0 {
		t.Fatalf("one Update: %+v", d)
	}

	// The leader is held inside a group's fn; five Updates queue behind it.
	const queued, hold = 5, 50 * time.Millisecond
	var creates []func() error
	for i := range queued {
		id := fmt.Sprint("queued-", i)
		creates = append(creates, func() error {
			return s.Update(t.Context(), id, func(tx store.Tx) error {
				return tx.CreateExecution(&store.Execution{ID: id, Run: 1, Graph: "g", Status: store.Running, CreatedAt: base})
			})
		})
	}
	whileLeaderHeld(t, s, "lone", hold, creates...)
	d := s.Stats().Sub(lone)
	if d.Updates != queued+1 || d.Groups != 2 {
		t.Errorf("held leader: %d Updates in %d groups, want %d in 2", d.Updates, d.Groups, queued+1)
	}
	if d.Waiting < queued*hold {
		t.Errorf("waiting %v, want at least %v (%d Updates queued for %v)", d.Waiting, queued*hold, queued, hold)
	}
	if d.Running < hold {
		t.Errorf("running %v, want at least the %v the leader was held", d.Running, hold)
	}
	if d.Queued != 0 {
		t.Errorf("%d still queued", d.Queued)
	}

	// An Update that fails counts as well: it ran to its outcome.
	before := s.Stats()
	bad := errors.New("refused")
	if err := s.Update(t.Context(), "lone", func(store.Tx) error { return bad }); !errors.Is(err, bad) {
		t.Fatalf("failing Update: %v", err)
	}
	if d := s.Stats().Sub(before); d.Updates != 1 || d.Groups != 1 {
		t.Errorf("failing Update: %+v", d)
	}
}

// whileLeaderHeld runs updates (each an Update of its own execution) while
// the one group leader of s is held inside an Update of execution held, so
// that they all queue behind it and then run as one group; once all are
// queued it holds them hold longer. It returns when all have returned, and
// fails t if any failed.
func whileLeaderHeld(t *testing.T, s *postgres.Store, held string, hold time.Duration, updates ...func() error) {
	t.Helper()
	started, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, len(updates)+1)
	wg.Go(func() {
		errs <- s.Update(t.Context(), held, func(store.Tx) error {
			close(started)
			<-release
			return nil
		})
	})
	<-started
	for _, u := range updates {
		wg.Go(func() { errs <- u() })
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Queued != len(updates) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("queued: %d, want %d", s.Stats().Queued, len(updates))
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(hold)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}
