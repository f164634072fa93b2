package docket_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that no test leaves a goroutine behind. When the crash
// test starts this binary as a worker process, it runs the worker instead.
func TestMain(m *testing.M) {
	if db := os.Getenv(crashWorkerEnv); db != "" {
		crashWorker(db)
		return
	}
	if spec := os.Getenv(benchWorkerEnv); spec != "" {
		benchWorker(spec)
		return
	}
	if spec := os.Getenv(benchStarterEnv); spec != "" {
		benchStarter(spec)
		return
	}
	if db := os.Getenv(sessionWorkerEnv); db != "" {
		sessionWorker(db)
		return
	}
	goleak.VerifyTestMain(m)
}
