package pmd

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"

	"golang.org/x/sys/cpu"
)

// RingFlags choose the synchronisation of each end of a Ring.
type RingFlags uint8

const (
	// RingSingleProducer: only one goroutine at a time enqueues. Enqueue then needs no
	// compare-and-swap.
	RingSingleProducer RingFlags = 1 << iota
	// RingSingleConsumer: only one goroutine at a time dequeues.
	RingSingleConsumer

	// RingSPSC is the usual mode between two pinned workers.
	RingSPSC = RingSingleProducer | RingSingleConsumer
	// RingMPMC lets any number of goroutines enqueue and dequeue concurrently.
	RingMPMC RingFlags = 0
)

// MaxRingSize bounds a ring's capacity so index differences never overflow.
const MaxRingSize = 1 << 30

// ErrRingSize reports a ring capacity that is not a power of two in [1, MaxRingSize].
var ErrRingSize = errors.New("pmd: ring size must be a power of two between 1 and 2^30")

// headTail is one end of a ring: head is where the next reservation starts, tail is how
// far reservations have been completed and published (a single-goroutine end uses only
// tail). Only that end's goroutines write
// them; the other end reads tail.
type headTail struct {
	head atomic.Uint32
	tail atomic.Uint32
	// cached is the other end's tail as last seen; written and read only by this end,
	// and only in single-producer/single-consumer mode, where this end has one goroutine.
	cached uint32
}

// Ring is a bounded lockless FIFO of T with free-running 32-bit indices and a mask, in
// the manner of DPDK's rte_ring: each end has a head (reservation) and a tail
// (publication) on its own cache line, and a burst moves with one atomic publication.
//
// Safe for concurrent use as its flags allow: with RingSingleProducer one goroutine at a
// time may enqueue, with RingSingleConsumer one goroutine at a time may dequeue;
// otherwise any number may. In multi-producer or multi-consumer mode an end whose
// goroutine is descheduled between reserving and publishing holds up the publications
// behind it (not the reservations), as in DPDK; waiters yield to the Go scheduler.
type Ring[T any] struct {
	_    cpu.CacheLinePad
	prod headTail // written by producers
	_    cpu.CacheLinePad
	cons headTail // written by consumers
	_    cpu.CacheLinePad

	mask  uint32
	size  uint32
	flags RingFlags
	slots []T
}

// NewRing returns an empty ring holding up to size elements.
func NewRing[T any](size int, flags RingFlags) (*Ring[T], error) {
	if size < 1 || size > MaxRingSize || size&(size-1) != 0 {
		return nil, fmt.Errorf("%w: got %d", ErrRingSize, size)
	}
	return &Ring[T]{
		mask:  uint32(size - 1),
		size:  uint32(size),
		flags: flags,
		slots: make([]T, size),
	}, nil
}

// Cap returns the ring's capacity.
func (r *Ring[T]) Cap() int { return int(r.size) }

// Len returns how many elements are in the ring, at most its capacity. It is a
// snapshot: with concurrent users it may be stale by the time it returns.
func (r *Ring[T]) Len() int {
	// Load the consumer tail first: it only grows, so prod tail read after it is at
	// least as new and the difference is never negative. It may be too large, though:
	// elements dequeued and enqueued again between the two loads count twice, so the
	// difference is capped at the capacity, as DPDK's rte_ring_count caps it.
	ct := r.cons.tail.Load()
	pt := r.prod.tail.Load()
	return int(min(pt-ct, r.size))
}

// Enqueue adds as many elements of src as fit, in order, and returns how many it added.
func (r *Ring[T]) Enqueue(src []T) int { return r.enqueue(src, false) }

// EnqueueBulk adds all of src, or nothing if it does not fit, and reports which.
func (r *Ring[T]) EnqueueBulk(src []T) bool {
	// More than the ring holds can never fit. enqueue clamps a request to
	// MaxRingSize, so without this check a bulk of more than that would move
	// MaxRingSize elements into an empty ring of that size and report none.
	if len(src) > int(r.size) {
		return false
	}
	return len(src) == 0 || r.enqueue(src, true) == len(src)
}

// Dequeue moves up to len(dst) elements into dst, oldest first, and returns how many.
func (r *Ring[T]) Dequeue(dst []T) int { return r.dequeue(dst, false) }

// DequeueBulk fills all of dst, or takes nothing if the ring holds fewer, and reports
// which.
func (r *Ring[T]) DequeueBulk(dst []T) bool {
	// The ring never holds more than its size; see EnqueueBulk for why the clamp in
	// dequeue must not see a longer bulk.
	if len(dst) > int(r.size) {
		return false
	}
	return len(dst) == 0 || r.dequeue(dst, true) == len(dst)
}

func clampLen(want int) uint32 {
	if want > MaxRingSize {
		return MaxRingSize
	}
	return uint32(want)
}

func (r *Ring[T]) enqueue(src []T, bulk bool) int {
	want := clampLen(len(src))
	if want == 0 {
		return 0
	}
	var head, n uint32
	if r.flags&RingSingleProducer != 0 {
		// One producer: the tail is also the head, and only we write it.
		head = r.prod.tail.Load()
		free := r.size - (head - r.prod.cached)
		if free < want {
			// Acquire; pairs with the release store of cons.tail in dequeue, so the
			// consumer's reads of the slots we are about to overwrite are done.
			r.prod.cached = r.cons.tail.Load()
			free = r.size - (head - r.prod.cached)
		}
		n = min(want, free)
		if n == 0 || (bulk && n < want) {
			return 0
		}
	} else {
		for {
			head = r.prod.head.Load()
			// Acquire; pairs with the release store of cons.tail in dequeue.
			free := r.size - (head - r.cons.tail.Load())
			n = min(want, free)
			if n == 0 || (bulk && n < want) {
				return 0
			}
			// Reserve [head, head+n) against other producers.
			if r.prod.head.CompareAndSwap(head, head+n) {
				break
			}
		}
	}
	idx := head & r.mask
	c := copy(r.slots[idx:], src[:n])
	copy(r.slots, src[c:n])
	if r.flags&RingSingleProducer == 0 {
		// Producers that reserved before us publish first, keeping the ring in order.
		waitFor(&r.prod.tail, head)
	}
	// Release; pairs with the acquire load of prod.tail in dequeue: the slot writes
	// above are visible before the consumer can see the new tail.
	r.prod.tail.Store(head + n)
	return int(n)
}

func (r *Ring[T]) dequeue(dst []T, bulk bool) int {
	want := clampLen(len(dst))
	if want == 0 {
		return 0
	}
	var head, n uint32
	if r.flags&RingSingleConsumer != 0 {
		head = r.cons.tail.Load()
		avail := r.cons.cached - head
		if avail < want {
			// Acquire; pairs with the release store of prod.tail in enqueue.
			r.cons.cached = r.prod.tail.Load()
			avail = r.cons.cached - head
		}
		n = min(want, avail)
		if n == 0 || (bulk && n < want) {
			return 0
		}
	} else {
		for {
			head = r.cons.head.Load()
			// Acquire; pairs with the release store of prod.tail in enqueue.
			avail := r.prod.tail.Load() - head
			n = min(want, avail)
			if n == 0 || (bulk && n < want) {
				return 0
			}
			if r.cons.head.CompareAndSwap(head, head+n) {
				break
			}
		}
	}
	idx := head & r.mask
	c := copy(dst[:n], r.slots[idx:])
	copy(dst[c:n], r.slots)
	if r.flags&RingSingleConsumer == 0 {
		waitFor(&r.cons.tail, head)
	}
	// Release; pairs with the acquire load of cons.tail in enqueue: our reads of the
	// slots are done before a producer may overwrite them.
	r.cons.tail.Store(head + n)
	return int(n)
}

// waitFor spins until *tail reaches v, the point where an earlier reservation on the
// same end has been published, yielding to the scheduler if that takes long (the
// earlier goroutine may have been preempted).
func waitFor(tail *atomic.Uint32, v uint32) {
	for spins := 0; tail.Load() != v; spins++ {
		if spins >= 64 {
			runtime.Gosched()
			spins = 0
		}
	}
}
