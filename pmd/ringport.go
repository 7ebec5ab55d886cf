package pmd

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// RingPairOptions configure NewRingPair.
type RingPairOptions struct {
	// Pool owns the frames that cross the pair; required. Frames left in the rings are
	// returned to it when both ends are closed.
	Pool *Pool
	// Size is each direction's ring capacity, a power of two; 0 means 1024.
	Size int
	// PortIDs are stamped into Pkt.Port of packets each end receives.
	PortIDs [2]uint16
}

// RingPort is one end of a software port pair joined by two rings, like DPDK's
// net_ring: what one end transmits the other receives, with no copy. It is meant for
// tests, examples and pipelines inside one process.
//
// Each end follows the Port rules: one goroutine at a time in Rx, one in Tx.
type RingPort struct {
	rx, tx *Ring[Pkt]
	// stash holds the first segments of a chain a burst cut (its end is still in
	// the ring); the next Rx returns them first.
	stash  []Pkt
	id     uint16
	closed atomic.Bool
	ctr    Counters
	shared *ringPairShared
}

type ringPairShared struct {
	mu     sync.Mutex
	open   int
	pool   *Pool
	ab, ba *Ring[Pkt]
}

// NewRingPair returns two ports joined back to back.
func NewRingPair(opts RingPairOptions) (a, b *RingPort, err error) {
	if opts.Pool == nil {
		return nil, nil, fmt.Errorf("pmd: RingPairOptions.Pool is required")
	}
	size := opts.Size
	if size == 0 {
		size = 1024
	}
	ab, err := NewRing[Pkt](size, RingSPSC)
	if err != nil {
		return nil, nil, err
	}
	ba, _ := NewRing[Pkt](size, RingSPSC)
	sh := &ringPairShared{open: 2, pool: opts.Pool, ab: ab, ba: ba}
	a = &RingPort{tx: ab, rx: ba, id: opts.PortIDs[0], shared: sh, stash: make([]Pkt, 0, MaxBurst)}
	b = &RingPort{tx: ba, rx: ab, id: opts.PortIDs[1], shared: sh, stash: make([]Pkt, 0, MaxBurst)}
	return a, b, nil
}

// Rx receives what the other end transmitted. Chains arrive whole; one longer than
// len(pkts) is dropped (DropTooLong), as is one a burst cut (its first segments wait
// for the next call) when the next call's pkts is too short for it.
func (p *RingPort) Rx(pkts []Pkt) int {
	if p.closed.Load() || len(pkts) == 0 {
		return 0
	}
	k := 0
	if len(p.stash) > 0 {
		if len(p.stash) >= len(pkts) {
			p.dropChain(p.stash) // this burst cannot take the chain begun
		} else {
			k = copy(pkts, p.stash)
		}
		p.stash = p.stash[:0]
	}
	n := k + p.rx.Dequeue(pkts[k:])
	if n > 0 && pkts[n-1].Flags&PktMore != 0 {
		// The burst cut a chain (Tx enqueues each whole, so its end is in the ring).
		s := n - 1
		for s > 0 && pkts[s-1].Flags&PktMore != 0 {
			s--
		}
		if s == 0 {
			p.dropChain(pkts[s:n]) // the chain alone fills the burst: it never fits
		} else {
			// Returned first next time. The stash grows past MaxBurst (once) only
			// for a reader whose bursts are longer than that.
			p.stash = append(p.stash, pkts[s:n]...)
		}
		n = s
	}
	bytes := 0
	for i := range pkts[:n] {
		pkts[i].Port = p.id
		bytes += int(pkts[i].Len)
	}
	p.ctr.AddRx(PacketCount(pkts[:n]), bytes)
	return n
}

// dropChain frees the segments of a chain too long for any burst, and those still in
// the ring up to its end.
func (p *RingPort) dropChain(segs []Pkt) {
	var f [1]Frame
	var one [1]Pkt
	for _, pk := range segs {
		f[0] = pk.Frame
		p.shared.pool.Put(f[:])
	}
	for p.rx.Dequeue(one[:]) == 1 {
		f[0] = one[0].Frame
		p.shared.pool.Put(f[:])
		if one[0].Flags&PktMore == 0 {
			break
		}
	}
	p.ctr.AddDrop(DropTooLong, 1)
}

// Tx passes packets to the other end; it accepts fewer than offered when the ring is
// full, never splitting a chain (nor sending an unfinished one at the end of pkts). A
// chain of more segments than the ring holds is taken and dropped (DropTooLong).
func (p *RingPort) Tx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	// A chain at the head with more segments than the ring holds can never go: it is
	// taken and dropped, so that it does not hold up what follows it.
	dropped := 0
	for len(pkts) > 0 && pkts[0].Flags&PktMore != 0 {
		j := 1
		for j < len(pkts) && pkts[j-1].Flags&PktMore != 0 {
			j++
		}
		if j <= p.tx.Cap() || pkts[j-1].Flags&PktMore != 0 {
			break // it fits once the ring drains, or it is not finished
		}
		var f [1]Frame
		for _, pk := range pkts[:j] {
			f[0] = pk.Frame
			p.shared.pool.Put(f[:])
		}
		p.ctr.AddDrop(DropTooLong, 1)
		pkts, dropped = pkts[j:], dropped+j
	}
	// Whole packets that fit: the free room only grows while we look (one producer).
	k := min(len(pkts), p.tx.Cap()-p.tx.Len())
	for k > 0 && pkts[k-1].Flags&PktMore != 0 {
		k--
	}
	n := p.tx.Enqueue(pkts[:k])
	p.ctr.AddTx(PacketCount(pkts[:n]), Bytes(pkts[:n]))
	return dropped + n
}

// TxChains implements ChainTxer: a ring carries chains whole.
func (p *RingPort) TxChains() bool { return true }

// Stats returns the end's counters.
func (p *RingPort) Stats() PortStats { return p.ctr.Snapshot() }

// Close closes this end. When both ends are closed, packets still in the rings are
// freed to the pool.
func (p *RingPort) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	sh := p.shared
	for _, pk := range p.stash {
		sh.pool.Put([]Frame{pk.Frame})
	}
	p.stash = p.stash[:0]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.open--
	if sh.open > 0 {
		return nil
	}
	var buf [64]Pkt
	var frames [64]Frame
	for _, r := range []*Ring[Pkt]{sh.ab, sh.ba} {
		for {
			n := r.Dequeue(buf[:])
			if n == 0 {
				break
			}
			for i := range buf[:n] {
				frames[i] = buf[i].Frame
			}
			sh.pool.Put(frames[:n])
		}
	}
	return nil
}
