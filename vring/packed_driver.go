package vring

import "sync/atomic"

// PackedDriver is the driver side of a packed virtqueue (§2.8.21,
// §2.8.22). Buffer ids are allocated from a private FIFO, so with in-order
// completion they are reused in ring order. It is owned by one goroutine.
type PackedDriver struct {
	packedCommon
	ids       []uint16 // free buffer ids, FIFO
	idHead    uint16   // positions in ids, wrapping at size (no division:
	idTail    uint16   // packed sizes need not be powers of two)
	state     []packedBuf
	posID     []uint16 // buffer id occupying each ring position (IN_ORDER completion reads heads)
	numFree   int      // free ring slots
	availPos  uint16
	availWrap bool
	usedPos   uint16
	usedWrap  bool
	added     int    // slots added since the last Publish
	pendOff   int    // head word of the first buffer since the last Publish
	pendWord  uint32 // its value; stored by Publish
	pending   bool
	drvEvent  uint32 // our copy of the driver event suppression word
	inflight  int
	io        inOrderPending
}

type packedBuf struct {
	slots    uint16
	pos      uint16 // ring position of its first slot
	writeCap uint32
	inflight bool
}

// NewPackedDriver returns the driver side of a packed ring and initializes
// the ring memory (all descriptors neither available nor used for wrap
// counter 1, events enabled).
func NewPackedDriver(r PackedRing, mem *Memory, o Options) (*PackedDriver, error) {
	q := &PackedDriver{}
	if err := q.init(r, mem, o); err != nil {
		return nil, err
	}
	n := int(q.size)
	q.ids = make([]uint16, n)
	for i := range q.ids {
		q.ids[i] = uint16(i)
	}
	q.idTail = 0 // the FIFO is full: tail == head
	q.state = make([]packedBuf, n)
	q.posID = make([]uint16, n)
	q.numFree = n
	q.availWrap, q.usedWrap = true, true
	for i := 0; i < n; i++ {
		store32(q.desc, 16*i+descWordOff, 0)
	}
	store32(q.drvEv, 0, 0)
	store32(q.devEv, 0, 0)
	return q, nil
}

// Free returns the number of free ring slots.
func (q *PackedDriver) Free() int { return q.numFree }

// InFlight returns the number of buffers added and not yet collected.
func (q *PackedDriver) InFlight() int { return q.inflight }

// Add places one buffer in the ring and returns its buffer id; it becomes
// visible to the device at Publish. Same contract as SplitDriver.Add.
func (q *PackedDriver) Add(segs []Seg) (uint16, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := len(segs)
	if n == 0 || n > int(q.size) || !chainFits(segs) {
		return 0, ErrInvalid
	}
	if n > q.numFree {
		return 0, ErrFull
	}
	id := q.popID()
	head := q.availPos
	pos, wrap := q.availPos, q.availWrap
	var wcap uint32
	for k := range segs {
		s := &segs[k]
		f := wrapFlags(wrap, true)
		if s.Write {
			f |= DescWrite
			wcap += s.Len
		}
		if k < n-1 {
			f |= DescNext
		}
		d := q.desc[16*int(pos):][:16]
		le.PutUint64(d[0:], s.Addr)
		le.PutUint32(d[8:], s.Len)
		q.putWord(16*int(pos)+descWordOff, uint32(id)|uint32(f)<<16)
		q.posID[pos] = id
		pos, wrap = q.advance(pos, wrap, 1)
	}
	q.finishAdd(id, head, pos, wrap, uint16(n), wcap)
	return id, nil
}

// AddBatch adds each of bufs as its own one-descriptor buffer, as many as
// fit, writes their buffer ids to ids and returns how many were added.
// Nothing is visible to the device until Publish.
func (q *PackedDriver) AddBatch(bufs []Seg, ids []uint16) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := min(len(bufs), len(ids), q.numFree)
	if n == 0 {
		return 0, nil
	}
	bufs, ids = bufs[:n], ids[:n]
	k := 0
	if !q.pending || !q.descFast {
		// The first head of a batch: its id+flags word is stored by Publish.
		k = q.addOne(&bufs[0], &ids[0])
	}
	if k < n {
		q.addRun(bufs[k:], ids[k:])
	}
	q.numFree -= n
	q.added += n
	q.inflight += n
	return n, nil
}

// addOne adds one buffer through putWord (the first of a batch, or any on a
// table not aligned for descAt) and returns 1.
func (q *PackedDriver) addOne(b *Seg, idOut *uint16) int {
	pos, wrap := q.availPos, q.availWrap
	id := q.popID()
	f := wrapFlags(wrap, true)
	var wcap uint32
	if b.Write {
		f |= DescWrite
		wcap = b.Len
	}
	d := q.desc[16*int(pos):][:16]
	le.PutUint64(d[0:], b.Addr)
	le.PutUint32(d[8:], b.Len)
	q.putWord(16*int(pos)+descWordOff, uint32(id)|uint32(f)<<16)
	q.state[id] = packedBuf{slots: 1, pos: pos, writeCap: wcap, inflight: true}
	q.posID[pos] = id
	*idOut = id
	q.availPos, q.availWrap = q.advance(pos, wrap, 1)
	return 1
}

// addRun adds the rest of a batch whose first head is already pending: every
// descriptor is two plain 8-byte stores (descAt), published with that head.
func (q *PackedDriver) addRun(bufs []Seg, ids []uint16) {
	if !q.descFast {
		for k := range bufs {
			q.addOne(&bufs[k], &ids[k])
		}
		return
	}
	desc, state, idRing, posID := q.desc, q.state, q.ids, q.posID
	pos, wrap, idHead, size := q.availPos, q.availWrap, q.idHead, q.size
	avail := uint64(wrapFlags(wrap, true)) << 48
	for k := range bufs {
		b := &bufs[k]
		id := idRing[idHead]
		if idHead++; idHead == size {
			idHead = 0
		}
		var wcap uint32
		hi := avail | uint64(id)<<32 | uint64(b.Len)
		if b.Write {
			hi |= uint64(DescWrite) << 48
			wcap = b.Len
		}
		// Driver-written; published by the release of the pending head (see putWord).
		d := descAt(desc, pos)
		d[0], d[1] = b.Addr, hi
		state[id] = packedBuf{slots: 1, pos: pos, writeCap: wcap, inflight: true}
		posID[pos] = id
		ids[k] = id
		if pos++; pos == size {
			pos, wrap = 0, !wrap
			avail = uint64(wrapFlags(wrap, true)) << 48
		}
	}
	q.availPos, q.availWrap, q.idHead = pos, wrap, idHead
}

// putWord stores a descriptor's id+flags word, deferring the first buffer's
// head of a batch so that Publish exposes the batch with one release.
func (q *PackedDriver) putWord(off int, w uint32) {
	if !q.pending {
		q.pending, q.pendOff, q.pendWord = true, off, w
		return
	}
	// Driver-written word. A plain store: it is published by the release
	// store of the deferred first head in Publish, and the device reads it
	// only after acquiring that head (it polls strictly in ring order and
	// reads chain continuations after their head).
	le.PutUint32(q.desc[off:], w)
}

func (q *PackedDriver) finishAdd(id, head, pos uint16, wrap bool, slots uint16, wcap uint32) {
	q.state[id] = packedBuf{slots: slots, pos: head, writeCap: wcap, inflight: true}
	q.posID[head] = id
	q.availPos, q.availWrap = pos, wrap
	q.numFree -= int(slots)
	q.added += int(slots)
	q.inflight++
}

// AddIndirect places one buffer as a single descriptor pointing at an
// indirect table the caller owns until the buffer is collected (§2.8.7).
func (q *PackedDriver) AddIndirect(segs []Seg, t IndirectTable) (uint16, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := len(segs)
	if !q.indirect || n == 0 || n > int(q.size) || len(t.Host) < 16*n || !chainFits(segs) {
		return 0, ErrInvalid
	}
	if q.numFree == 0 {
		return 0, ErrFull
	}
	var wcap uint32
	for k, s := range segs {
		f := uint16(0)
		if s.Write {
			f = DescWrite
			wcap += s.Len
		}
		// Packed layout: addr, len, id (unused), flags.
		putDesc(t.Host[16*k:], s.Addr, s.Len, 0, f)
	}
	id := q.popID()
	head := q.availPos
	d := q.desc[16*int(head):][:16]
	le.PutUint64(d[0:], t.Addr)
	le.PutUint32(d[8:], uint32(16*n))
	q.putWord(16*int(head)+descWordOff, uint32(id)|uint32(wrapFlags(q.availWrap, true)|DescIndirect)<<16)
	pos, wrap := q.advance(head, q.availWrap, 1)
	q.finishAdd(id, head, pos, wrap, 1, wcap)
	return id, nil
}

// Publish makes the buffers added since the last Publish visible (one
// release store of the first head's flags) and reports whether the device
// must be kicked according to its event suppression structure (§2.8.10).
func (q *PackedDriver) Publish() (kick bool) {
	if !q.pending {
		return false
	}
	// Release: every descriptor of the batch before the first head's
	// flags; pairs with the device's acquire in PackedDevice.Pop.
	store32(q.desc, q.pendOff, q.pendWord)
	q.pending = false
	k := q.added
	q.added = 0
	// Device event suppression: device-written. Seq-cst store-load; pairs
	// with the device's store then descriptor load in EnableNotify.
	ev := load32(q.devEv, 0)
	return packedNeedEvent(ev, q.eventIdx, q.availPos, q.availWrap, k, q.size)
}

// EnableInterrupts asks the device to notify on the next used buffer and
// reports whether one is already pending.
func (q *PackedDriver) EnableInterrupts() (pending bool) {
	if q.eventIdx {
		q.drvEvent = uint32(offWrap(q.usedPos, q.usedWrap)) | uint32(EventDesc)<<16
	} else {
		q.drvEvent = uint32(EventEnable) << 16
	}
	// Driver event suppression: driver-written word.
	store32(q.drvEv, 0, q.drvEvent)
	// Seq-cst store-load; pairs with the device's descriptor store then
	// driver-event load in NeedNotify.
	return q.io.active || isUsed(uint16(load32(q.desc, 16*int(q.usedPos)+descWordOff)>>16), q.usedWrap)
}

// DisableInterrupts asks the device not to notify.
func (q *PackedDriver) DisableInterrupts() {
	q.drvEvent = uint32(EventDisable) << 16
	store32(q.drvEv, 0, q.drvEvent)
}

func (q *PackedDriver) fail(idx uint32, err error) error {
	q.err = broken("collect", idx, err)
	return q.err
}

// Collect fills dst with used buffers and returns how many, validating the
// id and length the device wrote. With IN_ORDER a used descriptor may
// complete several buffers (§2.8.8); the earlier ones are reported with
// their writable capacity as Len (they were used completely).
func (q *PackedDriver) Collect(dst []Used) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := 0
	for n < len(dst) {
		if q.io.active {
			n += q.drainInOrder(dst[n:])
			continue
		}
		if q.inflight == 0 {
			break
		}
		if !q.inOrder {
			k, err := q.collectRun(dst[n:])
			n += k
			if err != nil || k == 0 {
				return n, err
			}
			continue
		}
		// id+flags: device-written. Acquire; pairs with the release in
		// PackedDevice.Push. len is read after it.
		off := 16 * int(q.usedPos)
		w := load32(q.desc, off+descWordOff)
		if !isUsed(uint16(w>>16), q.usedWrap) {
			break
		}
		id, ln := uint16(w), le.Uint32(q.desc[off+8:])
		// §2.8.4 reserves len in used descriptors without WRITE, but devices disagree on
		// setting WRITE there (QEMU does not, DPDK leaves the driver's own flags): the
		// buffer's writable capacity decides instead, below.
		if id >= q.size || !q.state[id].inflight || q.pending && q.unpublished(id) {
			return n, q.fail(uint32(id), ErrUsedID)
		}
		if q.state[id].writeCap == 0 {
			ln = 0 // nothing writable: the length means nothing (DPDK leaves the driver's)
		} else if ln > q.state[id].writeCap {
			return n, q.fail(uint32(id), ErrUsedLen)
		}
		if q.inOrder {
			q.io = inOrderPending{active: true, target: id, len: ln}
			continue
		}
		q.usedPos, q.usedWrap = q.advance(q.usedPos, q.usedWrap, q.state[id].slots)
		dst[n] = Used{ID: id, Len: ln, Slots: q.state[id].slots}
		q.release(id)
		n++
	}
	return n, nil
}

func (q *PackedDriver) popID() uint16 {
	id := q.ids[q.idHead]
	if q.idHead++; q.idHead == q.size {
		q.idHead = 0
	}
	return id
}

// collectRun collects used descriptors in ring order without IN_ORDER,
// validating each; it stops at the first descriptor not yet used. One-slot
// buffers on an aligned table take the fast loop.
func (q *PackedDriver) collectRun(dst []Used) (int, error) {
	if !q.descFast {
		return q.collectRunChecked(dst)
	}
	desc, state, idRing, size := q.desc, q.state, q.ids, q.size
	pos, wrap, tail, numFree := q.usedPos, q.usedWrap, q.idTail, q.numFree
	want := uint32(wrapFlags(wrap, false)) << 16
	lim := min(len(dst), q.inflight)
	dst = dst[:lim]
	unpub := q.pending // some buffers in flight are not available yet
	k, odd := 0, false // odd: stopped at something the checked loop must handle
	for ; k < lim; k++ {
		// id+flags: device-written. Acquire; pairs with the release in
		// PackedDevice.Push (or a word it published). len is read after.
		w := atomic.LoadUint32(descWord(desc, pos))
		if w&(uint32(DescAvail|DescUsed)<<16) != want {
			break // not used yet: done
		}
		id := uint16(w)
		if id >= size {
			odd = true // the checked loop fails the queue
			break
		}
		s := &state[id]
		if !s.inflight || s.slots != 1 || unpub && q.unpublished(id) {
			odd = true // a broken id or a chain: the checked loop handles it
			break
		}
		ln := uint32(descAt(desc, pos)[1])
		if s.writeCap == 0 {
			ln = 0 // nothing writable: the length means nothing
		} else if ln > s.writeCap {
			odd = true
			break
		}
		s.inflight = false
		idRing[tail] = id
		if tail++; tail == size {
			tail = 0
		}
		dst[k] = Used{ID: id, Len: ln, Slots: 1}
		if pos++; pos == size {
			pos, wrap = 0, !wrap
			want = uint32(wrapFlags(wrap, false)) << 16
		}
	}
	numFree += k
	q.usedPos, q.usedWrap, q.idTail, q.numFree = pos, wrap, tail, numFree
	q.inflight -= k
	if odd {
		// A chain, a bad id or a bad length: the checked loop collects chains and
		// fails the queue, as before.
		j, err := q.collectRunChecked(dst[k:])
		return k + j, err
	}
	return k, nil
}

func (q *PackedDriver) collectRunChecked(dst []Used) (int, error) {
	desc, state, idRing, size := q.desc, q.state, q.ids, q.size
	pos, wrap, tail, numFree := q.usedPos, q.usedWrap, q.idTail, q.numFree
	want := wrapFlags(wrap, false)
	k, lim := 0, min(len(dst), q.inflight)
	unpub := q.pending // some buffers in flight are not available yet
	var err error
	for ; k < lim; k++ {
		// id+flags: device-written. Acquire; pairs with the release in
		// PackedDevice.Push (or a word it published). len is read after.
		w := load32(desc, 16*int(pos)+descWordOff)
		if uint16(w>>16)&(DescAvail|DescUsed) != want {
			break
		}
		id, ln := uint16(w), le.Uint32(desc[16*int(pos)+8:])
		// §2.8.4 reserves len in used descriptors without WRITE, but devices disagree on
		// setting WRITE there (QEMU does not, DPDK leaves the driver's own flags): the
		// buffer's writable capacity decides instead, below.
		if id >= size || !state[id].inflight || unpub && q.unpublished(id) {
			err = q.fail(uint32(id), ErrUsedID)
			break
		}
		s := &state[id]
		if s.writeCap == 0 {
			ln = 0 // nothing writable: the length means nothing
		} else if ln > s.writeCap {
			err = q.fail(uint32(id), ErrUsedLen)
			break
		}
		s.inflight = false
		idRing[tail] = id
		if tail++; tail == size {
			tail = 0
		}
		numFree += int(s.slots)
		dst[k] = Used{ID: id, Len: ln, Slots: s.slots}
		p := uint32(pos) + uint32(s.slots)
		if p >= uint32(size) {
			p -= uint32(size)
			wrap = !wrap
			want = wrapFlags(wrap, false)
		}
		pos = uint16(p)
	}
	q.usedPos, q.usedWrap, q.idTail, q.numFree = pos, wrap, tail, numFree
	q.inflight -= k
	return k, err
}

// unpublished reports whether in-flight buffer id was added after the last
// Publish: the device was never offered it, so a used descriptor naming it is
// forged (the device uses only buffers made available, §2.8). Those buffers fill
// the q.added slots from the deferred head (pendOff) on, each slot's posID
// naming its buffer; an older buffer whose first slot lies in that window was
// overwritten there, so posID names another.
func (q *PackedDriver) unpublished(id uint16) bool {
	start := q.pendOff / 16
	d := int(q.state[id].pos) - start
	if d < 0 {
		d += int(q.size)
	}
	return q.pending && d < q.added && q.posID[q.state[id].pos] == id
}

func (q *PackedDriver) drainInOrder(dst []Used) int {
	n := 0
	for n < len(dst) && q.io.active {
		id := q.posID[q.usedPos]
		// A buffer completed implicitly was used completely (§2.8.8,
		// §2.7.9): its length is its writable capacity.
		u := Used{ID: id, Len: q.state[id].writeCap, Slots: q.state[id].slots}
		if id == q.io.target {
			u.Len = q.io.len
			q.io.active = false
		}
		q.usedPos, q.usedWrap = q.advance(q.usedPos, q.usedWrap, u.Slots)
		q.release(id)
		dst[n] = u
		n++
	}
	return n
}

func (q *PackedDriver) release(id uint16) {
	s := &q.state[id]
	s.inflight = false
	q.ids[q.idTail] = id
	if q.idTail++; q.idTail == q.size {
		q.idTail = 0
	}
	q.numFree += int(s.slots)
	q.inflight--
}
