//go:build !amd64 || !gc || race

package vring

// storeRel32 stores v into the 32-bit word at off as a release (see
// storerel_unsafe.go); here an atomic store, which is one on every architecture.
func storeRel32(b []byte, off int, v uint32) { store32(b, off, v) }
