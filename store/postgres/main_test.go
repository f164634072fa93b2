package postgres_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind: listeners must
// stop with their context or the store, and pools must close.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
