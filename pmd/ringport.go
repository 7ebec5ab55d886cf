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
	a = &RingPort{tx: ab, rx: ba, id: opts.PortIDs[0], shared: sh}
	b = &RingPort{tx: ba, rx: ab, id: opts.PortIDs[1], shared: sh}
	return a, b, nil
}

// Rx receives what the other end transmitted.
func (p *RingPort) Rx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	n := p.rx.Dequeue(pkts)
	bytes := 0
	for i := range pkts[:n] {
		pkts[i].Port = p.id
		bytes += int(pkts[i].Len)
	}
	p.ctr.AddRx(n, bytes)
	return n
}

// Tx passes packets to the other end; it accepts fewer than offered when the ring is
// full.
func (p *RingPort) Tx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	n := p.tx.Enqueue(pkts)
	p.ctr.AddTx(n, Bytes(pkts[:n]))
	return n
}

// Stats returns the end's counters.
func (p *RingPort) Stats() PortStats { return p.ctr.Snapshot() }

// Close closes this end. When both ends are closed, packets still in the rings are
// freed to the pool.
func (p *RingPort) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	sh := p.shared
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
