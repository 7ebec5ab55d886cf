package vring

import (
	"sync/atomic"
	"unsafe"
)

// Shared ring fields are accessed here and only here through unsafe.
//
// Go has no 16-bit atomics. Every 16-bit shared index or flags field is
// accessed through the naturally aligned 32-bit word that contains it:
//
//   - Loads use atomic.LoadUint32 of the word and take the half. Reading the
//     other half is harmless whoever writes it.
//   - Where both halves have the same writer (split avail flags+idx, both
//     written by the driver; split used flags+idx, both by the device; packed
//     descriptor id+flags, written by whichever side owns the descriptor;
//     packed event off_wrap+flags, one writer per structure) the writer keeps
//     a private copy of both halves and stores the whole word with
//     atomic.StoreUint32.
//   - Where the other half may have another writer or is outside the ring
//     structure (split used_event and avail_event, which sit at the tail of
//     their rings, next to padding or, for a 1-entry ring, an avail entry),
//     store16 uses a compare-and-swap loop on the word: the peer's concurrent
//     write to the other half makes the CAS fail and we retry, so it is
//     never overwritten.
//
// The packed driver publishes a batch with one release: the words of all but
// the first descriptor of a batch are written with plain stores before the
// first descriptor's word is stored atomically, and the peer reads ring
// positions strictly in order, acquiring each batch's first word before it
// looks at the rest. On amd64 this saves a locked instruction per
// descriptor. The packed device's Push does the same with storeRel32 (a
// plain store on amd64, see storerel_unsafe.go) for every word, the first
// last; UseDirect's buffers, each a whole packet, are published in ring
// order. NeedNotify issues a full fence before it loads the driver's event
// suppression word.
//
// This needs the ring slices to start 4-byte aligned in host memory and to
// cover the containing word of their last field (the *Size functions round
// up); New* functions check both. The one exception is the split avail ring
// on the device side, which the spec aligns to 2 only and the device only
// loads: load16 finds the containing word from the field's address. Go's atomics are sequentially consistent:
// each store is a release, each load an acquire, and a store followed by a
// load of another word is not reordered (the store-load fence that
// vring_need_event checks need, §2.7.10 and §2.8.10); where a release store
// comes before such a check, fence supplies that ordering.

var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func wordPtr(b []byte, off int) *uint32 {
	p := b[off:][:4]
	return (*uint32)(unsafe.Pointer(&p[0]))
}

func load32(b []byte, off int) uint32 { return atomic.LoadUint32(wordPtr(b, off)) }

func store32(b []byte, off int, v uint32) { atomic.StoreUint32(wordPtr(b, off), v) }

// load16 loads the 16-bit field at b[off:off+2], 2-aligned in host memory,
// atomically: it loads the 4-byte-aligned word of host memory that holds it
// and takes the half. The word is found from the field's address, not from
// off, so b itself need only be 2-aligned (the device side of a split avail
// ring, §2.7). Then the word may reach 2 bytes before b's start or after its
// end; it is readable all the same: it shares its aligned 4 bytes with the
// field, so it lies in the same page of a mapping and in the same Go
// allocation (both are at least 8-byte granular).
func load16(b []byte, off int) uint16 {
	p := unsafe.Pointer(&b[off:][:2][0])
	a := uintptr(p) & 2
	w := atomic.LoadUint32((*uint32)(unsafe.Add(p, -int(a))))
	return uint16(w >> (a * 8))
}

// store16 stores the 16-bit field at off without disturbing the other half
// of its word (CAS loop; see above). A peer that rewrites the other half
// without pause (a hostile guest scribbling on the padding after its used
// ring) could fail the CAS for ever and hold the datapath in this loop; after
// store16Tries failures the field is written with a plain 16-bit store, which
// cannot disturb the other half either, only the race detector's view of it.
func store16(b []byte, off int, v uint16) {
	p := wordPtr(b, off&^3)
	shift := uint(off&2) * 8
	for range store16Tries {
		old := atomic.LoadUint32(p)
		nw := old&^(0xffff<<shift) | uint32(v)<<shift
		if atomic.CompareAndSwapUint32(p, old, nw) {
			return
		}
	}
	h := b[off:][:2]
	*(*uint16)(unsafe.Pointer(&h[0])) = v
}

// store16Tries bounds store16's CAS loop.
const store16Tries = 64

// aligned2 reports whether b starts 2-byte aligned in host memory.
func aligned2(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&1 == 0
}

// aligned4 reports whether b starts 4-byte aligned in host memory.
func aligned4(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&3 == 0
}

// fence is a full barrier (a store-load fence included): an atomic
// read-modify-write of w, a word private to the queue so that no other core
// contends for its cache line.
func fence(w *uint32) { atomic.AddUint32(w, 1) }
