package vfio

import (
	"sync/atomic"
	"unsafe"
)

// MMIO is a mapped register window (a slice of a BAR from MapRegion). Each access is
// one load or store of the named width, never merged, split or elided: 32-bit accesses
// go through sync/atomic, narrower ones through non-inlined functions, so the compiler
// cannot cache or reorder them across calls. Offsets are checked against the
// window's length (a bad offset panics like any out-of-range index: it is a driver
// bug, not device input). Safe for concurrent use as far as the device allows.
type MMIO []byte

// at returns the address of the n bytes at off, checked against len(m) (a reslice
// alone would check against the capacity, which reaches past a window cut from a BAR).
func (m MMIO) at(off, n int) unsafe.Pointer {
	b := m[off:]
	_ = b[n-1]
	return unsafe.Pointer(&b[0])
}

//go:noinline
func (m MMIO) Read8(off int) uint8 { return *(*uint8)(m.at(off, 1)) }

//go:noinline
func (m MMIO) Write8(off int, v uint8) { *(*uint8)(m.at(off, 1)) = v }

//go:noinline
func (m MMIO) Read16(off int) uint16 { return *(*uint16)(m.at(off, 2)) }

//go:noinline
func (m MMIO) Write16(off int, v uint16) { *(*uint16)(m.at(off, 2)) = v }

func (m MMIO) Read32(off int) uint32 { return atomic.LoadUint32((*uint32)(m.at(off, 4))) }

func (m MMIO) Write32(off int, v uint32) { atomic.StoreUint32((*uint32)(m.at(off, 4)), v) }

// Write64 stores a 64-bit register as low then high 32-bit halves (VIRTIO 1.2 §4.1.3.1
// allows this for 64-bit fields).
func (m MMIO) Write64(off int, v uint64) {
	m.Write32(off, uint32(v))
	m.Write32(off+4, uint32(v>>32))
}
