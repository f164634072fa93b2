package stack

import (
	"testing"
	"unsafe"
)

// deep recurses n times with a frame of a little over 256 bytes each.
//
//go:noinline
func deep(n int) byte {
	var pad [256]byte
	pad[n%256] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[(n+1)%256]
}

// moved reports whether a new goroutine's stack moved (was copied to a
// bigger one) while it went about 7 KiB deep, after Grow when grow is set.
// A local's address changes exactly when its stack is copied.
func moved(grow bool) bool {
	done := make(chan bool)
	go func() {
		if grow {
			Grow()
		}
		var x byte
		before := uintptr(unsafe.Pointer(&x))
		deep(24)
		done <- uintptr(unsafe.Pointer(&x)) != before
	}()
	return <-done
}

func TestGrow(t *testing.T) {
	if !moved(false) {
		// The runtime sizes new goroutines' stacks from what it saw them
		// use (GODEBUG adaptivestackstart): here they start big enough.
		t.Skip("a new goroutine went 7 KiB deep without its stack moving: nothing for Grow to save here")
	}
	if moved(true) {
		t.Fatal("after Grow, going 7 KiB deep still moved the stack")
	}
}

// BenchmarkDeepGoroutine starts goroutines that each go about 12 KiB deep,
// with and without Grow first: "grown" pays one growth of a nearly empty
// stack where "plain" pays three, each copying what is on the stack by
// then.
func BenchmarkDeepGoroutine(b *testing.B) {
	for _, grow := range []bool{false, true} {
		name := "plain"
		if grow {
			name = "grown"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan byte)
			for b.Loop() {
				go func() {
					if grow {
						Grow()
					}
					done <- deep(40)
				}()
				<-done
			}
		})
	}
}
