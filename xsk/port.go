package xsk

import (
	"errors"
	"fmt"

	"github.com/dpkit/dpkit/pmd"
)

// Frame states in Port.owner: who holds a frame of the pool, as far as this port knows.
const (
	ownerOut  uint8 = iota // not in this port's kernel rings (free, or the application's)
	ownerFill              // given to the kernel through the fill ring
	ownerTx                // given to the kernel through the tx ring
	ownerDrop              // dropped by the Tx call under way, freed when it ends
)

// refillBatch is how many frames the port gives the fill ring at a time.
const refillBatch = 64

// portCache sizes the port's own frame caches: small, so that frames do not pile up
// in caches while the fill ring starves (a UMEM is often just twice the ring size).
const portCache = 64

// Port is an AF_XDP socket as a pmd.Port: frames come from the UMEM's pool, received
// packets are handed out as pmd.Pkts, and sent frames go back to the pool once the
// kernel completes them.
//
// The port tracks every pool frame it hands the kernel, so a descriptor the kernel
// returns for a frame it does not hold (a duplicate, a foreign address, a length past
// the frame) is a counted DropInvalid, never a second owner; and Close returns every
// frame still in the kernel's hands to the pool.
//
// Concurrency: as pmd.Port — one goroutine for Rx, one for Tx, Stats from any.
type Port struct {
	s       *Socket
	pool    *pmd.Pool
	u       *UMEM
	id      uint16
	nframes uint64
	fsize   uint64
	owner   []uint8

	caches pmd.PortCaches
	frames [refillBatch]pmd.Frame  // rx-side scratch
	done   [pmd.MaxBurst]pmd.Frame // tx-side scratch
	rxSkip bool                    // dropping the rest of a chain too long for the caller
	txOut  int                     // frames given to the tx ring and not yet completed
	txSegs int                     // most segments one packet may have in Tx

	c pmd.Counters

	prog *Program // the program Open registered the socket with, if any

	// cleanup runs after the socket closed (program and UMEM the port owns).
	cleanup []func() error
	closed  bool
}

// NewPort wraps a new socket on u (see NewSocket) as a pmd.Port whose Pkts carry port
// id id. It primes the fill ring. The socket still needs Program.Register to receive.
func NewPort(u *UMEM, ifindex int, cfg Config, id uint16) (*Port, error) {
	s, err := NewSocket(u, ifindex, cfg)
	if err != nil {
		return nil, err
	}
	p := &Port{
		s: s, pool: u.pool, u: u, id: id,
		nframes: uint64(u.pool.Frames()), fsize: uint64(u.pool.FrameSize()),
		owner:  make([]uint8, u.pool.Frames()),
		caches: pmd.NewPortCaches(u.pool, portCache),
		txSegs: txSegLimit(s),
	}
	if s.rx != nil {
		p.refill()
	}
	return p, nil
}

// txSegLimit is how many descriptors one packet may span in s's tx ring: no more than
// the ring holds (a longer chain is never reserved whole) nor than the kernel takes.
func txSegLimit(s *Socket) int {
	if s.tx == nil {
		return 0
	}
	return min(s.maxSegs, s.tx.Size())
}

// Socket returns the underlying socket (for Stats, ZeroCopy, FD). Its Fill, Receive,
// Transmit and Complete must not be used while the port is.
func (p *Port) Socket() *Socket { return p.s }

// refill tops the fill ring up from the rx cache.
func (p *Port) refill() {
	fill := p.s.fill
	for {
		free := fill.Free(refillBatch)
		if free < refillBatch && free < uint32(fill.Size())/2 {
			return
		}
		k := p.caches.Rx.Get(p.frames[:min(free, refillBatch)])
		if k == 0 {
			return
		}
		_, idx := fill.Reserve(uint32(k))
		for i, f := range p.frames[:k] {
			p.owner[f] = ownerFill
			fill.Set(idx+uint32(i), p.pool.Addr(f))
		}
		fill.Submit()
		if k < refillBatch {
			return
		}
	}
}

// Rx receives up to len(pkts) packets. A multi-buffer packet is returned whole, as
// consecutive Pkts all but the last flagged pmd.PktMore; one longer than len(pkts) is
// dropped (DropTooLong).
func (p *Port) Rx(pkts []pmd.Pkt) int {
	rx := p.s.rx
	if rx == nil || len(pkts) == 0 {
		return 0
	}
	want := uint32(min(len(pkts), pmd.MaxBurst))
	n, idx := rx.Peek(want)
	if n == 0 {
		// Refill before the wakeup: the kernel woken (or busy-polled inside the
		// syscall) receives into fill entries, and finds the ones given back since.
		p.refill()
		if p.s.rxNeedsKick() {
			p.s.wakeRx()
		}
		return 0
	}
	if p.s.sg {
		// Return whole packets only: cut after the last descriptor that ends one.
		end := n
		for end > 0 && rx.Get(idx+end-1).Options&OptMore != 0 {
			end--
		}
		switch {
		case end > 0:
			n = end
		case p.rxSkip:
			// All n belong to the chain being dropped.
		case n < want:
			return 0 // the kernel publishes whole packets; wait for the rest
		default:
			p.rxSkip = true // longer than the caller's batch: drop it below
		}
	}
	k, packets, bytes, bad, long := 0, 0, 0, 0, 0
	start := 0 // index in pkts of the current packet's first segment
	dropping := p.rxSkip
	more := false
	for i := range n {
		d := rx.Get(idx + i)
		more = p.s.sg && d.Options&OptMore != 0 // without SG the flag means nothing
		f, off := p.u.decode(d.Addr)
		mine := f < p.nframes && p.owner[f] == ownerFill
		ok := mine && off+uint64(d.Len) <= p.fsize && d.Len > 0 && d.Len <= 0xffff
		if mine && !ok {
			// Our frame with a bad length: take it back, drop its contents.
			p.owner[f] = ownerOut
			p.caches.Rx.Put([]pmd.Frame{pmd.Frame(f)})
		}
		if ok {
			p.owner[f] = ownerOut
			if dropping {
				p.caches.Rx.Put([]pmd.Frame{pmd.Frame(f)})
			} else {
				pk := &pkts[k]
				*pk = pmd.Pkt{Frame: pmd.Frame(f), Off: uint16(off), Len: uint16(d.Len), Port: p.id}
				if more {
					pk.Flags = pmd.PktMore
				}
				k++
				bytes += int(d.Len)
			}
		} else if !dropping {
			// A bad segment spoils its packet: give back what we took of it.
			bad++
			for _, pk := range pkts[start:k] {
				p.caches.Rx.Put([]pmd.Frame{pk.Frame})
				bytes -= int(pk.Len)
			}
			k = start
			dropping = true
		}
		if !more {
			if !dropping {
				packets++ // a chain counts once, like pmd's ports count it
			}
			if p.rxSkip {
				long++
				p.rxSkip = false
			}
			dropping = false
			start = k
		}
	}
	if more && !p.rxSkip && !dropping {
		// The burst was cut after a descriptor that ended a packet, yet the one read
		// here continues it: the kernel rewrote a published descriptor between the
		// cut and this read. Never hand out an unfinished chain: drop what we took
		// of it. (A chain being skipped legitimately runs past the burst.)
		bad++
		for _, pk := range pkts[start:k] {
			p.caches.Rx.Put([]pmd.Frame{pk.Frame})
			bytes -= int(pk.Len)
		}
		k = start
	}
	rx.Release(n)
	p.c.AddRx(packets, bytes)
	p.c.AddDrop(pmd.DropInvalid, bad)
	p.c.AddDrop(pmd.DropTooLong, long)
	p.refill()
	return k
}

// reap takes completed transmissions back and frees their frames. It returns how many
// completion entries it consumed, invalid ones included.
func (p *Port) reap() int {
	comp := p.s.comp
	total := 0
	for {
		n, idx := comp.Peek(uint32(len(p.done)))
		if n == 0 {
			return total
		}
		total += int(n)
		k, bad := 0, 0
		for i := range n {
			f, _ := p.u.decode(comp.Get(idx + i))
			if f < p.nframes && p.owner[f] == ownerTx {
				p.owner[f] = ownerOut
				p.done[k] = pmd.Frame(f)
				k++
			} else {
				bad++
			}
		}
		comp.Release(n)
		p.txOut -= k
		p.caches.Tx.Put(p.done[:k])
		p.c.AddDrop(pmd.DropInvalid, bad)
		if n < uint32(len(p.done)) {
			return total
		}
	}
}

// Tx queues up to len(pkts) packets for sending and returns how many it took; it never
// splits a multi-buffer chain (Pkts flagged pmd.PktMore and the one that ends them).
// The frames must come from the UMEM's pool. A packet whose frame is not the caller's
// to give (out of range, already in the kernel) or whose bytes leave the frame is
// taken and counted as DropInvalid. A chain that can never go is taken, freed and
// counted as DropTooLong: any chain on a socket without MultiBuffer, and one of more
// segments than the tx ring holds or than the kernel takes for one packet (see
// MaxTxSegments). pkts ending inside a chain leave that chain unsent.
func (p *Port) Tx(pkts []pmd.Pkt) int {
	tx := p.s.tx
	if tx == nil {
		return 0
	}
	p.reap()
	room, idx := tx.Reserve(uint32(min(len(pkts), 1<<20)))
	w, packets, bytes, bad, long := uint32(0), 0, 0, 0, 0
	i := 0
	for i < len(pkts) {
		// Measure the packet (each Pkt is looked at twice at most).
		end := i
		for end < len(pkts) && pkts[end].Flags&pmd.PktMore != 0 {
			end++
		}
		if end == len(pkts) {
			break // the caller's unfinished chain: whole packets only
		}
		end++
		segs := end - i
		if segs > p.txSegs {
			// It can never go: a chain longer than the ring is never reserved whole, so
			// it would stop every later Tx at it; one longer than the kernel takes is
			// dropped by it as invalid after we counted it sent.
			p.dropTx(pkts[i:end])
			long++
			i = end
			continue
		}
		if w+uint32(segs) > room {
			break // waits for room
		}
		chainW, chainBytes := w, 0
		for j := i; j < end; j++ {
			pk := &pkts[j]
			f := uint64(pk.Frame)
			if f >= p.nframes || p.owner[f] != ownerOut || uint64(pk.Off)+uint64(pk.Len) > p.fsize || pk.Len == 0 {
				bad++
				// A bad segment spoils its packet: take back the segments already
				// queued, and free the whole chain.
				for _, q := range pkts[i:j] {
					p.owner[q.Frame] = ownerOut
				}
				p.dropTx(pkts[i:end])
				w, chainBytes = chainW, -1
				break
			}
			var opt uint32
			if j < end-1 {
				opt = OptMore
			}
			p.owner[f] = ownerTx
			tx.Set(idx+w, descOf(p.pool.Addr(pk.Frame)+uint64(pk.Off), uint32(pk.Len), opt))
			w++
			chainBytes += int(pk.Len)
		}
		if chainBytes >= 0 {
			packets++ // a chain counts once, like pmd's ports count it
			bytes += chainBytes
		}
		i = end
	}
	tx.Cancel(room - w)
	if w > 0 {
		tx.Submit()
	}
	if bad+long > 0 {
		p.freeDropped(pkts[:i])
	}
	p.txOut += int(w)
	p.s.KickIfNeeded()
	if !p.s.zeroCopy {
		// A copy-mode wakeup reserves a completion slot for each frame it sends and
		// stops (EAGAIN) when the completion ring is full, which KickIfNeeded cannot
		// help: only reaping frees it. With a completion ring smaller than the burst
		// (or completions the device has not delivered yet) the rest of the burst
		// would sit in the tx ring until the application's next Tx, which may not
		// come. So reap and wake again while that moves frames; each round must
		// shrink what is pending, which bounds the loop by the ring's size.
		for left := tx.Pending(); left > 0 && p.reap() > 0; {
			p.s.KickIfNeeded()
			now := tx.Pending()
			if now >= left {
				break
			}
			left = now
		}
	}
	if p.s.busyPoll && p.s.zeroCopy && w == 0 && tx.Pending() == 0 && p.txOut > 0 {
		// Nothing to send, so KickIfNeeded made no syscall; but zero-copy with busy
		// polling completes frames only when one runs the driver, and a caller
		// calling Tx to get its last frames back would wait for ever. (In copy mode
		// the sendto that sent them completed them.)
		p.s.Kick()
	}
	p.c.AddTx(packets, bytes)
	p.c.AddDrop(pmd.DropInvalid, bad)
	p.c.AddDrop(pmd.DropTooLong, long)
	return i
}

// dropTx marks the frames of a packet Tx drops that were the caller's to give
// (ownerOut), each once, to be freed when the call ends: until then the same frame
// named again in the call is refused, not queued for sending as well or freed twice.
func (p *Port) dropTx(pkts []pmd.Pkt) {
	for _, pk := range pkts {
		if f := uint64(pk.Frame); f < p.nframes && p.owner[f] == ownerOut {
			p.owner[f] = ownerDrop
		}
	}
}

// freeDropped frees the frames dropTx marked among pkts, the packets Tx took.
func (p *Port) freeDropped(pkts []pmd.Pkt) {
	for _, pk := range pkts {
		if f := uint64(pk.Frame); f < p.nframes && p.owner[f] == ownerDrop {
			p.owner[f] = ownerOut
			p.caches.Tx.Put([]pmd.Frame{pk.Frame})
		}
	}
}

// MaxTxSegments returns how many Pkts one packet may span in Tx: 1 without
// MultiBuffer; with it, the smaller of the tx ring's size and the kernel's limit for
// one packet. That limit is MAX_SKB_FRAGS (17) in copy mode, assuming the kernel's
// default build (afxdp.CopyMaxSegs says why not 18); in zero-copy mode the driver's
// xdp_zc_max_segs as the netdev netlink family reports it, or 17 where it does not.
func (p *Port) MaxTxSegments() int { return p.txSegs }

// TxChains implements pmd.ChainTxer: a socket bound with MultiBuffer sends chains.
func (p *Port) TxChains() bool { return p.s.sg }

// UseCaches implements pmd.CacheUser: the fill ring is refilled from rx, completed
// and refused Tx frames go to tx. The port's own caches are small (portCache), so a
// worker's cache is the better home for frames that cycle between ports.
func (p *Port) UseCaches(rx, tx *pmd.Cache) error { return p.caches.Use(rx, tx) }

// Stats returns the port's counters. Kernel-side drops are in Socket().Stats().
func (p *Port) Stats() pmd.PortStats { return p.c.Snapshot() }

// Close closes the socket (unmapping its rings first), returns every frame the kernel
// still held to the pool, flushes the port's caches, and releases the program and UMEM
// the port owns (from Open). It must be called after Rx and Tx stopped.
func (p *Port) Close() error {
	if p.closed {
		return nil
	}
	p.closed = true
	errs := []error{p.s.Close()}
	var back [256]pmd.Frame
	k := 0
	for f, o := range p.owner {
		if o == ownerOut {
			continue
		}
		p.owner[f] = ownerOut
		back[k] = pmd.Frame(f)
		if k++; k == len(back) {
			p.pool.Put(back[:k])
			k = 0
		}
	}
	p.pool.Put(back[:k])
	p.caches.Close()
	for i := len(p.cleanup) - 1; i >= 0; i-- {
		errs = append(errs, p.cleanup[i]())
	}
	return errors.Join(errs...)
}

// InKernel returns how many pool frames the port has given the kernel and not got
// back. Call it from the Rx/Tx goroutine or after they stopped.
func (p *Port) InKernel() int {
	n := 0
	for _, o := range p.owner {
		if o != ownerOut {
			n++
		}
	}
	return n
}

var _ pmd.Port = (*Port)(nil)

func (p *Port) String() string {
	return fmt.Sprintf("xsk(ifindex %d queue %d)", p.s.ifindex, p.s.queue)
}

// UMEMPool returns the pool the port's frames come from.
func (p *Port) UMEMPool() *pmd.Pool { return p.pool }

// InKernelTx returns how many frames sit in the kernel's tx path (sent, not yet
// completed). Same rules as InKernel.
func (p *Port) InKernelTx() int {
	n := 0
	for _, o := range p.owner {
		if o == ownerTx {
			n++
		}
	}
	return n
}

// Program returns the XDP program Open registered the port's socket with, or nil for a
// port made with NewPort.
func (p *Port) Program() *Program { return p.prog }

// Recycle gives the frames of received pkts straight back to the fill ring — the
// xdpsock rxdrop fast path, skipping the pool — and frees what the ring has no room
// for to the port's cache (after Close, everything to the pool). Like Rx, it must be
// called from the Rx goroutine; the caller gives up the frames.
func (p *Port) Recycle(pkts []pmd.Pkt) {
	if p.closed {
		// No fill ring any more (its mapping is gone): the frames go to the pool, which
		// the closed port's caches no longer flush to.
		for i := range pkts {
			if f := uint64(pkts[i].Frame); f < p.nframes && p.owner[f] == ownerOut {
				p.pool.Put([]pmd.Frame{pkts[i].Frame})
			}
		}
		return
	}
	fill := p.s.fill
	n, idx := fill.Reserve(uint32(min(len(pkts), 1<<20)))
	w := uint32(0)
	for i := range n {
		f := uint64(pkts[i].Frame)
		if f >= p.nframes || p.owner[f] != ownerOut {
			continue // not ours to give: refused like a bad free
		}
		p.owner[f] = ownerFill
		fill.Set(idx+w, p.pool.Addr(pkts[i].Frame))
		w++
	}
	fill.Cancel(n - w)
	if w > 0 {
		fill.Submit()
	}
	for i := int(n); i < len(pkts); i++ {
		if f := uint64(pkts[i].Frame); f < p.nframes && p.owner[f] == ownerOut {
			p.caches.Rx.Free(pkts[i : i+1])
		}
	}
}
