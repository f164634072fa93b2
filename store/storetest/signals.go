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

// testDeleteSignal: DeleteSignal removes one signal of one execution;
// deleting a missing one is not an error; Seqs are never given again, not
// even the deleted last one's; a failed Update deletes nothing.
func testDeleteSignal(t *testing.T, s store.Store) {
	create(t, s, minimal("e1"))
	create(t, s, minimal("e2"))
	sent := base
	sig := func(name string) store.Signal {
		return store.Signal{Name: name, Payload: store.Value{Type: "string", Data: []byte(`"` + name + `"`)}, SentAt: sent}
	}
	add := func(exec string, names ...string) []store.Signal {
		t.Helper()
		out := make([]store.Signal, len(names))
		update(t, s, exec, func(tx store.Tx) error {
			for i, n := range names {
				out[i] = sig(n)
				if err := tx.AddSignal(&out[i]); err != nil {
					return err
				}
			}
			return nil
		})
		return out
	}
	inbox := func(exec string) []store.Signal {
		t.Helper()
		got, err := s.Signals(t.Context(), exec)
		if err != nil {
			t.Fatalf("Signals(%s): %v", exec, err)
		}
		return got
	}
	del := func(exec string, seqs ...int64) {
		t.Helper()
		update(t, s, exec, func(tx store.Tx) error {
			for _, seq := range seqs {
				if err := tx.DeleteSignal(seq); err != nil {
					return err
				}
			}
			return nil
		})
	}
	e1 := add("e1", "a", "b", "c")
	e2 := add("e2", "a", "b")
	a, b, c := e1[0], e1[1], e1[2]

	// Deleting b of e1 leaves e2's b alone; deleting it again, or a Seq
	// never given, is not an error.
	del("e1", b.Seq)
	check(t, "e1 after deleting b", inbox("e1"), []store.Signal{a, c})
	check(t, "e2 after deleting e1's b", inbox("e2"), e2)
	del("e1", b.Seq, 99, 0, -1)
	check(t, "e1 after deleting missing signals", inbox("e1"), []store.Signal{a, c})
	del("nope", 1) // of an execution that does not exist

	// The deleted signal cannot be put.
	err := s.Update(t.Context(), "e1", func(tx store.Tx) error { return tx.PutSignal(&b) })
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("PutSignal of a deleted signal: %v, want ErrNotFound", err)
	}
	update(t, s, "e1", func(tx store.Tx) error {
		if _, err := tx.Signals(); err != nil {
			return err
		}
		if err := tx.PutSignal(&b); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("PutSignal of a deleted signal after reading the inbox: %v, want ErrNotFound", err)
		}
		return nil
	})

	// Deleting the last signal does not free its Seq.
	del("e1", c.Seq)
	d := add("e1", "d")[0]
	if d.Seq <= c.Seq {
		t.Errorf("AddSignal after deleting the last signal (Seq %d) gave Seq %d; Seqs must not be reused", c.Seq, d.Seq)
	}
	check(t, "e1 after adding d", inbox("e1"), []store.Signal{a, d})

	// In one Update: the Tx sees its deletes, and adds after them number on.
	var e, f store.Signal
	update(t, s, "e1", func(tx store.Tx) error {
		if err := tx.DeleteSignal(d.Seq); err != nil {
			return err
		}
		got, err := tx.Signals()
		if err != nil {
			return err
		}
		check(t, "Tx.Signals after DeleteSignal", got, []store.Signal{a})
		e = sig("e")
		if err := tx.AddSignal(&e); err != nil {
			return err
		}
		if err := tx.DeleteSignal(e.Seq); err != nil {
			return err
		}
		f = sig("f")
		if err := tx.AddSignal(&f); err != nil {
			return err
		}
		got, err = tx.Signals()
		if err != nil {
			return err
		}
		check(t, "Tx.Signals after add, delete, add", got, []store.Signal{a, f})
		// Consuming one after reading the inbox.
		f.ConsumedBy = "step"
		return tx.PutSignal(&f)
	})
	if e.Seq <= d.Seq || f.Seq <= e.Seq {
		t.Errorf("Seqs %d (after deleting %d), %d (after deleting %d): want them increasing", e.Seq, d.Seq, f.Seq, e.Seq)
	}
	check(t, "e1 after one Update of deletes and adds", inbox("e1"), []store.Signal{a, f})

	// A failed Update deletes nothing.
	err = s.Update(t.Context(), "e1", func(tx store.Tx) error {
		if err := tx.DeleteSignal(a.Seq); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("Update returned %v", err)
	}
	check(t, "e1 after a failed delete", inbox("e1"), []store.Signal{a, f})

	// Emptying the inbox does not restart the numbering.
	del("e1", a.Seq, f.Seq)
	check(t, "e1 emptied", inbox("e1"), []store.Signal(nil))
	g := add("e1", "g")[0]
	if g.Seq <= f.Seq {
		t.Errorf("AddSignal after emptying the inbox gave Seq %d, want more than %d", g.Seq, f.Seq)
	}
	check(t, "e1 at the end", inbox("e1"), []store.Signal{g})
	// e2 numbers on its own.
	if h := add("e2", "h")[0]; h.Seq != 3 {
		t.Errorf("e2's next Seq = %d, want 3", h.Seq)
	}
}
