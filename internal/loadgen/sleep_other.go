//go:build !linux

package loadgen

import "time"

// SleepUntil returns at t (see the Linux version).
func SleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
