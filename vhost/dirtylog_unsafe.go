package vhost

import (
	"sync/atomic"
	"unsafe"
)

// orByte ORs bit into b[i] atomically. Go has no 8-bit atomics: it ORs the
// aligned 32-bit word that holds the byte (little-endian hosts only, like the
// rest of the package), which leaves the other three bytes as they are even
// when the front-end clears bits in them at the same time.
func orByte(b []byte, i int, bit uint8) {
	_ = b[i]
	p := unsafe.Pointer(unsafe.SliceData(b))
	sh := (uintptr(p) + uintptr(i)) & 3
	// The word may start before b or end after it: b starts inside a page-aligned
	// mapping at an offset the front-end chose, and the mapping covers whole words
	// around it (MapFd maps whole pages, from the one that holds the offset).
	atomic.OrUint32((*uint32)(unsafe.Add(p, i-int(sh))), uint32(bit)<<(8*sh))
}
