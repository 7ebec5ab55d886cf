package vring

// PackedDevice is the device side of a packed virtqueue. It is owned by one
// goroutine.
type PackedDevice struct {
	packedCommon
	walk      chainWalk
	availPos  uint16 // next ring position to read
	availWrap bool   // driver wrap counter expected at availPos
	usedPos   uint16 // next ring position to write a used descriptor
	usedWrap  bool
	sinceSig  int // ring positions marked used since the last NeedNotify
	inflight  int
	peekWord  uint32 // PeekDirect's descriptor word; 0 when nothing is peeked
	fenceWord uint32 // private word of fence
	npend     int    // buffers UseDirect marked used and flushDirect has not published
	// sigUnknown: after SetBase, whether the driver was notified for what was
	// used before is not known; the next decision notifies unless disabled.
	sigUnknown bool
}

// NewPackedDevice returns the device side of a packed ring; both wrap
// counters start at 1 (§2.8.1).
func NewPackedDevice(r PackedRing, mem *Memory, o Options) (*PackedDevice, error) {
	q := &PackedDevice{}
	if err := q.init(r, mem, o); err != nil {
		return nil, err
	}
	q.walk = chainWalk{mem: mem, maxBytes: o.maxBytes(), maxDescs: o.maxDescs()}
	q.SetBase(0, true, 0, true)
	q.sigUnknown = false // a fresh ring: nothing was used before
	return q, nil
}

// SetBase sets the ring positions and wrap counters (vhost-user
// SET_VRING_BASE for packed rings carries avail position and wrap) and
// clears the broken state. Buffers UseDirect used and no call published yet
// are forgotten: call Base first to keep them. Whoever used descriptors
// before may not have notified the driver for them, so the first NeedNotify
// after SetBase that has descriptors to report notifies unless the driver
// disabled notifications (as DPDK's vhost does).
func (q *PackedDevice) SetBase(availPos uint16, availWrap bool, usedPos uint16, usedWrap bool) {
	q.availPos, q.availWrap = availPos%q.size, availWrap
	q.usedPos, q.usedWrap = usedPos%q.size, usedWrap
	q.sinceSig, q.inflight, q.err = 0, 0, nil
	q.peekWord, q.npend = 0, 0
	q.sigUnknown = true
}

// Base returns the avail and used positions and wrap counters, after
// publishing what UseDirect left to publish.
func (q *PackedDevice) Base() (availPos uint16, availWrap bool, usedPos uint16, usedWrap bool) {
	q.flushDirect()
	return q.availPos, q.availWrap, q.usedPos, q.usedWrap
}

func (q *PackedDevice) fail(op string, idx uint16, err error) error {
	q.err = broken(op, uint32(idx), err)
	return q.err
}

// Pop fills chains with up to len(chains) available buffers (§2.8.13) and
// returns how many. Same contract as SplitDevice.Pop.
func (q *PackedDevice) Pop(chains []Chain) (int, error) {
	q.peekWord = 0 // the position moves: a peeked buffer may not be used
	if q.err != nil {
		return 0, q.err
	}
	// Ring state in locals (the stores into chains would otherwise force
	// reloads); written back before readChain and at the end.
	desc, size := q.desc, q.size
	pos, wrap := q.availPos, q.availWrap
	wk := &q.walk
	hitAddr, hitLen, maxBytes := wk.hitAddr, wk.hitLen, wk.maxBytes
	n := 0
	for ; n < len(chains); n++ {
		// Head id+flags: written by the driver. Acquire; pairs with the
		// release store of the head flags in PackedDriver.Publish. The
		// rest of the descriptor is read after it.
		w := load32(desc, 16*int(pos)+descWordOff)
		flags := uint16(w >> 16)
		if !isAvail(flags, wrap) {
			break
		}
		c := &chains[n]
		// Fast path: one direct descriptor inside the cached region. Same
		// checks as readChain.
		if flags&(DescNext|DescIndirect) == 0 && cap(c.Segs) > 0 {
			d := desc[16*int(pos):][:16]
			addr, ln := le.Uint64(d[0:]), le.Uint32(d[8:])
			if off := addr - hitAddr; addr >= hitAddr && off < hitLen &&
				uint64(ln) <= hitLen-off && uint64(ln) <= maxBytes {
				c.ID, c.Slots = uint16(w), 1
				c.Segs = c.Segs[:1]
				c.Segs[0] = Seg{Addr: addr, Len: ln, Write: flags&DescWrite != 0}
				if flags&DescWrite != 0 {
					c.ReadLen, c.WriteLen = 0, ln
				} else {
					c.ReadLen, c.WriteLen = ln, 0
				}
				if pos++; pos == size {
					pos, wrap = 0, !wrap
				}
				continue
			}
		}
		q.availPos, q.availWrap = pos, wrap
		if err := q.readChain(w, c); err != nil {
			q.inflight += n
			return n, q.fail("pop", pos, err)
		}
		pos, wrap = q.advance(pos, wrap, c.Slots)
		hitAddr, hitLen = wk.hitAddr, wk.hitLen
	}
	q.availPos, q.availWrap = pos, wrap
	q.inflight += n
	return n, nil
}

// Unpop returns the last len(chains) chains Pop returned to the ring, in the
// order Pop returned them: the next Pop returns them again. None of them, nor
// any chain popped after them, may have been pushed: Unpop only moves the ring's
// position back.
func (q *PackedDevice) Unpop(chains []Chain) error {
	if len(chains) > q.inflight {
		return ErrInvalid
	}
	slots := 0
	for i := range chains {
		slots += int(chains[i].Slots)
	}
	if slots > int(q.size) {
		return ErrInvalid
	}
	p := int(q.availPos) - slots
	if p < 0 {
		p += int(q.size)
		q.availWrap = !q.availWrap
	}
	q.availPos = uint16(p)
	q.inflight -= len(chains)
	return nil
}

// PeekDirect reports the buffer at the next available position when it is
// one direct descriptor (no NEXT, no INDIRECT) and the device has nothing in
// flight: its guest address, length and whether it is device-writable. It
// consumes nothing; UseDirect does. The caller checks the address range
// (through Memory or a Cursor) before it touches the buffer.
//
// PeekDirect and UseDirect are Pop and Push for one buffer at a time with
// no Chain or Used in between, for a datapath that fills or drains each
// buffer as it comes. With nothing in flight and the used position at the
// available one, the used descriptor goes into the buffer's own slot.
func (q *PackedDevice) PeekDirect() (addr uint64, n uint32, write, ok bool) {
	q.peekWord = 0
	// The used position must be the available one (SET_VRING_BASE may set
	// them apart; then Pop and Push handle the ring).
	if q.inflight != 0 || q.err != nil ||
		q.npend == 0 && (q.usedPos != q.availPos || q.usedWrap != q.availWrap) {
		return 0, 0, false, false
	}
	off := 16 * int(q.availPos)
	// Head id+flags: acquire, as in Pop.
	w := load32(q.desc, off+descWordOff)
	f := uint16(w >> 16)
	if !isAvail(f, q.availWrap) || f&(DescNext|DescIndirect) != 0 {
		return 0, 0, false, false
	}
	d := q.desc[off : off+12]
	if n = le.Uint32(d[8:]); uint64(n) > q.walk.maxBytes {
		return 0, 0, false, false
	}
	// Never 0: an available descriptor has AVAIL or USED set.
	q.peekWord = w
	return le.Uint64(d), n, f&DescWrite != 0, true
}

// UseDirect marks the buffer PeekDirect just reported used, with n bytes
// written, in its own slot. It writes the length at once and leaves the
// flags that publish it to the next NeedNotify (which a datapath calls after
// each burst), Push or Base, which publish all the buffers used so far
// together, in ring order (§2.8.9). It returns ErrInvalid when PeekDirect did
// not report a buffer since the last UseDirect.
//
// Publishing per burst keeps the driver off the descriptors' cache lines while
// the device works on them: a driver that took each buffer as soon as it was
// used, and gave a new one in its slot, would pull each line back and forth
// between the two cores several times.
func (q *PackedDevice) UseDirect(n uint32) error {
	if q.peekWord == 0 {
		return ErrInvalid
	}
	q.peekWord = 0
	off := 16 * int(q.availPos)
	le.PutUint32(q.desc[off+8:off+12], n)
	if q.availPos++; q.availPos == q.size {
		q.availPos, q.availWrap = 0, !q.availWrap
	}
	q.npend++
	return nil
}

// flushDirect publishes the buffers UseDirect marked used: from the used
// position on, each flags word with a release store (pairs with the driver's
// acquire in PackedDriver.Collect) in ring order, the id as the driver left it
// in the slot.
func (q *PackedDevice) flushDirect() {
	if q.npend == 0 {
		return
	}
	desc, size := q.desc, q.size
	pos, wrap := q.usedPos, q.usedWrap
	for range q.npend {
		off := 16 * int(pos)
		f := wrapFlags(wrap, false)
		if le.Uint32(desc[off+8:off+12]) > 0 {
			f |= DescWrite
		}
		id := le.Uint16(desc[off+descWordOff : off+descWordOff+2])
		storeRel32(desc, off+descWordOff, uint32(id)|uint32(f)<<16)
		if pos++; pos == size {
			pos, wrap = 0, !wrap
		}
	}
	q.usedPos, q.usedWrap = pos, wrap
	q.sinceSig += q.npend
	q.npend = 0
}

// readChain reads the buffer starting at availPos whose head word is w.
// Each descriptor is read once into locals; the walk is bounded by the
// queue size (TTL) since a chain cannot span more than the whole ring.
func (q *PackedDevice) readChain(w uint32, c *Chain) error {
	c.Segs = c.Segs[:0]
	wk := &q.walk
	wk.total = 0
	pos, wrap := q.availPos, q.availWrap
	var slots uint16
	for {
		if slots == q.size {
			return ErrChainLoop
		}
		d := q.desc[16*int(pos):][:16]
		if slots > 0 {
			// Subsequent descriptors were written before the head's
			// release; they must be available too.
			w = load32(q.desc, 16*int(pos)+descWordOff)
			if !isAvail(uint16(w>>16), wrap) {
				return ErrDescriptor
			}
		}
		flags := uint16(w >> 16)
		addr, n := le.Uint64(d[0:]), le.Uint32(d[8:])
		slots++
		if flags&DescIndirect != 0 {
			// §2.8.7: not with NEXT, ≤ queue size; entries read in order.
			if !q.indirect || flags&DescNext != 0 ||
				n == 0 || n%16 != 0 || n/16 > uint32(q.size) {
				return ErrIndirect
			}
			t, err := q.mem.Slice(addr, uint64(n))
			if err != nil {
				return err
			}
			for k := 0; k < int(n/16); k++ {
				e := t[16*k:][:16]
				// §2.8.7: WRITE is the only valid flag in a table
				// entry; the rest (INDIRECT included) is ignored, so
				// tables never nest.
				ef := le.Uint16(e[14:])
				if err := wk.add(c, le.Uint64(e[0:]), le.Uint32(e[8:]), ef&DescWrite != 0); err != nil {
					return err
				}
			}
		} else if off := addr - wk.hitAddr; addr >= wk.hitAddr && off < wk.hitLen && uint64(n) <= wk.hitLen-off && len(c.Segs) < wk.maxDescs {
			// chainWalk.add, inlined by hand (fast path: cached region).
			wk.total += uint64(n)
			c.Segs = append(c.Segs, Seg{Addr: addr, Len: n, Write: flags&DescWrite != 0})
		} else if err := wk.addSlow(c, addr, n, flags&DescWrite != 0); err != nil {
			return err
		}
		if flags&DescNext == 0 {
			// The buffer id is taken from the last descriptor (§2.8.6).
			c.ID, c.Slots = uint16(w), slots
			return wk.finish(c)
		}
		pos, wrap = q.advance(pos, wrap, 1)
	}
}

// Push writes used descriptors for used (each with the Slots of its chain,
// see Chain.Used) and publishes the whole batch at once: the first
// descriptor's flags are stored last (§2.8.9). A driver then never sees part
// of a packet spread over several mergeable buffers; DPDK's virtio PMD drops
// such a packet when its last buffers are not used yet.
//
// As SplitDevice.Push, it completes the chains popped before a violation
// broke the queue.
func (q *PackedDevice) Push(used []Used) error {
	if len(used) > q.inflight {
		return ErrInvalid
	}
	if len(used) == 0 {
		return nil
	}
	// Every entry's Slots is checked before anything is written.
	var bad bool
	for _, u := range used {
		bad = bad || u.Slots == 0 || u.Slots > q.size
	}
	if bad {
		return ErrInvalid
	}
	q.flushDirect()
	firstOff := 16*int(q.usedPos) + descWordOff
	var firstWord uint32
	desc, size := q.desc, uint32(q.size)
	pos, wrap, since := q.usedPos, q.usedWrap, q.sinceSig
	for k, u := range used {
		d := desc[16*int(pos):][:16]
		le.PutUint32(d[8:], u.Len)
		f := wrapFlags(wrap, false)
		if u.Len > 0 {
			f |= DescWrite
		}
		word := uint32(u.ID) | uint32(f)<<16
		if k == 0 {
			firstWord = word
		} else {
			// Device-written word. Published by the store of the batch's
			// first word below: the driver reads it only after acquiring
			// that word (it polls strictly in ring order).
			storeRel32(desc, 16*int(pos)+descWordOff, word)
		}
		p := uint32(pos) + uint32(u.Slots)
		if p >= size {
			p -= size
			wrap = !wrap
		}
		pos = uint16(p)
		since += int(u.Slots)
	}
	// Release: all lengths and later flags before the first flags; pairs
	// with the driver's acquire in PackedDriver.Collect.
	storeRel32(desc, firstOff, firstWord)
	q.usedPos, q.usedWrap, q.sinceSig = pos, wrap, since
	q.inflight -= len(used)
	return nil
}

// PushInOrder completes used, which must be the oldest popped chains in pop
// order, with one used descriptor carrying the last buffer's id
// (VIRTIO_F_IN_ORDER, §2.8.8) and skips the ring positions of all of them;
// the driver treats the others as used completely. It returns ErrInvalid
// without IN_ORDER. Like Push, it completes popped chains on a broken queue
// too.
func (q *PackedDevice) PushInOrder(used []Used) error {
	if !q.inOrder || len(used) > q.inflight {
		return ErrInvalid
	}
	slots := 0
	for _, u := range used {
		if u.Slots == 0 || u.Slots > q.size {
			return ErrInvalid
		}
		slots += int(u.Slots)
	}
	if len(used) == 0 {
		return nil
	}
	if slots > int(q.size) {
		return ErrInvalid
	}
	q.flushDirect()
	u := used[len(used)-1]
	off := 16 * int(q.usedPos)
	le.PutUint32(q.desc[off+8:], u.Len)
	f := wrapFlags(q.usedWrap, false)
	if u.Len > 0 {
		f |= DescWrite
	}
	// Release; pairs with the driver's acquire in PackedDriver.Collect.
	storeRel32(q.desc, off+descWordOff, uint32(u.ID)|uint32(f)<<16)
	q.usedPos, q.usedWrap = q.advance(q.usedPos, q.usedWrap, uint16(slots))
	q.sinceSig += slots
	q.inflight -= len(used)
	return nil
}

// NeedNotify reports whether the driver wants a used-buffer notification
// for the descriptors used since the last call (§2.8.10, §2.8.22).
func (q *PackedDevice) NeedNotify() bool {
	q.flushDirect()
	k := q.sinceSig
	q.sinceSig = 0
	if k == 0 {
		return false
	}
	// Driver event suppression: driver-written word, loaded after a full
	// barrier that orders it after the release stores of the used flags;
	// pairs with the driver's store in EnableInterrupts followed by its load
	// of the descriptor flags.
	fence(&q.fenceWord)
	ev := load32(q.drvEv, 0)
	if q.sigUnknown {
		// First decision after SetBase: the event offset may lie behind
		// descriptors used before the restart and never signalled
		// (§2.8.10); notify once unless notifications are disabled.
		q.sigUnknown = false
		if uint16(ev>>16) != EventDisable {
			return true
		}
	}
	return packedNeedEvent(ev, q.eventIdx, q.usedPos, q.usedWrap, k, q.size)
}

// DisableNotify asks the driver not to kick.
func (q *PackedDevice) DisableNotify() {
	// Device event suppression: device-written word.
	store32(q.devEv, 0, uint32(EventDisable)<<16)
}

// EnableNotify asks the driver to kick for the next available buffer (at
// the exact position with EVENT_IDX) and reports whether one is already
// available.
func (q *PackedDevice) EnableNotify() (pending bool) {
	if q.eventIdx {
		store32(q.devEv, 0, uint32(offWrap(q.availPos, q.availWrap))|uint32(EventDesc)<<16)
	} else {
		store32(q.devEv, 0, uint32(EventEnable)<<16)
	}
	// Seq-cst store-load; pairs with the driver's head flags store then
	// device-event load in Publish.
	return isAvail(uint16(load32(q.desc, 16*int(q.availPos)+descWordOff)>>16), q.availWrap)
}
