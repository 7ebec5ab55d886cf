package main

import (
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// stubPort hands out rx once and takes none of what it is given.
type stubPort struct{ rx []pmd.Pkt }

func (p *stubPort) Rx(pkts []pmd.Pkt) int {
	n := copy(pkts, p.rx)
	p.rx = p.rx[n:]
	return n
}
func (p *stubPort) Tx([]pmd.Pkt) int         { return 0 }
func (p *stubPort) Stats() (s pmd.PortStats) { return }
func (p *stubPort) Close() error             { return nil }

// TestTxFullCountsPackets: tx-full-drops counts packets, as every other counter does,
// not the frames they span. A jumbo frame from a guest arrives as a chain of frames,
// and one the other port had no room for counted once per frame.
func TestTxFullCountsPackets(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cache := pool.NewCache(0)
	defer cache.Flush()
	pkts := make([]pmd.Pkt, 3)
	if cache.Alloc(pkts) != 3 {
		t.Fatal("no frames")
	}
	pkts[0].Flags |= pmd.PktMore // a two-frame chain, then a one-frame packet
	from, to := &stubPort{rx: pkts}, &stubPort{}
	var b pmd.Batch
	var full uint64
	if n := forward(&b, cache, from, to, &full); n != 3 {
		t.Fatalf("forward received %d, want the 3 frames", n)
	}
	if full != 2 {
		t.Errorf("tx-full-drops %d, want 2 packets", full)
	}
	if b.Len() != 0 {
		t.Errorf("%d left in the batch", b.Len())
	}
}
