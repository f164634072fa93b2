package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/docket-run/docket/store"
)

// testSignals: the inbox keeps signals in arrival order per execution,
// round-trips them, records who consumed one, and a failed Update adds none.
func testSignals(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	sent := time.Date(2033, 3, 4, 5, 6, 7, 891234567, time.FixedZone("E", 3600))
	var a, b, c store.Signal
	update(t, s, "e1", func(tx store.Tx) error {
		a = store.Signal{Name: "approve", Payload: store.Value{Type: "*main.Approval", Data: []byte(`{"by":"ann"}`)}, SentAt: sent}
		b = store.Signal{Name: "reject", Payload: store.Value{Type: "string", Data: []byte(`"no"`)}, SentAt: sent.Add(time.Second)}
		if err := tx.AddSignal(&a); err != nil {
			return err
		}
		return tx.AddSignal(&b)
	})
	update(t, s, "e2", func(tx store.Tx) error {
		c = store.Signal{Name: "approve", Payload: store.Value{Type: "int", Data: []byte(`1`)}, SentAt: sent}
		return tx.AddSignal(&c)
	})
	if a.Seq != 1 || b.Seq != 2 || c.Seq != 1 || a.Exec != "e1" || c.Exec != "e2" {
		t.Fatalf("AddSignal set Seq %d, %d, %d and Exec %q, %q", a.Seq, b.Seq, c.Seq, a.Exec, c.Exec)
	}
	norm := func(sig store.Signal) store.Signal { sig.SentAt = sig.SentAt.Truncate(Precision).UTC(); return sig }
	got, err := s.Signals(t.Context(), "e1")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Signals(e1)", got, []store.Signal{norm(a), norm(b)})
	got, _ = s.Signals(t.Context(), "e2")
	check(t, "Signals(e2)", got, []store.Signal{norm(c)})

	// Consuming one is recorded; a failed Update adds and changes nothing.
	update(t, s, "e1", func(tx store.Tx) error {
		sigs, err := tx.Signals()
		if err != nil {
			return err
		}
		sigs[0].ConsumedBy = "wait-for-approval"
		return tx.PutSignal(&sigs[0])
	})
	boom := errors.New("boom")
	err = s.Update(t.Context(), "e1", func(tx store.Tx) error {
		if err := tx.AddSignal(&store.Signal{Name: "late", Payload: store.Value{Type: "int", Data: []byte("2")}, SentAt: sent}); err != nil {
			return err
		}
		sigs, _ := tx.Signals()
		sigs[1].ConsumedBy = "x"
		if err := tx.PutSignal(&sigs[1]); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v", err)
	}
	a.ConsumedBy = "wait-for-approval"
	got, _ = s.Signals(t.Context(), "e1")
	check(t, "Signals(e1) after consuming", got, []store.Signal{norm(a), norm(b)})

	var next store.Signal
	update(t, s, "e1", func(tx store.Tx) error {
		next = store.Signal{Name: "late", Payload: store.Value{Type: "int", Data: []byte("3")}, SentAt: sent}
		return tx.AddSignal(&next)
	})
	if next.Seq != 3 {
		t.Errorf("Seq after a rolled-back AddSignal = %d, want 3", next.Seq)
	}
	if got, err := s.Signals(t.Context(), "nope"); err != nil || len(got) != 0 {
		t.Errorf("Signals of an unknown execution = %v, %v; want none", got, err)
	}
	err = s.Update(t.Context(), "e1", func(tx store.Tx) error {
		return tx.PutSignal(&store.Signal{Seq: 99, Name: "x"})
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutSignal of an unknown signal: %v, want ErrNotFound", err)
	}
}

// testDeleteStep: DeleteStep removes a step and its journal, and nothing else.
func testDeleteStep(t *testing.T, s store.Store) {
	create(t, s, minimal("e"))
	update(t, s, "e", func(tx store.Tx) error {
		for _, name := range []string{"a", "b"} {
			if err := tx.PutStep(&store.Step{Name: name, Status: store.StepDone}); err != nil {
				return err
			}
			if err := tx.PutJournal(&store.JournalEntry{Step: name, Seq: 0, Kind: "run", Name: "x", Done: true}); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, "e", func(tx store.Tx) error {
		if err := tx.DeleteStep("missing"); err != nil {
			return err
		}
		return tx.DeleteStep("a")
	})
	steps, err := s.Steps(t.Context(), "e")
	if err != nil || len(steps) != 1 || steps[0].Name != "b" {
		t.Fatalf("steps after DeleteStep(a): %+v, %v", steps, err)
	}
	if j, _ := s.Journal(t.Context(), "e", "a"); len(j) != 0 {
		t.Errorf("journal of a deleted step: %+v", j)
	}
	if j, _ := s.Journal(t.Context(), "e", "b"); len(j) != 1 {
		t.Errorf("journal of b: %+v", j)
	}
}
