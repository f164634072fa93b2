//go:build !linux

package docket_test

import "time"

// sleepUntil returns at t (see the Linux version).
func sleepUntil(t time.Time) { time.Sleep(time.Until(t)) }
