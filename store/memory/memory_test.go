package memory_test

import (
	"errors"
	"testing"

	"github.com/docket-run/docket/store"
	"github.com/docket-run/docket/store/memory"
	"github.com/docket-run/docket/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return memory.New() })
}

func TestClosedIsErrClosed(t *testing.T) {
	s := memory.New()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execution(t.Context(), "x"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Execution after Close: %v, want ErrClosed", err)
	}
	if err := s.Update(t.Context(), "x", func(store.Tx) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close: %v, want ErrClosed", err)
	}
}
