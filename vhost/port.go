package vhost

import (
	"runtime/debug"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// Port is one queue pair of a Backend as a pmd.Port: Rx takes the packets the guest
// transmitted (its TX virtqueue, odd index), Tx puts packets into the guest's receive
// buffers (its RX virtqueue, even index).
//
// One goroutine may call Rx and one (possibly another) Tx; Stats is safe from any
// goroutine. While no front-end is attached or the queue is being reconfigured, Rx and
// Tx return 0 at once.
type Port struct {
	b      *Backend
	id     uint16
	qp     int
	caches pmd.PortCaches // Rx's in Rx's goroutine, Tx's in Tx's
	ctr    pmd.Counters
	spare  []pmd.Pkt // Rx's frames not used yet when a burst turns to chains

	// Frames an Rx burst holds, for leaveRx: Rx's pkts[:rxHeld], and spare when
	// spareHeld.
	rxHeld    int
	spareHeld bool
}

func newPort(b *Backend, qp int) *Port {
	return &Port{
		b: b, id: b.opts.PortID, qp: qp,
		caches: pmd.NewPortCaches(b.opts.Pool, 0),
		spare:  make([]pmd.Pkt, 0, pmd.MaxBurst),
	}
}

// TxChains implements pmd.ChainTxer: Tx copies a multi-buffer chain into the guest's
// buffers as one packet.
func (p *Port) TxChains() bool { return true }

// Stats returns the port's counters.
func (p *Port) Stats() pmd.PortStats { return p.ctr.Snapshot() }

// Close returns the frames of the port's own caches to the pool. Call it after the
// datapath goroutines stopped.
func (p *Port) Close() error {
	p.caches.Close()
	return nil
}

// TxReady reports whether the guest's receive queue of the pair is running: set up
// and enabled. A multi-queue guest need not enable every pair it was offered (a
// DPDK pod configured with fewer queues, a kernel guest before ethtool -L); a
// datapath sends to the pairs that are ready, as OVS remaps its transmit queues to
// the enabled ones.
func (p *Port) TxReady() bool {
	q := p.b.vqFor(p.qp, 0)
	return q != nil && q.active.Load() != nil
}

// UseCaches implements pmd.CacheUser: Rx takes frames from rx, Tx frees to tx.
func (p *Port) UseCaches(rx, tx *pmd.Cache) error { return p.caches.Use(rx, tx) }

// Rx copies packets the guest transmitted into fresh pool frames, without the
// virtio-net header, and returns how many of pkts it filled. A packet longer than a
// frame is copied into as many frames as it needs and returned as a pmd chain
// (pmd.PktMore on all but its last frame); one that needs more frames than len(pkts)
// or pmd.MaxBurst is completed and counted as a drop (DropTooLong), as are chains
// shorter than the header or that cannot be read (DropInvalid).
func (p *Port) Rx(pkts []pmd.Pkt) (n int) {
	d := p.b.curDev.Load()
	if d == nil {
		return 0
	}
	q := d.queues[2*p.qp+1]
	r := q.acquire()
	if r == nil {
		return 0
	}
	if r.faulted {
		q.release()
		return 0
	}
	p.rxHeld, p.spareHeld = 0, false
	defer p.leaveRx(d, q, r, pkts, &n, debug.SetPanicOnFault(true))
	k := 0
	if p.qp == 0 && d.rarp.Load() != 0 && len(pkts) > 0 {
		k = p.rarp(d, pkts[:1])
	}
	p.rxHeld = k
	return k + p.rx(r, pkts[k:])
}

// leaveRx ends an Rx burst: it gives the ring back to the control path. After a fault
// on guest memory (memfault.go) it frees the burst's frames, which rx keeps track of
// in rxHeld and spare, and has the device dropped.
func (p *Port) leaveRx(d *device, q *vq, r *ring, pkts []pmd.Pkt, n *int, prev bool) {
	debug.SetPanicOnFault(prev)
	if v := recover(); v != nil {
		p.faulted(d, q, r, v)
		p.caches.Rx.Free(pkts[:p.rxHeld])
		if p.spareHeld {
			p.caches.Rx.Free(p.spare)
		}
		*n = 0
	}
	q.release()
}

// faulted handles v, recovered from a burst on r: a panic other than a fault on r's
// guest memory goes on (a bug); a fault marks r faulted, counts the drop and has the
// control goroutine drop the device.
func (p *Port) faulted(d *device, q *vq, r *ring, v any) {
	if !r.owns(v) {
		q.release()
		panic(v)
	}
	r.faulted = true
	r.fail()
	p.ctr.AddDrop(pmd.DropInvalid, 1)
	d.dropFaulted()
}

// rarpPending marks device.rarp as holding a MAC to announce.
const rarpPending = 1 << 48

// rarp fills pkts[0] with the RARP that SEND_RARP asked for, if one is still to
// send and a frame is free, and returns 1; else 0. The frame is a RARP request
// (RFC 903) from the guest's MAC to the broadcast address, as DPDK's vhost makes it.
func (p *Port) rarp(d *device, pkts []pmd.Pkt) int {
	v := d.rarp.Load()
	if v == 0 || p.caches.Rx.Alloc(pkts) != 1 {
		return 0
	}
	if !d.rarp.CompareAndSwap(v, 0) {
		p.caches.Rx.Free(pkts)
		return 0
	}
	var mac [8]byte
	be.PutUint64(mac[:], v)
	pool := p.caches.Rx.Pool()
	pk := &pkts[0]
	pool.Append(pk, 60)
	f := pool.Data(pk)
	clear(f)
	for i := range 6 {
		f[i] = 0xff
	}
	copy(f[6:12], mac[2:])
	be.PutUint16(f[12:], 0x8035)                // RARP
	be.PutUint64(f[14:], 0x0001_0800_0604_0003) // Ethernet, IPv4, 6, 4, reverse request
	copy(f[22:28], mac[2:])                     // sender hardware address; protocol address 0
	copy(f[32:38], mac[2:])                     // target hardware address; protocol address 0
	pk.Port, pk.Flags = p.id, 0
	p.ctr.AddRx(1, 60)
	return 1
}

// touchMax is the longest packet whose first line rx loads ahead of the copies.
const touchMax = 256

func (p *Port) rx(r *ring, pkts []pmd.Pkt) int {
	if r.broken {
		return 0
	}
	// Chains first, then exactly as many frames: an empty or nearly empty ring
	// costs no frame allocation and freeing.
	c, err := r.pop(r.chains[:min(len(pkts), r.burst)])
	if err != nil {
		// The guest broke the ring at chain c. The c before it are good: they are
		// served and pushed below like any other (vring completes chains popped
		// before the violation), so the guest gets its buffers back; the ring
		// takes nothing more.
		r.fail()
		p.ctr.AddDrop(pmd.DropInvalid, 1)
	}
	if c == 0 {
		return 0
	}
	got := p.caches.Rx.Alloc(pkts[:c])
	p.rxHeld += got // pkts[:rxHeld] (of Rx's pkts) hold frames
	if got < c {
		// Out of frames: the chains not served go back to the ring, in order.
		if err := r.unpop(r.chains[got:c]); err != nil {
			r.fail()
		}
		p.ctr.AddDrop(pmd.DropNoBuffer, 1)
		c = got
		if c == 0 {
			return 0
		}
	}
	pool := p.caches.Rx.Pool()
	room := pool.FrameSize() - pool.Headroom()
	// The common case, a packet in one segment, is translated first, and the first
	// byte of each small packet loaded: the guest wrote them on another core, so each
	// load misses, and issued back to back those misses overlap instead of stalling
	// one copy after another (DPDK prefetches a batch's buffers for the same reason).
	// Large packets are not touched ahead: with 1518-byte packets from testpmd,
	// guest to host, the early loads cost 5-15% of the rate in every ring and
	// in_order cell (three interleaved runs each), while with 64-byte ones they gain
	// a little. Why is not known (the copy streams a large packet's lines anyway,
	// which hides its first miss); touchMax, between the two sizes measured, is a
	// choice, not a measurement.
	var t byte
	for i := 0; i < c; i++ {
		r.src[i] = nil
		s := r.chains[i].Segs
		if len(s) != 1 || int(s[0].Len) <= r.hdrLen {
			continue
		}
		n := uint64(s[0].Len) - uint64(r.hdrLen)
		if h, ok := r.cur.Slice(s[0].Addr+uint64(r.hdrLen), n); ok {
			r.src[i] = h
			if n <= touchMax {
				t ^= h[0]
			}
		}
	}
	r.touch = t
	out, bytes := 0, 0
	var tooLong, invalid int
	for i := 0; i < c; i++ {
		ch := &r.chains[i]
		r.used[i] = ch.Used(0)
		plen := chainLen(ch) - r.hdrLen
		if plen <= 0 {
			// Shorter than the header, or the header alone: no frame to deliver
			// (DPDK's vhost drops these too).
			invalid++
			continue
		}
		if plen > room {
			// Longer than a frame: this burst goes on as chains of frames.
			return p.rxChains(r, pkts, c, i, out, bytes, invalid)
		}
		pk := &pkts[out]
		buf := pool.Bytes(pk.Frame)[pk.Off:][:plen]
		if h := r.src[i]; len(h) == plen {
			copy(buf, h)
		} else if !readChain(r.mem, ch, r.hdrLen, buf) {
			invalid++
			continue
		}
		pk.Len = uint16(plen)
		pk.Port = p.id
		pk.Flags = 0
		out++
		bytes += plen
	}
	if err := r.push(r.used[:c]); err != nil {
		r.fail()
	}
	if out < c {
		p.caches.Rx.Free(pkts[out:c])
	}
	p.ctr.AddRx(out, bytes)
	p.ctr.AddDrop(pmd.DropInvalid, invalid)
	p.ctr.AddDrop(pmd.DropTooLong, tooLong)
	return out
}

// rxChains is rx from chain i on, once a packet longer than a frame came: such a
// packet is copied into as many frames as it needs, returned as a pmd chain (PktMore
// on all but the last). pkts[:out] are done; the frames allocated for the chains not
// served yet are in pkts[out:c].
func (p *Port) rxChains(r *ring, pkts []pmd.Pkt, c, i, out, bytes, invalid int) int {
	pool := p.caches.Rx.Pool()
	room := pool.FrameSize() - pool.Headroom()
	spare := append(p.spare[:0], pkts[out:c]...)
	// For leaveRx, should guest memory fault: the frames are those of
	// pkts[:out] (of Rx's pkts, from base), of the segments being filled, and
	// spare's.
	base := p.rxHeld - c
	p.spareHeld = true
	npk, tooLong, noBuf := out, 0, 0
	for ; i < c; i++ {
		p.rxHeld, p.spare = base+out, spare
		ch := &r.chains[i]
		r.used[i] = ch.Used(0)
		plen := chainLen(ch) - r.hdrLen
		if plen <= 0 {
			invalid++ // no frame: as in rx
			continue
		}
		nseg := max(1, (plen+room-1)/room)
		if nseg > len(pkts) || nseg > pmd.MaxBurst {
			tooLong++ // no burst could carry it
			continue
		}
		if out+nseg > len(pkts) {
			// No room left in this burst: the rest go back to the ring, in order.
			if err := r.unpop(r.chains[i:c]); err != nil {
				r.fail()
			}
			c = i
			break
		}
		segs := pkts[out : out+nseg]
		k := 0
		for ; k < nseg && len(spare) > 0; k++ {
			segs[k] = spare[len(spare)-1]
			spare = spare[:len(spare)-1]
		}
		if k < nseg {
			if got := p.caches.Rx.Alloc(segs[k:]); got < nseg-k {
				spare = append(spare, segs[:k+got]...)
				p.spare = spare
				if err := r.unpop(r.chains[i:c]); err != nil {
					r.fail()
				}
				noBuf++
				c = i
				break
			}
		}
		p.rxHeld, p.spare = base+out+nseg, spare
		ok := true
		for k := range segs {
			n := min(room, plen-k*room)
			pk := &segs[k]
			if !readChain(r.mem, ch, r.hdrLen+k*room, pool.Bytes(pk.Frame)[pk.Off:][:n]) {
				ok = false
				break
			}
			pk.Len, pk.Port, pk.Flags = uint16(n), p.id, pmd.PktMore
		}
		if !ok {
			invalid++
			spare = append(spare, segs...)
			continue
		}
		segs[nseg-1].Flags = 0
		out += nseg
		npk++
		bytes += plen
	}
	p.rxHeld, p.spare = base+out, spare
	if err := r.push(r.used[:c]); err != nil {
		r.fail()
	}
	p.caches.Rx.Free(spare)
	p.ctr.AddRx(npk, bytes)
	p.ctr.AddDrop(pmd.DropInvalid, invalid)
	p.ctr.AddDrop(pmd.DropTooLong, tooLong)
	p.ctr.AddDrop(pmd.DropNoBuffer, noBuf)
	return out
}

// chainLen is the length of a chain from the guest's transmit queue: the device only
// reads there, so every segment counts, whatever its WRITE flag. DPDK's virtio PMD
// leaves WRITE set on entries of its packed indirect tables (they are initialised
// so and not all rewritten), and DPDK's vhost ignores the flag on this queue too.
func chainLen(ch *vring.Chain) int { return int(ch.ReadLen) + int(ch.WriteLen) }

// readChain copies the bytes of ch (a transmit-queue chain: every segment, see
// chainLen) after skip into dst (exactly len(dst)).
func readChain(mem *vring.Memory, ch *vring.Chain, skip int, dst []byte) bool {
	// The common case: the header and the packet in one segment, translated once.
	if s := ch.Segs; len(s) == 1 && uint64(skip)+uint64(len(dst)) <= uint64(s[0].Len) {
		if h, err := mem.Translate(s[0].Addr+uint64(skip), uint64(len(dst))); err == nil && len(h) == len(dst) {
			copy(dst, h)
			return true
		}
	}
	done := 0
	for _, s := range ch.Segs {
		addr, n := s.Addr, uint64(s.Len)
		if skip > 0 {
			k := min(uint64(skip), n)
			addr, n, skip = addr+k, n-k, skip-int(k)
		}
		for n > 0 && done < len(dst) {
			h, err := mem.Translate(addr, min(n, uint64(len(dst)-done)))
			if err != nil || len(h) == 0 {
				return false
			}
			k := copy(dst[done:], h)
			done += k
			addr += uint64(k)
			n -= uint64(k)
		}
	}
	return done == len(dst)
}

// writeAt copies src into the writable part of ch from byte off on; it returns the
// bytes written.
// With a dirty log, the pages written are logged.
func writeChain(mem *vring.Memory, log *dirtyLog, ch *vring.Chain, off int, src []byte) int {
	done := 0
	for _, s := range ch.Segs {
		if !s.Write {
			continue
		}
		addr, n := s.Addr, uint64(s.Len)
		if off > 0 {
			k := min(uint64(off), n)
			addr, n, off = addr+k, n-k, off-int(k)
		}
		for n > 0 && done < len(src) {
			h, err := mem.Translate(addr, min(n, uint64(len(src)-done)))
			if err != nil || len(h) == 0 {
				return done
			}
			k := copy(h, src[done:])
			if log != nil {
				log.mark(addr, uint64(k))
			}
			done += k
			addr += uint64(k)
			n -= uint64(k)
		}
		if done == len(src) {
			break
		}
	}
	return done
}

// Tx copies packets into the guest's receive buffers and returns how many it took.
// With MRG_RXBUF a packet spans as many buffers as it needs (num_buffers in its
// header); without, it must fit one. A packet that can never fit is dropped (taken and
// counted); when the guest has no buffers left, Tx stops and the rest stay the
// caller's.
func (p *Port) Tx(pkts []pmd.Pkt) (n int) {
	d := p.b.curDev.Load()
	if d == nil {
		return 0
	}
	q := d.queues[2*p.qp]
	r := q.acquire()
	if r == nil {
		return 0
	}
	if r.faulted {
		q.release()
		return 0
	}
	defer p.leaveTx(d, q, r, pkts, &n, debug.SetPanicOnFault(true))
	return p.tx(r, pkts)
}

// leaveTx ends a Tx burst: it gives the ring back to the control path and frees the
// packets taken. After a fault on guest memory (memfault.go) it takes none: tx frees
// nothing itself, so all the packets stay the caller's; and it has the device dropped.
func (p *Port) leaveTx(d *device, q *vq, r *ring, pkts []pmd.Pkt, n *int, prev bool) {
	debug.SetPanicOnFault(prev)
	if v := recover(); v != nil {
		p.faulted(d, q, r, v)
		*n = 0
	}
	q.release()
	if *n > 0 {
		p.caches.Tx.Free(pkts[:*n])
	}
}

// fill returns the number of chains popped and not yet used, popping more (keeping
// order) when fewer than want are at hand: up to a burst, or want when that is more
// (a packet spanning more mergeable buffers than a burst).
func (r *ring) fill(want int) int {
	have := r.sTail - r.sHead
	if have >= want || r.broken {
		return have
	}
	if r.sHead > 0 {
		// Slide the stash to the front; Segs slices are swapped, not copied, so
		// their capacity stays with a slot.
		for i := 0; i < have; i++ {
			r.chains[i], r.chains[r.sHead+i] = r.chains[r.sHead+i], r.chains[i]
		}
		r.sHead, r.sTail = 0, have
	}
	n, err := r.pop(r.chains[r.sTail:min(len(r.chains), max(want, r.burst))])
	if err != nil {
		// The n chains before the bad one join the stash: packets copied into them
		// are pushed as usual and reach the guest.
		r.fail()
	}
	r.sTail += n
	return r.sTail - r.sHead
}

// putHdr1 writes the virtio-net header of a packet in one buffer into h: all zero
// but num_buffers, 1 (bytes 10-11), when the header has it (hdrLen 12). It writes
// only when the header differs, as DPDK's vhost does: the guest reads the header
// and rarely writes it, so in a reused buffer it is usually right already, and
// leaving it alone leaves the guest's cached copy of its line valid, where a store
// would take the line from the guest's cache every packet. (Two stores, not
// clear: clear would call memclr.)
func putHdr1(h []byte, hdrLen int) {
	if hdrLen == 12 {
		if le.Uint64(h) != 0 || le.Uint32(h[8:]) != 1<<16 {
			le.PutUint64(h, 0)
			le.PutUint32(h[8:], 1<<16)
		}
	} else if le.Uint64(h) != 0 || le.Uint16(h[8:]) != 0 {
		le.PutUint64(h, 0)
		le.PutUint16(h[8:], 0)
	}
}

// txDirect is tx's fast path on a packed ring with no buffer in flight (the stash
// empty): each one-frame packet goes straight into the buffer at the ring's next
// position when that is one writable descriptor big enough for it, and the buffer
// is marked used in place, with no Chain or Used in between. It stops at the first
// packet it does not take, which tx's general path then handles, and returns how
// many it took and their bytes.
func (p *Port) txDirect(r *ring, pool *pmd.Pool, pkts []pmd.Pkt) (int, int) {
	q := r.packed
	bytes := 0
	for i := range pkts {
		pk := &pkts[i]
		need := r.hdrLen + int(pk.Len)
		if pk.Flags&pmd.PktMore != 0 {
			return i, bytes
		}
		addr, n, write, ok := q.PeekDirect()
		if !ok || !write || int(n) < need {
			return i, bytes
		}
		h, ok := r.cur.Slice(addr, uint64(need))
		if !ok {
			return i, bytes
		}
		putHdr1(h, r.hdrLen)
		copy(h[r.hdrLen:], pool.Data(pk))
		if r.log != nil {
			r.log.mark(addr, uint64(need))
		}
		if q.UseDirect(uint32(need)) != nil {
			return i, bytes // not reached: PeekDirect reported the buffer
		}
		bytes += int(pk.Len)
	}
	return len(pkts), bytes
}

func (p *Port) tx(r *ring, pkts []pmd.Pkt) int {
	pool := p.caches.Tx.Pool()
	nu := 0 // used entries pending
	sent, bytes, tooLong := 0, 0, 0
	i := 0
	if r.packed != nil && r.sHead == r.sTail && !r.broken {
		i, bytes = p.txDirect(r, pool, pkts)
		sent = i
		if i > 0 {
			r.notify()
		}
	}
	for ; i < len(pkts); i++ {
		pk := &pkts[i]
		need := r.hdrLen + int(pk.Len)
		if r.sHead == r.sTail && r.fill(1) == 0 {
			break
		}
		if pk.Flags&pmd.PktMore != 0 {
			j := i + 1
			for j < len(pkts) && pkts[j-1].Flags&pmd.PktMore != 0 {
				j++
			}
			if pkts[j-1].Flags&pmd.PktMore != 0 {
				break // an unfinished chain stays the caller's
			}
			switch p.txChain(r, pool, pkts[i:j], &nu) {
			case chainSent:
				sent++
				bytes += pmd.Bytes(pkts[i:j])
			case chainTooLong:
				tooLong++
			case chainWait:
				return p.txDone(r, nu, i, sent, bytes, tooLong)
			}
			i = j - 1
			continue
		}
		data := pool.Data(pk)
		if nu == len(r.used) {
			r.flushUsed(nu)
			nu = 0
		}
		// The common case: the next buffer's first segment takes the header and
		// the packet in one mapped stretch (num_buffers 1 either way).
		if ch := &r.chains[r.sHead]; len(ch.Segs) > 0 && ch.Segs[0].Write && int(ch.Segs[0].Len) >= need {
			if h, ok := r.cur.Slice(ch.Segs[0].Addr, uint64(need)); ok {
				putHdr1(h, r.hdrLen)
				copy(h[r.hdrLen:], data)
				if r.log != nil {
					r.log.mark(ch.Segs[0].Addr, uint64(need))
				}
				r.used[nu] = ch.Used(uint32(need))
				nu++
				r.sHead++
				sent++
				bytes += int(pk.Len)
				continue
			}
		}
		if !r.mrg {
			ch := &r.chains[r.sHead]
			if int(ch.WriteLen) < need {
				tooLong++ // the chain stays for the next packet
				continue
			}
			if nu == len(r.used) {
				r.flushUsed(nu)
				nu = 0
			}
			var hdr [12]byte
			if r.hdrLen == 12 {
				hdr[10] = 1 // num_buffers (VERSION_1 without MRG_RXBUF)
			}
			w := writeChain(r.mem, r.log, ch, 0, hdr[:r.hdrLen])
			w += writeChain(r.mem, r.log, ch, r.hdrLen, data)
			r.used[nu] = ch.Used(uint32(w))
			nu++
			r.sHead++
			sent++
			bytes += int(pk.Len)
			continue
		}
		// Mergeable: gather chains until they hold the packet.
		k, st := r.gather(need, &nu)
		if st == chainTooLong {
			tooLong++
			continue
		}
		if st == chainWait {
			break // the guest is out of buffers: keep the packet
		}
		var hdr [12]byte
		hdr[10], hdr[11] = byte(k), byte(k>>8)
		// The header and the data form one stream across the k buffers.
		hOff, dOff := 0, 0
		for j := 0; j < k; j++ {
			ch := &r.chains[r.sHead+j]
			w := 0
			if hOff < r.hdrLen {
				c := writeChain(r.mem, r.log, ch, 0, hdr[hOff:r.hdrLen])
				hOff += c
				w += c
			}
			if hOff == r.hdrLen {
				c := writeChain(r.mem, r.log, ch, w, data[dOff:])
				dOff += c
				w += c
			}
			r.used[nu] = ch.Used(uint32(w))
			nu++
		}
		r.sHead += k
		sent++
		bytes += int(pk.Len)
	}
	return p.txDone(r, nu, i, sent, bytes, tooLong)
}

func (p *Port) txDone(r *ring, nu, i, sent, bytes, tooLong int) int {
	r.flushUsed(nu)
	p.ctr.AddTx(sent, bytes)
	p.ctr.AddDrop(pmd.DropTooLong, tooLong)
	return i
}

// Outcomes of putting one packet into the guest's buffers.
const (
	chainSent    = iota
	chainTooLong // it can never fit: dropped
	chainWait    // the guest is out of buffers: the packet stays the caller's
)

// gather finds the mergeable buffers (stashed chains from sHead on) that hold need
// bytes and returns how many, with room for their used entries (flushing the nu
// pending ones if it must).
func (r *ring) gather(need int, nu *int) (int, int) {
	total, k := 0, 0
	for total < need {
		if r.sHead+k == r.sTail {
			if *nu > 0 {
				// Make room: the stash slides only when no used entry still refers
				// to chain slots before sHead.
				r.flushUsed(*nu)
				*nu = 0
			}
			if r.fill(k+1) < k+1 {
				break
			}
		}
		total += int(r.chains[r.sHead+k].WriteLen)
		k++
	}
	if total < need {
		if k == len(r.chains) {
			return k, chainTooLong // cannot fit in as many buffers as a packet may span
		}
		// The guest is out of buffers, or broke the ring (which then takes no
		// more): either way the packet stays the caller's, as when no buffer is
		// left at all.
		return k, chainWait
	}
	if *nu+k > len(r.used) {
		r.flushUsed(*nu)
		*nu = 0
	}
	return k, chainSent
}

// txChain puts a pmd chain (segs, PktMore on all but the last) into the guest's
// buffers as one packet: the header, then the segments' bytes as one stream across
// one buffer, or as many as it takes with MRG_RXBUF (virtio 1.2 §5.1.6.4).
func (p *Port) txChain(r *ring, pool *pmd.Pool, segs []pmd.Pkt, nu *int) int {
	need := r.hdrLen + pmd.Bytes(segs)
	k := 1
	if r.mrg {
		var st int
		if k, st = r.gather(need, nu); st != chainSent {
			return st
		}
	} else {
		if int(r.chains[r.sHead].WriteLen) < need {
			return chainTooLong // the buffer stays for the next packet
		}
		if *nu == len(r.used) {
			r.flushUsed(*nu)
			*nu = 0
		}
	}
	var hdr [12]byte
	if r.hdrLen == 12 {
		hdr[10], hdr[11] = byte(k), byte(k>>8) // num_buffers
	}
	src, si := hdr[:r.hdrLen], -1
	for j := 0; j < k; j++ {
		ch := &r.chains[r.sHead+j]
		w := 0
		for {
			if len(src) == 0 {
				if si++; si == len(segs) {
					break
				}
				src = pool.Data(&segs[si])
				continue
			}
			c := writeChain(r.mem, r.log, ch, w, src)
			w, src = w+c, src[c:]
			if len(src) > 0 {
				break // this buffer is full (or unmapped): on to the next
			}
		}
		r.used[*nu] = ch.Used(uint32(w))
		*nu++
	}
	r.sHead += k
	return chainSent
}

func (r *ring) flushUsed(n int) {
	if n == 0 {
		return
	}
	if err := r.push(r.used[:n]); err != nil {
		r.fail()
	}
}

// vqFor returns virtqueue 2*qp+dir of the attached device, or nil.
func (b *Backend) vqFor(qp, dir int) *vq {
	d := b.curDev.Load()
	if d == nil {
		return nil
	}
	return d.queues[2*qp+dir]
}
