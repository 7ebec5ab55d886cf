//go:build amd64 && gc && !race

package pmd

import (
	"sync/atomic"
	"unsafe"
)

// bump adds n to a counter that only the calling goroutine writes (a port's
// receive or transmit side, by the Port rules), as DPDK's per-queue counters
// do. On amd64 an aligned 64-bit load and store are each atomic, so a reader's
// Load never sees a torn value; plain ones avoid the locked add, and the locked
// exchange that atomic.Uint64.Store compiles to, each of which waits for every
// store pending in the core, a burst's stores into a peer's ring lines
// included. The argument rests on the gc compiler and amd64, hence the build
// tag; race-detector builds use atomics (counters_atomic.go).
func bump(c *atomic.Uint64, n uint64) {
	p := (*uint64)(unsafe.Pointer(c))
	*p += n
}
