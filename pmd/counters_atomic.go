//go:build !amd64 || !gc || race

package pmd

import "sync/atomic"

// bump adds n to a counter that only the calling goroutine writes (see
// counters_unsafe.go): an atomic load and store, with no read-modify-write.
func bump(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }
