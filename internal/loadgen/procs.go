package loadgen

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The benchmarks that span processes run a parent and several starter
// processes (the test binary run again), which talk over stdin and stdout:
// a starter warms up and writes "ready" (Ready), waits for a line from the
// parent (the start signal), runs its share, writes its latencies on one
// line (WriteLatencies) and whatever else its benchmark adds. The parent
// starts them (Start), waits until all are ready, sends the start signal
// to all (Go), and reads their latencies (Latencies) and the rest (Out).

// Ready tells the parent that this starter is warmed up, and waits for its
// start signal.
func Ready() error {
	if _, err := fmt.Println("ready"); err != nil {
		return err
	}
	_, err := bufio.NewReader(os.Stdin).ReadString('\n')
	return err
}

// WriteLatencies writes lat to w on one line, in microseconds.
func WriteLatencies(w io.Writer, lat []time.Duration) error {
	bw := bufio.NewWriter(w)
	for _, d := range lat {
		fmt.Fprint(bw, d.Microseconds(), " ")
	}
	fmt.Fprintln(bw)
	return bw.Flush()
}

// Starter is a starter process, seen from the parent.
type Starter struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	// Out reads the starter's standard output.
	Out *bufio.Reader
}

// Start runs exe (a test binary, which runs no test) with env added to
// this process's environment, its standard error going to this process's,
// and waits until it is ready.
func Start(exe string, env ...string) (*Starter, error) {
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Starter{cmd: cmd, in: in, Out: bufio.NewReader(out)}
	if line, err := s.Out.ReadString('\n'); err != nil || line != "ready\n" {
		s.Stop()
		return nil, fmt.Errorf("loadgen: starter not ready: %q, %v", line, err)
	}
	return s, nil
}

// Go sends the starter its start signal.
func (s *Starter) Go() error {
	_, err := io.WriteString(s.in, "go\n")
	return err
}

// Latencies reads the line of latencies that the starter writes when it is
// done (see WriteLatencies).
func (s *Starter) Latencies() ([]time.Duration, error) {
	line, err := s.Out.ReadString('\n')
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	for _, f := range strings.Fields(line) {
		us, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("loadgen: starter's latencies: %w", err)
		}
		lat = append(lat, time.Duration(us)*time.Microsecond)
	}
	return lat, nil
}

// Stop kills the starter, if it still runs, and waits for it.
func (s *Starter) Stop() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// GoAll sends every starter its start signal and returns the time it sent
// the first.
func GoAll(ss []*Starter) (time.Time, error) {
	t0 := time.Now()
	for _, s := range ss {
		if err := s.Go(); err != nil {
			return t0, err
		}
	}
	return t0, nil
}

// Share is starter k's share of n operations over parts starters, the
// remainder going to the first ones.
func Share(n, parts, k int) int {
	share := n / parts
	if k < n%parts {
		share++
	}
	return share
}

// StartAll starts one starter for each of envs, one at a time (each is
// ready before the next starts, so that they do not race to set up a
// schema, say); on failure it stops those it started.
func StartAll(exe string, envs []string) ([]*Starter, error) {
	var ss []*Starter
	for _, env := range envs {
		s, err := Start(exe, env)
		if err != nil {
			StopAll(ss)
			return nil, err
		}
		ss = append(ss, s)
	}
	return ss, nil
}

// StopAll stops every starter of ss.
func StopAll(ss []*Starter) {
	for _, s := range ss {
		s.Stop()
	}
}
