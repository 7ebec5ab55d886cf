package afxdp

import (
	"fmt"
	"sync/atomic"
	"unsafe"
)

// Desc is struct xdp_desc: a packet (or fragment) at UMEM address Addr, Len bytes long.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// Slot is what a ring carries: a descriptor (rx, tx) or a UMEM address (fill,
// completion).
type Slot interface{ Desc | uint64 }

// ringMem is the shared part of a ring, with pointers into the mapping. The kernel
// writes *prod of rx/completion rings and *cons of fill/tx rings, and may set bits in
// *flags (XDP_RING_NEED_WAKEUP) at any time.
type ringMem[T Slot] struct {
	prod  *uint32
	cons  *uint32
	flags *uint32
	slots []T
	mask  uint32
	size  uint32
}

// newRingMem lays a ring over mem at the offsets the kernel reported
// (XDP_MMAP_OFFSETS). Every offset is bounds-checked before the pointer cast.
func newRingMem[T Slot](mem []byte, off RingOffsets, n uint32) (ringMem[T], error) {
	var r ringMem[T]
	if n == 0 || n&(n-1) != 0 {
		return r, fmt.Errorf("afxdp: ring size %d is not a power of two", n)
	}
	var zero T
	esz := uint64(unsafe.Sizeof(zero))
	l := uint64(len(mem))
	// Written as off > l-4 so that an offset near 2^64 cannot wrap past the check.
	if l < 4 || off.Producer > l-4 || off.Consumer > l-4 || off.Flags > l-4 ||
		off.Desc > l || uint64(n)*esz > l-off.Desc ||
		off.Producer%4 != 0 || off.Consumer%4 != 0 || off.Flags%4 != 0 || off.Desc%8 != 0 {
		return r, fmt.Errorf("afxdp: ring offsets %+v outside a %d-byte mapping", off, l)
	}
	r.prod = (*uint32)(unsafe.Pointer(&mem[off.Producer:][:4][0]))
	r.cons = (*uint32)(unsafe.Pointer(&mem[off.Consumer:][:4][0]))
	r.flags = (*uint32)(unsafe.Pointer(&mem[off.Flags:][:4][0]))
	b := mem[off.Desc:][:uint64(n)*esz]
	r.slots = unsafe.Slice((*T)(unsafe.Pointer(&b[0])), n)
	r.mask = n - 1
	r.size = n
	return r, nil
}

// ProdRing is a ring userspace produces into: fill (T = uint64) or tx (T = Desc).
//
// Ordering, following the kernel's xsk_queue.h protocol:
//   - Submit stores *prod with atomic.StoreUint32 after the slots are written: a
//     release (on amd64 an XCHG, a full barrier). It pairs with the kernel's
//     smp_load_acquire(&ring->producer) in xskq_cons_peek/xskq_cons_nb_entries, so the
//     kernel sees the slot contents the index covers.
//   - Free loads *cons with atomic.LoadUint32, an acquire. It pairs with the kernel's
//     smp_store_release(&ring->consumer) in __xskq_cons_release, so the kernel has
//     finished reading the slots before we overwrite them.
//   - NeedWakeup loads *flags with atomic.LoadUint32; the kernel sets the bit with
//     WRITE_ONCE under its own ordering, and a stale read costs only a late or spare kick.
type ProdRing[T Slot] struct {
	ringMem[T]
	cachedProd uint32 // next slot to write; published by Submit
	cachedCons uint32 // consumer index as last read, plus size (free = cachedCons-cachedProd)
}

// NewProdRing lays a producer ring over mem.
func NewProdRing[T Slot](mem []byte, off RingOffsets, n uint32) (*ProdRing[T], error) {
	m, err := newRingMem[T](mem, off, n)
	if err != nil {
		return nil, err
	}
	r := &ProdRing[T]{ringMem: m}
	r.cachedProd = atomic.LoadUint32(m.prod)
	r.cachedCons = atomic.LoadUint32(m.cons) + n
	if r.cachedCons-r.cachedProd > n {
		// A consumer ahead of the producer: trust none of it (Free would otherwise
		// hand out the cached excess without looking again). Free re-reads it.
		r.cachedCons = r.cachedProd
	}
	return r, nil
}

// Size returns the number of slots.
func (r *ProdRing[T]) Size() int { return int(r.size) }

// Free returns how many slots can be reserved, at most want, re-reading the shared
// consumer index only when the cached copy shows fewer than want.
func (r *ProdRing[T]) Free(want uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= want {
		return free
	}
	// Acquire; pairs with the kernel's smp_store_release of the consumer index.
	cons := atomic.LoadUint32(r.cons) + r.size
	free = cons - r.cachedProd
	if free > r.size {
		// A consumer index beyond the producer: a broken kernel or a corrupted
		// mapping. Refuse to produce rather than overwrite live slots, and keep the
		// last sane cached value.
		return 0
	}
	r.cachedCons = cons
	return free
}

// Reserve claims up to n slots and returns how many and the index of the first. Write
// them with Set, then publish with Submit.
func (r *ProdRing[T]) Reserve(n uint32) (got, idx uint32) {
	got = min(r.Free(n), n)
	idx = r.cachedProd
	r.cachedProd += got
	return got, idx
}

// Set writes slot idx (an index from Reserve, free-running).
func (r *ProdRing[T]) Set(idx uint32, v T) { r.slots[idx&r.mask] = v }

// Cancel gives back the last n reserved, unsubmitted slots.
func (r *ProdRing[T]) Cancel(n uint32) { r.cachedProd -= n }

// Submit publishes every reserved slot to the kernel.
func (r *ProdRing[T]) Submit() {
	// Release; pairs with the kernel's smp_load_acquire of the producer index.
	atomic.StoreUint32(r.prod, r.cachedProd)
}

// Pending returns how many submitted slots the kernel has not consumed yet. It
// re-reads the consumer index (an acquire, paired like Free's) only when the cached
// copy shows some pending, so a drained ring costs no kick.
func (r *ProdRing[T]) Pending() uint32 {
	if p := r.size - (r.cachedCons - r.cachedProd); p == 0 {
		return 0
	}
	cons := atomic.LoadUint32(r.cons) + r.size
	if cons-r.cachedProd > r.size {
		return r.size - (r.cachedCons - r.cachedProd) // hostile index: keep the cached view
	}
	r.cachedCons = cons
	return r.size - (cons - r.cachedProd)
}

// Outstanding reads the consumer index afresh and returns the submitted slots the
// kernel has not consumed, and the index of the first.
func (r *ProdRing[T]) Outstanding() (n, idx uint32) {
	c := atomic.LoadUint32(r.cons)
	return atomic.LoadUint32(r.prod) - c, c
}

// Get reads slot idx (to recover addresses the kernel never consumed, at close).
func (r *ProdRing[T]) Get(idx uint32) T { return r.slots[idx&r.mask] }

// NeedWakeup reports whether the kernel asked to be woken (XDP_RING_NEED_WAKEUP).
func (r *ProdRing[T]) NeedWakeup() bool {
	return atomic.LoadUint32(r.flags)&XDPRingNeedWakeup != 0
}

// ConsRing is a ring userspace consumes from: completion (T = uint64) or rx (T = Desc).
//
// Ordering:
//   - Peek loads *prod with atomic.LoadUint32, an acquire. It pairs with the kernel's
//     smp_store_release(&ring->producer) in xskq_prod_submit*, so the slots the index
//     covers are visible before we read them.
//   - Release stores *cons with atomic.StoreUint32 after the slots are read: a release
//     (a full barrier on amd64). It pairs with the kernel's load of the consumer index
//     (READ_ONCE + smp_mb in xskq_prod_nb_free / xskq_prod_is_full), so the kernel does
//     not overwrite slots we are still reading.
type ConsRing[T Slot] struct {
	ringMem[T]
	cachedProd uint32 // producer index as last read
	cachedCons uint32 // next slot to read; published by Release
}

// NewConsRing lays a consumer ring over mem.
func NewConsRing[T Slot](mem []byte, off RingOffsets, n uint32) (*ConsRing[T], error) {
	m, err := newRingMem[T](mem, off, n)
	if err != nil {
		return nil, err
	}
	r := &ConsRing[T]{ringMem: m}
	r.cachedCons = atomic.LoadUint32(m.cons)
	r.cachedProd = atomic.LoadUint32(m.prod)
	if r.cachedProd-r.cachedCons > n {
		// A producer more than a ring ahead (or behind): as Peek refuses it.
		r.cachedProd = r.cachedCons
	}
	return r, nil
}

// Size returns the number of slots.
func (r *ConsRing[T]) Size() int { return int(r.size) }

// Peek returns how many filled slots, up to n, are ready from index idx on. The shared
// producer index is read only when the cached copy shows fewer than n.
func (r *ConsRing[T]) Peek(n uint32) (got, idx uint32) {
	avail := r.cachedProd - r.cachedCons
	if avail < n {
		// Acquire; pairs with the kernel's smp_store_release of the producer index.
		r.cachedProd = atomic.LoadUint32(r.prod)
		avail = r.cachedProd - r.cachedCons
		if avail > r.size {
			// The producer claims more than the ring holds: never trust it.
			r.cachedProd = r.cachedCons
			avail = 0
		}
	}
	return min(avail, n), r.cachedCons
}

// Get reads slot idx (an index from Peek).
func (r *ConsRing[T]) Get(idx uint32) T { return r.slots[idx&r.mask] }

// Release hands n peeked slots back to the kernel.
func (r *ConsRing[T]) Release(n uint32) {
	r.cachedCons += n
	// Release; pairs with the kernel's read of the consumer index before it produces.
	atomic.StoreUint32(r.cons, r.cachedCons)
}

// NeedWakeup reports whether the kernel asked to be woken (XDP_RING_NEED_WAKEUP).
func (r *ConsRing[T]) NeedWakeup() bool {
	return atomic.LoadUint32(r.flags)&XDPRingNeedWakeup != 0
}
