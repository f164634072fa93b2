// Package stack grows a goroutine's stack ahead of deep work.
//
// A goroutine starts with a 2 KiB stack, and the runtime doubles it each
// time a call does not fit, copying it and walking every frame on it to
// fix their pointers. A goroutine that then goes deep — a worker's task
// running a step and leading a group of commits through the database
// driver — pays for three or four such copies, each walking a deeper
// stack than the last. Grow makes the stack big enough in one step, while
// it holds almost nothing to copy.
package stack

// Grow grows the calling goroutine's stack, if it is smaller, to 16 KiB:
// its frame takes 12 KiB, which a 2 KiB stack doubles to 16 KiB to fit.
// On a stack already that big it costs two calls and the clearing of its
// frame (a few hundred nanoseconds).
//
//go:noinline
func Grow() {
	var frame [12 << 10]byte
	keep(frame[:])
}

// keep takes Grow's array, so that the compiler keeps it, and so the
// frame: it cannot drop what a call it does not inline is given.
//
//go:noinline
func keep([]byte) {}
