package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/docket-run/docket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const result = "result: order 42: paid 1999 cents, shipped as TRACK-42"

var steps = []string{"validate", "charge", "ship", "notify"}

// build builds the example into a temporary directory.
func build(t *testing.T) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build the example with")
	}
	bin := filepath.Join(t.TempDir(), "crashrecovery")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// command prepares a run of the example on db, with steps that take
// stepTime and a short lease, so that the test does not wait long for a
// dead process's lease to run out.
func command(ctx context.Context, bin, db, stepTime string, args ...string) *exec.Cmd {
	args = append([]string{"-db", db, "-step-time", stepTime, "-lease", "2s"}, args...)
	return exec.CommandContext(ctx, bin, args...)
}

// count counts the occurrences of line in lines.
func count(lines []string, line string) int {
	n := 0
	for _, l := range lines {
		if l == line {
			n++
		}
	}
	return n
}

// ledgerLines reads the ledger, with each process's pid replaced by name.
func ledgerLines(t *testing.T, path string, names map[int]string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	for i, line := range lines {
		for pid, name := range names {
			line = strings.Replace(line, fmt.Sprintf("pid %d:", pid), name+":", 1)
		}
		lines[i] = line
	}
	return lines
}

// The first process kills itself in the middle of ship; the second finishes
// the execution, running ship again but not validate or charge; a third
// finds the execution finished and runs nothing.
func TestCrashAndResume(t *testing.T) {
	bin := build(t)
	db := filepath.Join(t.TempDir(), "order.db")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := command(ctx, bin, db, "50ms", "-crash-after", "2")
	out, err := first.Output()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || strings.Contains(string(out), "result:") {
		t.Fatalf("the first run should have died; it ended with %v and printed:\n%s", err, out)
	}

	second := command(ctx, bin, db, "50ms")
	out, err = second.Output()
	if err != nil || !strings.Contains(string(out), result) {
		t.Fatalf("second run: %v; printed:\n%s", err, out)
	}

	third := command(ctx, bin, db, "50ms")
	out, err = third.Output()
	if err != nil || strings.TrimSpace(string(out)) != fmt.Sprintf("pid %d: %s", third.Process.Pid, result) {
		t.Fatalf("third run: %v; printed:\n%s\nwant only the result", err, out)
	}

	got := ledgerLines(t, db+".ledger", map[int]string{first.Process.Pid: "first", second.Process.Pid: "second"})
	want := []string{
		"first: started validate",
		"first: finished validate",
		"first: started charge",
		"first: finished charge",
		"first: started ship", // killed here
		"second: started ship",
		"second: finished ship",
		"second: started notify",
		"second: finished notify",
	}
	if !slices.Equal(got, want) {
		t.Errorf("ledger:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A process killed from outside, at a moment the test does not choose: the
// steps that the database recorded as done by then never run again, and
// every other step runs to its end in the next process.
func TestKilledFromOutside(t *testing.T) {
	bin := build(t)
	db := filepath.Join(t.TempDir(), "order.db")
	ledger := db + ".ledger"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first := command(ctx, bin, db, "300ms")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once the ledger shows that charge has started.
	for {
		data, _ := os.ReadFile(ledger)
		if bytes.Contains(data, []byte("started charge")) {
			break
		}
		if ctx.Err() != nil {
			first.Process.Kill()
			first.Wait()
			t.Fatal("charge did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()

	// Which steps the database recorded as done: a client-only engine
	// (no workers) can describe the execution.
	eng, err := docket.Open(ctx, docket.Config{Store: "sqlite:" + db, Workers: -1,
		Graphs: []*docket.Graph{newGraph(&Fulfilment{})}})
	if err != nil {
		t.Fatal(err)
	}
	d, err := eng.Describe(ctx, "order-42")
	eng.Close()
	if err != nil {
		t.Fatal(err)
	}
	done := map[string]bool{}
	for _, s := range d.Steps {
		done[s.Name] = s.Status == "done"
	}
	if !done["validate"] || done["notify"] {
		t.Fatalf("charge was running, so validate must be done and notify not: %+v", d.Steps)
	}

	second := command(ctx, bin, db, "50ms")
	out, err := second.Output()
	if err != nil || !strings.Contains(string(out), result) {
		t.Fatalf("second run: %v; printed:\n%s", err, out)
	}

	lines := ledgerLines(t, ledger, map[int]string{first.Process.Pid: "first", second.Process.Pid: "second"})
	for _, s := range steps {
		if done[s] {
			// Completed before the kill: ran once, in the first process.
			if count(lines, "first: started "+s) != 1 || count(lines, "first: finished "+s) != 1 || count(lines, "second: started "+s) != 0 {
				t.Errorf("%s was done before the kill, yet the ledger shows:\n%s", s, strings.Join(lines, "\n"))
			}
			continue
		}
		// Not completed: ran to its end in the second process, and at most
		// partly in the first (it may have finished its work there and been
		// killed before its checkpoint).
		if count(lines, "second: started "+s) != 1 || count(lines, "second: finished "+s) != 1 || count(lines, "first: started "+s) > 1 {
			t.Errorf("%s was not done before the kill, yet the ledger shows:\n%s", s, strings.Join(lines, "\n"))
		}
	}
	t.Logf("done at the kill: %v; ledger:\n%s", done, strings.Join(lines, "\n"))
}

// run in this process, without a crash: each step runs once.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	f := &Fulfilment{Ledger: filepath.Join(dir, "ledger"), CrashAfter: -1}
	var out strings.Builder
	if err := run(context.Background(), &out, filepath.Join(dir, "order.db"), time.Second, f); err != nil {
		t.Fatal(err)
	}
	pid := os.Getpid()
	var want strings.Builder
	for _, s := range steps {
		fmt.Fprintf(&want, "pid %d: started %s\npid %d: finished %s\n", pid, s, pid, s)
	}
	ledger, err := os.ReadFile(f.Ledger)
	if err != nil {
		t.Fatal(err)
	}
	if string(ledger) != want.String() {
		t.Errorf("ledger:\n%s\nwant:\n%s", ledger, want.String())
	}
	fmt.Fprintf(&want, "pid %d: %s\n", pid, result)
	if out.String() != want.String() {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want.String())
	}
}
