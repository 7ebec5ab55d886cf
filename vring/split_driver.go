package vring

// SplitDriver is the driver side of a split virtqueue (§2.7.13, §2.7.14):
// it adds buffers, publishes them, and collects used buffers, validating
// everything the device writes. Descriptor bookkeeping lives in private
// memory, never re-read from the shared table. It is owned by one goroutine.
type SplitDriver struct {
	splitCommon
	next      []uint16 // private free-list links (IN_ORDER: i+1 mod size, never changed)
	state     []splitBuf
	order     []uint16 // heads in avail order, by position & mask
	freeHead  uint16
	numFree   int
	availIdx  uint16 // next avail position (free-running), not yet published
	published uint16 // avail.idx last stored
	availFlag uint16 // our copy of avail.flags
	lastUsed  uint16 // next used position to read
	usedCache uint16 // last used.idx loaded
	inflight  int    // buffers added and not collected
	completed uint16 // IN_ORDER: buffers completed, index into order
	io        inOrderPending
}

// splitBuf is the private state of one head; the buffer is in flight
// while descs != 0.
type splitBuf struct {
	descs    uint16 // descriptors in the chain (1 for indirect)
	last     uint16 // last descriptor index, to relink the free list
	pos      uint16 // avail ring position (free-running) it was offered at
	writeCap uint32
}

type inOrderPending struct {
	active bool
	target uint16
	len    uint32
}

// NewSplitDriver returns the driver side of a split ring. It initializes
// the ring memory (zeroes flags and indices).
func NewSplitDriver(r SplitRing, mem *Memory, o Options) (*SplitDriver, error) {
	q := &SplitDriver{}
	if err := q.init(r, mem, o, false); err != nil {
		return nil, err
	}
	n := int(q.size)
	q.next = make([]uint16, n)
	for i := range q.next {
		q.next[i] = uint16((i + 1) % n)
	}
	q.state = make([]splitBuf, n)
	q.order = make([]uint16, n)
	q.numFree = n
	store32(q.avail, 0, 0)
	store16(q.avail, q.usedEventOff(), 0)
	store32(q.used, 0, 0)
	store16(q.used, q.availEventOff(), 0)
	return q, nil
}

// Free returns the number of free descriptors.
func (q *SplitDriver) Free() int { return q.numFree }

// InFlight returns the number of buffers added and not yet collected.
func (q *SplitDriver) InFlight() int { return q.inflight }

// Add places one buffer made of segs (readable ones first, then writable,
// §2.7.4) in the ring and returns its head id. It is not visible to the
// device until Publish. Addresses are guest addresses/IOVAs; nothing is
// copied. A buffer of no segment, of more than the queue size, or of 4 GiB
// or more in total is refused with ErrInvalid.
func (q *SplitDriver) Add(segs []Seg) (uint16, error) {
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
	head := q.freeHead
	i := head
	var wcap uint32
	for k := range segs {
		s := &segs[k]
		flags := uint16(0)
		if s.Write {
			flags = DescWrite
			wcap += s.Len
		}
		nx := q.next[i]
		if k < n-1 {
			flags |= DescNext
		}
		// Descriptor: driver-written, published by the avail.idx release.
		putDesc(q.desc[16*int(i):], s.Addr, s.Len, flags, nx)
		if k < n-1 {
			i = nx
		}
	}
	q.freeHead = q.next[i]
	q.numFree -= n
	q.state[head] = splitBuf{descs: uint16(n), last: i, writeCap: wcap}
	q.offer(head)
	return head, nil
}

// AddBatch adds each of bufs as its own one-descriptor buffer (the RX
// refill pattern), as many as fit, writes their ids to ids and returns how
// many were added. Nothing is visible to the device until Publish.
func (q *SplitDriver) AddBatch(bufs []Seg, ids []uint16) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := min(len(bufs), len(ids), q.numFree)
	desc, avail, next, state, order := q.desc, q.avail, q.next, q.state, q.order
	head, idx, mask, fast := q.freeHead, q.availIdx, q.mask, q.descFast
	for k := 0; k < n; k++ {
		b := &bufs[k]
		var flags uint16
		var wcap uint32
		if b.Write {
			flags, wcap = DescWrite, b.Len
		}
		// Descriptor and ring entry: driver-written, published by the
		// avail.idx release in Publish.
		if fast {
			d := descAt(desc, head)                              // head < size: it comes from the free list
			d[0], d[1] = b.Addr, uint64(b.Len)|uint64(flags)<<32 // len, flags, next 0
		} else {
			d := desc[16*int(head):][:16]
			le.PutUint64(d[0:], b.Addr)
			le.PutUint64(d[8:], uint64(b.Len)|uint64(flags)<<32)
		}
		state[head] = splitBuf{descs: 1, last: head, pos: idx, writeCap: wcap}
		le.PutUint16(avail[availRingOff+2*int(idx&mask):], head)
		order[idx&mask] = head
		ids[k] = head
		idx++
		head = next[head]
	}
	q.freeHead, q.availIdx = head, idx
	q.numFree -= n
	q.inflight += n
	return n, nil
}

// AddIndirect places one buffer as a single descriptor pointing at an
// indirect table (§2.7.5.3) that the caller owns until the buffer is
// collected. Needs INDIRECT_DESC.
func (q *SplitDriver) AddIndirect(segs []Seg, t IndirectTable) (uint16, error) {
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
		flags := uint16(0)
		if s.Write {
			flags = DescWrite
			wcap += s.Len
		}
		next := uint16(0)
		if k < n-1 {
			flags |= DescNext
			next = uint16(k + 1)
		}
		putDesc(t.Host[16*k:], s.Addr, s.Len, flags, next)
	}
	head := q.freeHead
	putDesc(q.desc[16*int(head):], t.Addr, uint32(16*n), DescIndirect, 0)
	q.freeHead = q.next[head]
	q.numFree--
	q.state[head] = splitBuf{descs: 1, last: head, writeCap: wcap}
	q.offer(head)
	return head, nil
}

func (q *SplitDriver) offer(head uint16) {
	// avail.ring entry: driver-written, published by the avail.idx release.
	le.PutUint16(q.avail[availRingOff+2*int(q.availIdx&q.mask):], head)
	q.order[q.availIdx&q.mask] = head
	q.state[head].pos = q.availIdx
	q.availIdx++
	q.inflight++
}

// Publish makes the buffers added since the last Publish visible with one
// avail.idx store and reports whether the device must be notified (kicked)
// according to EVENT_IDX or VIRTQ_USED_F_NO_NOTIFY (§2.7.10, §2.7.13.4).
func (q *SplitDriver) Publish() (kick bool) {
	old, new := q.published, q.availIdx
	if old == new {
		return false
	}
	// avail.flags+idx: driver-written word. Release: descriptors and ring
	// entries before it; pairs with the device's acquire in Pop.
	store32(q.avail, 0, uint32(q.availFlag)|uint32(new)<<16)
	q.published = new
	// Seq-cst store-load: pairs with the device's avail_event/flags store
	// followed by its avail.idx load in EnableNotify.
	if q.eventIdx {
		return needEvent(load16(q.used, q.availEventOff()), new, old)
	}
	return load16(q.used, 0)&UsedNoNotify == 0
}

// EnableInterrupts asks the device to notify on the next used buffer and
// reports whether used buffers are already pending (collect them before
// sleeping).
func (q *SplitDriver) EnableInterrupts() (pending bool) {
	if q.eventIdx {
		// used_event: driver-written tail field (CAS store).
		store16(q.avail, q.usedEventOff(), q.lastUsed)
	} else {
		q.availFlag &^= AvailNoInterrupt
		store32(q.avail, 0, uint32(q.availFlag)|uint32(q.published)<<16)
	}
	// Seq-cst store-load; pairs with the device's used.idx store followed
	// by its used_event/flags load in NeedNotify.
	return load16(q.used, 2) != q.lastUsed || q.io.active
}

// DisableInterrupts asks the device not to notify. With EVENT_IDX the
// device may still notify once (used_event is left where it was), and
// avail.flags stays 0, as §2.7.7.1 requires of a driver with EVENT_IDX.
func (q *SplitDriver) DisableInterrupts() {
	if q.eventIdx {
		return
	}
	q.availFlag |= AvailNoInterrupt
	store32(q.avail, 0, uint32(q.availFlag)|uint32(q.published)<<16)
}

func (q *SplitDriver) fail(idx uint32, err error) error {
	q.err = broken("collect", idx, err)
	return q.err
}

// Collect fills dst with used buffers and returns how many. It validates
// every id and length the device wrote; a violation breaks the queue. With
// IN_ORDER, one used entry may complete several buffers (§2.7.9): the
// earlier ones are reported with their writable capacity as Len (they
// were used completely).
func (q *SplitDriver) Collect(dst []Used) (int, error) {
	if q.err != nil {
		return 0, q.err
	}
	n := 0
	for n < len(dst) {
		if q.io.active {
			k, err := q.drainInOrder(dst[n:])
			n += k
			if err != nil {
				return n, err
			}
			continue
		}
		if q.lastUsed == q.usedCache {
			// used.idx: device-written. Acquire; pairs with the release
			// in SplitDevice.Push. Used entries are read after it.
			// Only published buffers can have been used: those added
			// since the last Publish are in flight, not available.
			u := load16(q.used, 2)
			if int(u-q.lastUsed) > q.inflight-int(q.availIdx-q.published) {
				return n, q.fail(uint32(u), ErrUsedIdx)
			}
			q.usedCache = u
			if u == q.lastUsed {
				break
			}
		}
		if !q.inOrder {
			k, err := q.collectRun(dst[n:])
			n += k
			if err != nil {
				return n, err
			}
			continue
		}
		e := q.used[usedRingOff+8*int(q.lastUsed&q.mask):][:8]
		id32, ln := le.Uint32(e[0:]), le.Uint32(e[4:])
		if id32 >= uint32(q.size) || q.state[id32].descs == 0 || q.unpublished(uint16(id32)) {
			return n, q.fail(id32, ErrUsedID)
		}
		id := uint16(id32)
		if q.state[id].writeCap == 0 {
			ln = 0 // §2.7.8: a driver ignores len for a buffer with nothing writable
		} else if ln > q.state[id].writeCap {
			return n, q.fail(id32, ErrUsedLen)
		}
		if q.inOrder {
			// §2.7.9: the entry completes the buffers from the oldest in flight
			// through id, and the device advanced used.idx by their number;
			// drainInOrder moves lastUsed past each.
			q.io = inOrderPending{active: true, target: id, len: ln}
			continue
		}
		q.lastUsed++
		dst[n] = Used{ID: id, Len: ln, Slots: q.state[id].descs}
		q.release(id)
		n++
	}
	return n, nil
}

// collectRun reads the used entries between lastUsed and usedCache (at
// most len(dst)), without IN_ORDER, validating each.
func (q *SplitDriver) collectRun(dst []Used) (int, error) {
	k := min(len(dst), int(q.usedCache-q.lastUsed))
	used, state, next, mask, size := q.used, q.state, q.next, q.mask, uint32(q.size)
	last, free, numFree := q.lastUsed, q.freeHead, q.numFree
	unpub := q.availIdx != q.published // some buffers in flight are not available yet
	for j := 0; j < k; j++ {
		// Used entry: device-written, published by the used.idx acquire.
		var v uint64
		if q.descFast {
			e := usedAt(used, last&mask)
			v = uint64(e[0]) | uint64(e[1])<<32
		} else {
			v = le.Uint64(used[usedRingOff+8*int(last&mask):])
		}
		id32, ln := uint32(v), uint32(v>>32)
		if id32 >= size || state[id32].descs == 0 || unpub && q.unpublished(uint16(id32)) {
			q.lastUsed, q.freeHead, q.numFree = last, free, numFree
			q.account(j)
			return j, q.fail(id32, ErrUsedID)
		}
		s := &state[id32]
		if s.writeCap == 0 {
			ln = 0 // nothing writable: the length means nothing
		} else if ln > s.writeCap {
			q.lastUsed, q.freeHead, q.numFree = last, free, numFree
			q.account(j)
			return j, q.fail(id32, ErrUsedLen)
		}
		next[s.last] = free
		free = uint16(id32)
		numFree += int(s.descs)
		dst[j] = Used{ID: uint16(id32), Len: ln, Slots: s.descs}
		s.descs = 0 // no longer in flight
		last++
	}
	q.lastUsed, q.freeHead, q.numFree = last, free, numFree
	q.account(k)
	return k, nil
}

// unpublished reports whether in-flight buffer id was added after the last
// Publish: the device was never offered it, so a used entry naming it is
// forged (the device uses only buffers made available, §2.7.8). Its
// position is in the window [published, availIdx), and the order entry there is
// still id; a buffer offered 2^16 or more positions ago may alias the window,
// but the order entry at its position then holds the newer, other head.
func (q *SplitDriver) unpublished(id uint16) bool {
	w, p := q.availIdx-q.published, q.state[id].pos
	return w != 0 && p-q.published < w && q.order[p&q.mask] == id
}

func (q *SplitDriver) account(k int) { q.inflight -= k }

// drainInOrder completes buffers in avail order up to the pending target, one used
// ring position each (§2.7.9: the device skips forward by the size of the batch). A
// batch longer than the device's used.idx advance breaks the queue.
func (q *SplitDriver) drainInOrder(dst []Used) (int, error) {
	n := 0
	for n < len(dst) && q.io.active {
		if q.lastUsed == q.usedCache {
			return n, q.fail(uint32(q.io.target), ErrUsedIdx)
		}
		q.lastUsed++
		h := q.order[q.completed&q.mask]
		q.completed++
		// A buffer completed implicitly was used completely (§2.8.8,
		// §2.7.9): its length is its writable capacity.
		u := Used{ID: h, Len: q.state[h].writeCap, Slots: q.state[h].descs}
		if h == q.io.target {
			u.Len = q.io.len
			q.io.active = false
		}
		q.release(h)
		dst[n] = u
		n++
	}
	return n, nil
}

func (q *SplitDriver) release(id uint16) {
	s := &q.state[id]
	if !q.inOrder {
		q.next[s.last] = q.freeHead
		q.freeHead = id
	}
	q.numFree += int(s.descs)
	s.descs = 0 // no longer in flight
	q.inflight--
}
