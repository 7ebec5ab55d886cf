// Package vring implements virtio 1.x virtqueues over shared memory: the
// split ring (VIRTIO 1.2 §2.7) and the packed ring (§2.8), each with a
// device side (used by a vhost-user backend) and a driver side (used by a
// virtio PCI driver over VFIO), hardened against a hostile peer.
//
// # Packet flow
//
//	driver (guest / virtio-user / pmd)            device (vhost backend)
//	---------------------------------            ----------------------
//	Add / AddBatch / AddIndirect
//	  writes descriptors (+ avail ring)
//	Publish ── one release store ──────────────▶ Pop(chains)
//	  returns kick? (EVENT_IDX / flags)            acquire, walk + check each
//	                                               chain, fill caller's Chains
//	                                             … read/write buffers via Memory …
//	Collect(used) ◀── one release store ──────── Push(used)
//	  acquire, validate id/len, free               NeedNotify() → call/interrupt?
//
// A packed device can also take one single-descriptor buffer at a time with
// PeekDirect and UseDirect, with no Chain or Used in between; the buffers used
// so far are published together at the next NeedNotify (or Push, or Base).
//
// Notification control: the device calls EnableNotify/DisableNotify (does
// the driver kick?), the driver EnableInterrupts/DisableInterrupts (does the
// device notify?). Both Enable calls report whether work arrived meanwhile,
// so a poller can re-check before sleeping.
//
// # Memory
//
// Memory is a set of guest regions (guest-physical address or IOVA, host
// bytes, optional frontend user address for vhost-user ring addresses).
// The queue never owns memory: ring areas are passed already translated
// (SplitRing, PackedRing; sizes from SplitSizes/PackedSizes) and buffer
// addresses in descriptors are checked and translated through Memory. The
// caller keeps every region mapped while a queue uses it and builds a new
// Memory (and new queues or SetBase) when the table changes.
//
// # Hardening
//
// Everything the peer writes is read once into locals and checked:
// descriptor indices, chain TTL (loops), chain length (descriptors ≤ queue
// size and Options.MaxChainDescs, bytes ≤ Options.MaxChainBytes), indirect
// tables (negotiated, not
// nested, no NEXT, ≤ queue size, contiguous), every buffer range after
// translation (wrapping and zero-length ranges included), the avail index
// distance (≤ queue size), and on the driver side every used id (range, in
// flight and published, not duplicated), used length (≤ writable capacity)
// and used index distance. A violation puts the queue in a sticky broken state and returns
// a *QueueError matching ErrBroken and the specific sentinel; nothing the
// peer writes can panic the queue or make it touch memory outside Memory.
// Pop returns the good chains it read before the violation, and the device
// can still push them, so the work done on them reaches the driver.
//
// # Memory ordering
//
// Shared indices and flags are accessed with sync/atomic on their aligned
// 32-bit word (see atomic_unsafe.go for why that is correct for 16-bit
// fields); each access names its writer and the barrier it pairs with.
// Descriptor contents are read only after the acquire that published them.
// The Go race detector sees both sides when driver and device run in one
// process (the tests do); it cannot see a peer in another process.
//
// # Concurrency and lifecycle
//
// A queue (any of SplitDevice, SplitDriver, PackedDevice, PackedDriver) is
// owned by one goroutine: no method is safe for concurrent use. The driver
// and the device of one ring may run on different goroutines or processes.
// Memory is immutable and safe for concurrent use. Chains returned by Pop
// describe guest memory that the driver owns again once the chain is
// pushed; host slices obtained from Memory stay valid while the region is
// mapped, and the guest may change their contents at any time.
//
// With VIRTIO_F_IN_ORDER the device may complete a batch with one used
// entry (PushInOrder) and the driver completes the earlier buffers of the
// batch implicitly.
//
// Not implemented: legacy (pre-1.0) rings; big-endian hosts
// (constructors return ErrNotSupported).
package vring
