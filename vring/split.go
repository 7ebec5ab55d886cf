package vring

// Split virtqueue, VIRTIO 1.2 §2.7.
//
// Layout (little-endian):
//
//	desc:  N × {addr u64, len u32, flags u16, next u16}        driver writes
//	avail: flags u16, idx u16, ring[N] u16, used_event u16      driver writes
//	used:  flags u16, idx u16, ring[N] {id u32, len u32},
//	       avail_event u16                                      device writes

const (
	availRingOff = 4
	usedRingOff  = 4
)

// SplitSizes returns the byte sizes of the three split ring areas for a
// queue of n entries, including the event-index fields, with avail and used
// rounded up to a multiple of 4 (see atomic_unsafe.go: the queue accesses
// the 32-bit word holding used_event/avail_event). A driver should allocate
// them; a vhost backend translates SplitDeviceSizes.
func SplitSizes(n int) (desc, avail, used int) {
	return 16 * n, (6 + 2*n + 3) &^ 3, (6 + 8*n + 3) &^ 3
}

// SplitDeviceSizes is SplitSizes for the device side, which only loads from
// the avail ring (by address, see load16): its size is the spec's, 6+2n bytes
// (§2.7.6), not rounded, so that a ring the driver placed at the very end of
// its memory translates.
func SplitDeviceSizes(n int) (desc, avail, used int) {
	d, _, u := SplitSizes(n)
	return d, 6 + 2*n, u
}

// SplitRing is the host memory of a split ring, already translated. The
// queue does not own it. Used must start 4-byte aligned; Avail 2-byte
// aligned for the device side (the spec's alignment for the available ring,
// §2.7, which a driver may use) and 4-byte aligned for the driver side, which
// stores avail.flags and avail.idx as one word. Plain data; the memory
// itself is shared with the peer.
type SplitRing struct {
	Desc, Avail, Used []byte
}

func (r *SplitRing) check(n int, device bool) error {
	d, a, u := SplitSizes(n)
	if device {
		d, a, u = SplitDeviceSizes(n)
	}
	availOK := aligned4(r.Avail) || device && aligned2(r.Avail)
	if len(r.Desc) < d || len(r.Avail) < a || len(r.Used) < u || !availOK || !aligned4(r.Used) {
		return ErrLayout
	}
	return nil
}

type splitCommon struct {
	desc, avail, used []byte
	mem               *Memory
	size              uint16 // queue size; 32768 fits
	mask              uint16
	eventIdx          bool
	indirect          bool
	inOrder           bool
	descFast          bool  // desc is 8-byte aligned: batch loops may use descAt and usedAt
	err               error // sticky: set once the peer broke the queue
}

func (q *splitCommon) init(r SplitRing, mem *Memory, o Options, device bool) error {
	if !littleEndian {
		return ErrNotSupported
	}
	if err := o.validate(false); err != nil {
		return err
	}
	if err := r.check(o.Size, device); err != nil {
		return err
	}
	q.desc, q.avail, q.used, q.mem = r.Desc, r.Avail, r.Used, mem
	q.size, q.mask = uint16(o.Size), uint16(o.Size-1)
	q.eventIdx = o.Features&FeatureEventIdx != 0
	q.indirect = o.Features&FeatureIndirectDesc != 0
	q.inOrder = o.Features&FeatureInOrder != 0
	q.descFast = aligned8(r.Desc) // Used is 4-byte aligned (check), its entries too
	return nil
}

func (q *splitCommon) usedEventOff() int  { return availRingOff + 2*int(q.size) }
func (q *splitCommon) availEventOff() int { return usedRingOff + 8*int(q.size) }

// Err returns the error that broke the queue, or nil.
func (q *splitCommon) Err() error { return q.err }

// Size returns the queue size.
func (q *splitCommon) Size() int { return int(q.size) }

// SplitDevice is the device side of a split virtqueue: it pops available
// chains and pushes used entries. It is owned by one goroutine (not safe for
// concurrent use); the driver is the peer on the other side of the memory.
type SplitDevice struct {
	splitCommon
	walk       chainWalk
	lastAvail  uint16 // next avail ring position to consume (free-running)
	availCache uint16 // last avail.idx loaded
	usedIdx    uint16 // our copy of used.idx (we are its only writer)
	usedFlags  uint16 // our copy of used.flags
	signalled  uint16 // used.idx at the last NeedNotify decision
	inflight   int    // popped and not yet pushed
	// sigUnknown: signalled is not known to be the used.idx the driver was
	// last notified for (after SetBase); the next decision notifies.
	sigUnknown bool
}

// NewSplitDevice returns the device side of a split ring. mem translates the
// buffer addresses found in descriptors; the ring itself is passed already
// translated. The queue starts with last_avail = used.idx = the value
// currently in the used ring (0 for a fresh ring); see SetBase.
func NewSplitDevice(r SplitRing, mem *Memory, o Options) (*SplitDevice, error) {
	q := &SplitDevice{}
	if err := q.init(r, mem, o, true); err != nil {
		return nil, err
	}
	q.walk = chainWalk{mem: mem, maxBytes: o.maxBytes(), maxDescs: o.maxDescs()}
	q.SetBase(load16(q.used, 2))
	// A fresh ring has no used entry anyone could have left unsignalled.
	q.sigUnknown = q.usedIdx != 0
	return q, nil
}

// SetBase sets the next available index to consume (vhost-user
// SET_VRING_BASE) and reloads used.idx and used.flags from the ring (after a
// reconnect the ring's used.idx is the truth). It clears the broken state.
// Whoever published the used entries before may not have notified the
// driver for them, so the first NeedNotify after SetBase that has entries to
// report notifies whatever used_event says (as Linux's vhost and QEMU do).
func (q *SplitDevice) SetBase(lastAvail uint16) {
	q.lastAvail, q.availCache = lastAvail, lastAvail
	w := load32(q.used, 0)
	q.usedFlags, q.usedIdx = uint16(w), uint16(w>>16)
	q.signalled = q.usedIdx
	q.sigUnknown = true
	q.inflight = 0
	q.err = nil
}

// Base returns the next available index to consume (GET_VRING_BASE).
func (q *SplitDevice) Base() uint16 { return q.lastAvail }

// UsedIdx returns the device's used index.
func (q *SplitDevice) UsedIdx() uint16 { return q.usedIdx }

func (q *SplitDevice) fail(op string, idx uint32, err error) error {
	q.err = broken(op, idx, err)
	return q.err
}

// Pending returns how many chains the driver has made available and Pop has
// not consumed, reloading avail.idx. It breaks the queue on a bad index.
func (q *SplitDevice) Pending() (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	if err := q.loadAvail(); err != nil {
		return 0, err
	}
	return int(q.availCache - q.lastAvail), nil
}

func (q *SplitDevice) loadAvail() error {
	// avail.idx: written by the driver (release store in SplitDriver.Publish
	// or a guest's virtio_store_mb). Acquire: ring entries and descriptors
	// read after this load are the ones published with it.
	a := load16(q.avail, 2)
	// At most the queue size may be outstanding, counting the chains popped
	// and not yet pushed: past that, ring entries (and heads) still in flight
	// would come round again (a driver has at most the queue size outstanding).
	// inflight is at most the size, this check keeping it so.
	if a-q.lastAvail > q.size-uint16(q.inflight) {
		return q.fail("pop", uint32(a), ErrAvailIdx)
	}
	q.availCache = a
	return nil
}

// Pop fills chains with up to len(chains) available chains and returns how
// many. Each descriptor has been range-checked against the memory. On a
// peer violation it returns the chains popped before it and an error
// matching ErrBroken; the queue stays broken. Zero allocations as long as
// each Chain's Segs has enough capacity.
func (q *SplitDevice) Pop(chains []Chain) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	if q.lastAvail == q.availCache {
		if err := q.loadAvail(); err != nil {
			return 0, err
		}
	}
	n := min(len(chains), int(q.availCache-q.lastAvail))
	// Ring state in locals (the stores into chains would otherwise force
	// reloads); written back before readChain and at the end.
	desc, avail, size, mask := q.desc, q.avail, q.size, q.mask
	last := q.lastAvail
	w := &q.walk
	hitAddr, hitLen, maxBytes := w.hitAddr, w.hitLen, w.maxBytes
	for i := 0; i < n; i++ {
		// avail.ring[pos]: driver-written, published by the acquire of
		// avail.idx (loadAvail).
		head := le.Uint16(avail[availRingOff+2*int(last&mask):])
		c := &chains[i]
		// Fast path: one direct descriptor inside the cached region (RX
		// buffers, small TX). Same checks as readChain.
		if head < size && cap(c.Segs) > 0 {
			d := desc[16*int(head):][:16]
			addr, ln, flags := le.Uint64(d[0:]), le.Uint32(d[8:]), le.Uint16(d[12:])
			if off := addr - hitAddr; flags&(DescNext|DescIndirect) == 0 && addr >= hitAddr &&
				off < hitLen && uint64(ln) <= hitLen-off && uint64(ln) <= maxBytes {
				c.ID, c.Slots = head, 1
				c.Segs = c.Segs[:1]
				c.Segs[0] = Seg{Addr: addr, Len: ln, Write: flags&DescWrite != 0}
				if flags&DescWrite != 0 {
					c.ReadLen, c.WriteLen = 0, ln
				} else {
					c.ReadLen, c.WriteLen = ln, 0
				}
				last++
				continue
			}
		}
		if err := q.readChain(head, c); err != nil {
			q.lastAvail = last
			q.inflight += i
			return i, q.fail("pop", uint32(head), err)
		}
		last++
		hitAddr, hitLen = w.hitAddr, w.hitLen
	}
	q.lastAvail = last
	q.inflight += n
	return n, nil
}

// Unpop returns the last len(chains) chains Pop returned to the ring: the next
// Pop returns them again. None of them, nor any chain popped after them, may
// have been pushed: Unpop only moves the ring's position back. A vhost backend
// uses it when a packet needs more buffers (MRG_RXBUF) than are available yet.
func (q *SplitDevice) Unpop(chains []Chain) error {
	if len(chains) > q.inflight {
		return ErrInvalid
	}
	q.lastAvail -= uint16(len(chains))
	q.inflight -= len(chains)
	return nil
}

// readChain walks the chain at head (§2.7.5) with a TTL of the queue size
// per table, reading each descriptor once into locals (the driver may change
// the table under us; only the local copy is checked and used).
func (q *SplitDevice) readChain(head uint16, c *Chain) error {
	c.ID, c.Slots, c.Segs = head, 0, c.Segs[:0]
	w := &q.walk
	w.total = 0
	table, tableLen := q.desc, uint32(q.size)
	ttl := uint32(q.size)
	i := uint32(head)
	inIndirect := false
	for {
		if i >= tableLen {
			return ErrDescriptor
		}
		if ttl == 0 {
			return ErrChainLoop
		}
		ttl--
		d := table[16*i:][:16]
		addr, n := le.Uint64(d[0:]), le.Uint32(d[8:])
		flags, next := le.Uint16(d[12:]), le.Uint16(d[14:])
		if !inIndirect {
			c.Slots++
		}
		if flags&DescIndirect != 0 {
			// §2.7.5.3: not nested, not with NEXT, len a non-zero
			// multiple of 16, at most queue-size entries.
			if !q.indirect || inIndirect || flags&DescNext != 0 ||
				n == 0 || n%16 != 0 || n/16 > uint32(q.size) {
				return ErrIndirect
			}
			t, err := q.mem.Slice(addr, uint64(n))
			if err != nil {
				return err
			}
			table, tableLen, ttl, i, inIndirect = t, n/16, n/16, 0, true
			continue
		}
		// chainWalk.add, inlined by hand (fast path: cached region).
		if off := addr - w.hitAddr; addr >= w.hitAddr && off < w.hitLen && uint64(n) <= w.hitLen-off && len(c.Segs) < w.maxDescs {
			w.total += uint64(n)
			c.Segs = append(c.Segs, Seg{Addr: addr, Len: n, Write: flags&DescWrite != 0})
		} else if err := w.addSlow(c, addr, n, flags&DescWrite != 0); err != nil {
			return err
		}
		if flags&DescNext == 0 {
			return w.finish(c)
		}
		i = uint32(next)
	}
}

// Push writes used entries and publishes them with one used.idx store.
// Entries are taken as given (their IDs must come from popped chains).
// It returns ErrInvalid if more entries are pushed than chains are popped.
//
// A broken queue still takes the chains Pop returned before it hit the
// violation: the device may have filled them already, and refusing them
// would lose that work and keep the driver's buffers for ever. DPDK's vhost
// does the same: it completes what it processed and stops at the bad
// descriptor. The in-flight count bounds it to chains really popped.
func (q *SplitDevice) Push(used []Used) error {
	if len(used) > q.inflight {
		return ErrInvalid
	}
	idx, ring, mask := q.usedIdx, q.used, q.mask
	for _, u := range used {
		e := ring[usedRingOff+8*int(idx&mask):][:8]
		le.PutUint64(e, uint64(u.ID)|uint64(u.Len)<<32) // id u32, len u32
		idx++
	}
	q.usedIdx = idx
	q.inflight -= len(used)
	// used.flags+idx: device-written word. Release: the entries above are
	// visible before the index; pairs with the driver's acquire of used.idx
	// (SplitDriver.Collect / a guest's virtio_load_acquire).
	store32(q.used, 0, uint32(q.usedFlags)|uint32(idx)<<16)
	return nil
}

// PushInOrder completes used, which must be the oldest popped chains in pop
// order, with one used entry for the last of them (VIRTIO_F_IN_ORDER,
// §2.7.9): written at the ring position of the first, with used.idx moved
// on by the size of the batch. The driver treats the others as used
// completely, so their Len is not transmitted. It returns ErrInvalid
// without IN_ORDER. Like Push, it completes popped chains on a broken queue
// too.
func (q *SplitDevice) PushInOrder(used []Used) error {
	if !q.inOrder || len(used) > q.inflight {
		return ErrInvalid
	}
	if len(used) == 0 {
		return nil
	}
	u := used[len(used)-1]
	le.PutUint64(q.used[usedRingOff+8*int(q.usedIdx&q.mask):], uint64(u.ID)|uint64(u.Len)<<32)
	q.usedIdx += uint16(len(used))
	q.inflight -= len(used)
	// Release; pairs with the driver's acquire of used.idx.
	store32(q.used, 0, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
	return nil
}

// NeedNotify reports whether the driver wants a used-buffer notification
// (an interrupt / call eventfd) for the entries pushed since the last call
// (§2.7.7). Call it after Push.
func (q *SplitDevice) NeedNotify() bool {
	old, new := q.signalled, q.usedIdx
	q.signalled = new
	if old != new && q.sigUnknown {
		// First decision after SetBase: the driver may be waiting on a
		// used_event that entries published before the restart passed
		// unsignalled (§2.7.7); with EVENT_IDX, notify once.
		q.sigUnknown = false
		if q.eventIdx {
			return true
		}
	}
	if q.eventIdx {
		// used_event: driver-written. The seq-cst store of used.idx in Push
		// precedes this load (store-load fence); pairs with the driver's
		// store of used_event followed by its load of used.idx.
		return needEvent(load16(q.avail, q.usedEventOff()), new, old)
	}
	if old == new {
		return false
	}
	// avail.flags: driver-written; same fence as above.
	return load16(q.avail, 0)&AvailNoInterrupt == 0
}

// DisableNotify asks the driver not to kick (§2.7.10). Without EVENT_IDX it
// sets VIRTQ_USED_F_NO_NOTIFY; with EVENT_IDX kicks stop on their own once
// avail.idx passes avail_event, which only EnableNotify moves.
func (q *SplitDevice) DisableNotify() {
	if q.eventIdx {
		return
	}
	q.usedFlags |= UsedNoNotify
	store32(q.used, 0, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
}

// EnableNotify asks the driver to kick for the next available buffer and
// reports whether buffers became available meanwhile (pop them before
// sleeping on the kick eventfd).
func (q *SplitDevice) EnableNotify() (pending bool) {
	if q.eventIdx {
		// avail_event: device-written tail field (CAS store).
		store16(q.used, q.availEventOff(), q.lastAvail)
	} else {
		q.usedFlags &^= UsedNoNotify
		store32(q.used, 0, uint32(q.usedFlags)|uint32(q.usedIdx)<<16)
	}
	// Seq-cst store then load: pairs with the driver's avail.idx store
	// followed by its avail_event/flags load in Publish.
	return load16(q.avail, 2) != q.lastAvail
}
