package vhost

import (
	"sync/atomic"

	"github.com/dpkit/dpkit/internal/sysmem"
	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

const noFrame = ^pmd.Frame(0)

// driverQueue is one virtqueue on the driver side, with the frame posted under each
// buffer id.
type driverQueue struct {
	split  *vring.SplitDriver
	packed *vring.PackedDriver
	kick   int
	frames []pmd.Frame // by buffer id; noFrame when not posted
	sig    [8]byte
	used   [pmd.MaxBurst]vring.Used
	seg    [maxTxSegs]vring.Seg
	// extra[id] holds the frames after the first of a chain posted as buffer id
	// (transmit queue only; made on the first chain for that id, then reused).
	extra [][]pmd.Frame
}

// maxTxSegs caps the segments of a chain the front-end transmits as one buffer (a
// 64 KiB packet in 4 KiB frames; virtio-net devices take far longer chains).
const maxTxSegs = 32

func newDriverQueue(area []byte, base uint64, mem *vring.Memory, o vring.Options, packed bool) (*driverQueue, []byte, error) {
	addr := make([]byte, sizeAddr)
	q := &driverQueue{}
	off := 0
	take := func(n int) ([]byte, uint64) {
		b, a := area[off:off+n], base+uint64(off)
		off += (n + 63) &^ 63
		return b, a
	}
	var err error
	if packed {
		d, e := vring.PackedSizes(o.Size)
		db, da := take(d)
		eb, ea := take(e)
		vb, va := take(e)
		q.packed, err = vring.NewPackedDriver(vring.PackedRing{Desc: db, DriverEvent: eb, DeviceEvent: vb}, mem, o)
		le.PutUint64(addr[8:], da)
		le.PutUint64(addr[16:], va)
		le.PutUint64(addr[24:], ea)
	} else {
		d, a, u := vring.SplitSizes(o.Size)
		db, da := take(d)
		ab, aa := take(a)
		ub, ua := take(u)
		q.split, err = vring.NewSplitDriver(vring.SplitRing{Desc: db, Avail: ab, Used: ub}, mem, o)
		le.PutUint64(addr[8:], da)
		le.PutUint64(addr[16:], ua)
		le.PutUint64(addr[24:], aa)
	}
	return q, addr, err
}

func (q *driverQueue) add(addr uint64, n uint32, write bool) (uint16, error) {
	q.seg[0] = vring.Seg{Addr: addr, Len: n, Write: write}
	return q.addSegs(q.seg[:1])
}

// addSegs posts one buffer made of segs.
func (q *driverQueue) addSegs(segs []vring.Seg) (uint16, error) {
	if q.split != nil {
		return q.split.Add(segs)
	}
	return q.packed.Add(segs)
}

func (q *driverQueue) free() int {
	if q.split != nil {
		return q.split.Free()
	}
	return q.packed.Free()
}

func (q *driverQueue) publish() {
	var kick bool
	if q.split != nil {
		kick = q.split.Publish()
	} else {
		kick = q.packed.Publish()
	}
	if kick && q.kick >= 0 {
		uds.Signal(q.kick, &q.sig)
	}
}

func (q *driverQueue) collect(n int) (int, error) {
	if q.split != nil {
		return q.split.Collect(q.used[:n])
	}
	return q.packed.Collect(q.used[:n])
}

func (q *driverQueue) disableInterrupts() {
	for i := range q.frames {
		q.frames[i] = noFrame
	}
	if q.split != nil {
		q.split.DisableInterrupts()
	} else {
		q.packed.DisableInterrupts()
	}
}

// FrontendPort is one queue pair of a Frontend: Rx takes packets from the device's
// receive queue (even index), Tx posts packets on its transmit queue (odd index).
// Packets stay in their pool frames: Rx hands over the frames the back-end filled, Tx
// lends frames to the back-end and frees them when it reports them used.
//
// One goroutine may call Rx and one Tx; Stats is safe from any goroutine.
type FrontendPort struct {
	f      *Frontend
	id     uint16
	pool   *pmd.Pool
	rx, tx *driverQueue
	caches pmd.PortCaches
	hdrLen int
	skip   int // mergeable continuation buffers still to discard (within one Rx call)
	// A mergeable packet, all its buffers collected, that did not fit in the
	// caller's pkts: the next Rx returns it first. need counts the buffers still to
	// collect of the packet being assembled (within one Rx call).
	part []pmd.Pkt
	need int
	// mrg: MRG_RXBUF was negotiated, so the header's num_buffers is the device's;
	// without it the device need not write the field (DPDK's vhost does not).
	mrg bool
	// rxBroken and txBroken are each owned by the goroutine of its direction; err
	// holds the first violation, for Err from any goroutine.
	rxBroken, txBroken bool
	err                atomic.Pointer[error]
	ctr                pmd.Counters
	tmp                [64]pmd.Pkt
	fr                 [pmd.MaxBurst]pmd.Frame // Rx's scratch
	frTx               [pmd.MaxBurst]pmd.Frame // Tx's (Rx and Tx may run on two goroutines)
}

func (p *FrontendPort) gpa(f pmd.Frame) uint64 {
	return uint64(sysmem.Addr(p.pool.Region())) + p.pool.Addr(f)
}

// refill posts fresh frames on the receive queue (published by the caller) and
// returns how many it posted.
func (p *FrontendPort) refill() (added int) {
	h := p.pool.Headroom()
	blen := uint32(p.pool.FrameSize() - h + p.hdrLen)
	for {
		want := min(p.rx.free(), len(p.tmp))
		if want == 0 {
			return added
		}
		got := p.caches.Rx.Alloc(p.tmp[:want])
		for i := range p.tmp[:got] {
			fr := p.tmp[i].Frame
			id, err := p.rx.add(p.gpa(fr)+uint64(h-p.hdrLen), blen, true)
			if err != nil {
				p.caches.Rx.Free(p.tmp[i:got])
				return added
			}
			p.rx.frames[id] = fr
			added++
		}
		if got < want {
			return added
		}
	}
}

// Rx returns packets the back-end delivered, in their pool frames. A packet the
// back-end spread over several buffers (MRG_RXBUF, num_buffers > 1) is returned as a
// chain of their frames, all but the last flagged pmd.PktMore; one of more than
// pmd.MaxBurst buffers, or longer than len(pkts), is dropped (DropTooLong); one
// whose num_buffers claims more buffers than the back-end used is dropped
// (DropInvalid), and the buffers it claimed but did not use are not taken from the
// packets after it.
func (p *FrontendPort) Rx(pkts []pmd.Pkt) int {
	if p.rxBroken || len(pkts) == 0 || p.f.down.Load() {
		return 0
	}
	h := p.pool.Headroom()
	out, bytes, npk, nfree := 0, 0, 0, 0
	var invalid, tooLong int
	if len(p.part) > 0 {
		// Carried over: a whole chain that did not fit in the last call's pkts.
		if len(p.part) > len(pkts) {
			p.caches.Rx.Free(p.part)
			tooLong++
		} else {
			out = copy(pkts, p.part)
			npk++
			bytes += pmd.Bytes(pkts[:out])
		}
		p.part = p.part[:0]
	}
	start := 0 // where the chain being assembled begins in dst (while p.need > 0)
	// dst is where packets go: pkts, or p.part once pkts is full with a chain
	// unfinished (kept is then how many packets pkts holds).
	dst, kept := pkts, -1
	// A back-end publishes all the buffers of a packet at once (num_buffers in its
	// header; dpkit's and DPDK's back-ends advance the used ring once per burst), so
	// a packet's buffers are all in the used ring when its first one is. Collect
	// on while a packet is unfinished and the ring still has buffers; a packet
	// still unfinished when the ring runs dry claimed more buffers than the
	// back-end used: it is dropped, and the buffers that come later are new
	// packets, not its missing parts (as Linux's and DPDK's virtio drivers do).
	// Otherwise a hostile num_buffers (up to 0xFFFF) would take that many of the
	// back-end's later buffers with it. A chain that pkts has no room left for is
	// finished in p.part, from the buffers in the ring now, and returned by the
	// next call.
	for {
		want := min(len(dst)-out, pmd.MaxBurst)
		if p.skip > 0 {
			// Only the buffers being discarded: they take no room in pkts.
			want = min(p.skip, pmd.MaxBurst)
		} else if want == 0 && p.need > 0 && kept < 0 {
			// pkts is full: move the chain to p.part (a chain is at most
			// pmd.MaxBurst buffers) and collect only its missing buffers.
			p.part = append(p.part[:0], pkts[start:out]...)
			kept, dst = start, p.part[:pmd.MaxBurst]
			out, start = len(p.part), 0
			p.part = p.part[:0]
			want = p.need
		} else if kept >= 0 {
			want = min(want, p.need)
		}
		if want == 0 {
			break
		}
		n, err := p.rx.collect(want)
		if err != nil {
			p.rxBroken = true
			p.fail(err)
			p.ctr.AddDrop(pmd.DropInvalid, 1)
		}
		for _, u := range p.rx.used[:n] {
			fr := p.rx.frames[u.ID]
			p.rx.frames[u.ID] = noFrame
			if fr == noFrame || (p.need > 0 && int(u.Len) > p.pool.FrameSize()-h+p.hdrLen) {
				invalid++
				if fr != noFrame {
					p.fr[nfree] = fr
					nfree++
				}
				if p.need > 0 {
					// A chain with a bad buffer is dropped whole.
					p.caches.Rx.Free(dst[start:out])
					out, p.skip, p.need = start, p.need-1, 0
				} else if p.skip > 0 {
					p.skip-- // it took the place of a buffer being discarded
				}
				continue
			}
			if p.skip > 0 {
				p.skip--
				p.fr[nfree] = fr
				nfree++
				continue
			}
			if p.need > 0 {
				// A continuation buffer: data from its start, no header (virtio 1.2
				// §5.1.6.4.2).
				dst[out-1].Flags |= pmd.PktMore
				dst[out] = pmd.Pkt{Frame: fr, Off: uint16(h - p.hdrLen), Len: uint16(u.Len), Port: p.id}
				out++
				if p.need--; p.need == 0 && kept < 0 {
					npk++
					bytes += pmd.Bytes(dst[start:out])
				}
				continue
			}
			b := p.pool.Bytes(fr)
			if int(u.Len) < p.hdrLen {
				invalid++
				p.fr[nfree] = fr
				nfree++
				continue
			}
			l := int(u.Len) - p.hdrLen
			nb := 1
			if p.mrg {
				nb = int(b[h-2]) | int(b[h-1])<<8
			}
			if nb > 1 {
				if nb > pmd.MaxBurst {
					p.skip = nb - 1
					tooLong++
					p.fr[nfree] = fr
					nfree++
					continue
				}
				start, p.need = out, nb-1
			} else {
				npk++
				bytes += l
			}
			dst[out] = pmd.Pkt{Frame: fr, Off: uint16(h), Len: uint16(l), Port: p.id}
			out++
		}
		if nfree > 0 {
			p.caches.Rx.Put(p.fr[:nfree])
			nfree = 0
		}
		if err != nil {
			break
		}
		if n < want {
			// The ring ran dry: a packet still unfinished was a lie.
			if p.need > 0 {
				p.caches.Rx.Free(dst[start:out])
				out, p.need = start, 0
				invalid++
			}
			p.skip = 0 // its packet was counted when the discarding began
			break
		}
		if p.need == 0 && p.skip == 0 {
			break
		}
	}
	if p.need > 0 {
		// The ring broke in the middle of a chain.
		p.caches.Rx.Free(dst[start:out])
		out, p.need = start, 0
		invalid++
	}
	if kept >= 0 {
		// The chain finished in p.part (or was dropped): the next call returns it.
		p.part, out = dst[:out], kept
	}
	// Refill on every call, not only after buffers came back used: a refill that
	// found the pool empty may have left the queue with no buffer posted, and the
	// back-end then completes nothing that would bring the next refill. The driver
	// keeps the receive queue supplied (VIRTIO 1.2 §5.1.6.3); DPDK's virtio PMD
	// likewise refills whenever its receive queue is not full. With the queue full
	// this costs one comparison.
	if p.rx.free() > 0 && p.refill() > 0 {
		p.rx.publish()
	}
	p.ctr.AddRx(npk, bytes)
	p.ctr.AddDrop(pmd.DropInvalid, invalid)
	p.ctr.AddDrop(pmd.DropTooLong, tooLong)
	return out
}

// reclaim frees the frames of transmitted packets.
func (p *FrontendPort) reclaim() {
	n, err := p.tx.collect(pmd.MaxBurst)
	if err != nil {
		p.txBroken = true
		p.fail(err)
	}
	k := 0
	for _, u := range p.tx.used[:n] {
		if fr := p.tx.frames[u.ID]; fr != noFrame {
			p.frTx[k] = fr
			k++
			p.tx.frames[u.ID] = noFrame
			if int(u.ID) < len(p.tx.extra) && len(p.tx.extra[u.ID]) > 0 {
				p.caches.Tx.Put(p.tx.extra[u.ID])
				p.tx.extra[u.ID] = p.tx.extra[u.ID][:0]
			}
		}
	}
	p.caches.Tx.Put(p.frTx[:k])
}

// txChain posts the pmd chain segs (PktMore on all but the last) as one buffer of
// as many descriptors, the virtio-net header in the first segment's headroom. It
// reports false, posting nothing, when the ring has too few free descriptors.
func (p *FrontendPort) txChain(segs []pmd.Pkt) (bool, error) {
	q := p.tx
	if q.free() < len(segs) {
		return false, nil
	}
	for k := range segs {
		pk := &segs[k]
		off, n := int(pk.Off), int(pk.Len)
		if k == 0 {
			off, n = off-p.hdrLen, n+p.hdrLen
			clear(p.pool.Bytes(pk.Frame)[off:pk.Off])
		}
		q.seg[k] = vring.Seg{Addr: p.gpa(pk.Frame) + uint64(off), Len: uint32(n)}
	}
	id, err := q.addSegs(q.seg[:len(segs)])
	if err != nil {
		return false, err
	}
	q.frames[id] = segs[0].Frame
	for _, pk := range segs[1:] {
		q.extra[id] = append(q.extra[id], pk.Frame)
	}
	return true, nil
}

// Tx posts packets for the back-end, writing the virtio-net header into each
// packet's headroom, and returns how many it took. Packets whose headroom is too small
// for the header are dropped (taken and counted).
func (p *FrontendPort) Tx(pkts []pmd.Pkt) int {
	if p.txBroken || p.f.down.Load() {
		return 0
	}
	p.reclaim()
	i, sent, bytes, bad, tooLong := 0, 0, 0, 0, 0
	for ; i < len(pkts); i++ {
		pk := &pkts[i]
		if pk.Flags&pmd.PktMore != 0 {
			j := i + 1
			for j < len(pkts) && pkts[j-1].Flags&pmd.PktMore != 0 {
				j++
			}
			if pkts[j-1].Flags&pmd.PktMore != 0 {
				break // an unfinished chain stays the caller's
			}
			if j-i > min(maxTxSegs, len(p.tx.frames)) {
				tooLong++ // more descriptors than the ring or a buffer may have
				p.caches.Tx.Free(pkts[i:j])
				i = j - 1
				continue
			}
			if int(pk.Off) < p.hdrLen {
				bad++
				p.caches.Tx.Free(pkts[i:j])
				i = j - 1
				continue
			}
			ok, err := p.txChain(pkts[i:j])
			if !ok || err != nil {
				break
			}
			sent++
			bytes += pmd.Bytes(pkts[i:j])
			i = j - 1
			continue
		}
		if int(pk.Off) < p.hdrLen {
			bad++
			p.frTx[0] = pk.Frame
			p.caches.Tx.Put(p.frTx[:1])
			continue
		}
		if p.tx.free() == 0 {
			break
		}
		b := p.pool.Bytes(pk.Frame)
		clear(b[int(pk.Off)-p.hdrLen : pk.Off])
		id, err := p.tx.add(p.gpa(pk.Frame)+uint64(int(pk.Off)-p.hdrLen), uint32(int(pk.Len)+p.hdrLen), false)
		if err != nil {
			break
		}
		p.tx.frames[id] = pk.Frame
		sent++
		bytes += int(pk.Len)
	}
	if sent > 0 {
		p.tx.publish()
	}
	p.ctr.AddTx(sent, bytes)
	p.ctr.AddDrop(pmd.DropInvalid, bad)
	p.ctr.AddDrop(pmd.DropTooLong, tooLong)
	return i
}

// TxChains implements pmd.ChainTxer: a chain goes out as one buffer of several
// descriptors.
func (p *FrontendPort) TxChains() bool { return true }

// Err returns the peer violation that stopped the port, or nil.
func (p *FrontendPort) Err() error {
	if e := p.err.Load(); e != nil {
		return *e
	}
	return nil
}

// fail records err as the port's violation unless one is already recorded.
func (p *FrontendPort) fail(err error) { p.err.CompareAndSwap(nil, &err) }

// Stats returns the port's counters.
func (p *FrontendPort) Stats() pmd.PortStats { return p.ctr.Snapshot() }

// Close is a no-op; close the Frontend to release the rings and frames.
func (p *FrontendPort) Close() error { return nil }

// UseCaches implements pmd.CacheUser: Rx refills the receive queue from rx, Tx frees
// used frames to tx.
func (p *FrontendPort) UseCaches(rx, tx *pmd.Cache) error { return p.caches.Use(rx, tx) }

// release returns the caches to the pool, and the frames posted to the rings too if
// the back-end stopped them; otherwise it leaves those out and returns how many.
func (p *FrontendPort) release(stopped bool) int {
	withheld := 0
	for _, q := range []*driverQueue{p.rx, p.tx} {
		if q == nil {
			continue
		}
		for i, fr := range q.frames {
			if fr != noFrame {
				if stopped {
					p.fr[0] = fr
					p.pool.Put(p.fr[:1]) // the caches may be a worker's
				} else {
					withheld++
				}
				q.frames[i] = noFrame
			}
			if i < len(q.extra) && len(q.extra[i]) > 0 {
				if stopped {
					p.pool.Put(q.extra[i])
				} else {
					withheld += len(q.extra[i])
				}
				q.extra[i] = q.extra[i][:0]
			}
		}
	}
	for _, pk := range p.part {
		p.fr[0] = pk.Frame
		p.pool.Put(p.fr[:1])
	}
	p.part = p.part[:0]
	p.caches.Close()
	return withheld
}

var (
	_ pmd.Port = (*Port)(nil)
	_ pmd.Port = (*FrontendPort)(nil)
)
