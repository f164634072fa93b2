package loadgen

import (
	"time"

	"golang.org/x/sys/unix"
)

// SleepUntil returns at t, give or take the kernel's wake-up. It sleeps
// in nanosleep rather than on a Go timer: an idle Go process wakes for a
// timer only when the poller's wait, which counts whole milliseconds,
// ends (measured here: half a millisecond late at the median, up to 1.1
// ms), which would add to every latency an open loop measures from when
// an execution was due, and which a request arriving on a socket does not
// wait. The goroutine holds its thread while it sleeps; the scheduler
// hands the thread's P to others meanwhile.
func SleepUntil(t time.Time) {
	for d := time.Until(t); d > 0; d = time.Until(t) {
		ts := unix.NsecToTimespec(int64(d))
		_ = unix.Nanosleep(&ts, nil) // EINTR: the loop sleeps the rest
	}
}
