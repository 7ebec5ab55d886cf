package xsk

import (
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// TestCopyModeTxTail: one Tx of more frames than a copy-mode wakeup sends (its budget
// is 32 here) leaves nothing in the tx ring when it returns. Before, the frames past
// the first budget waited for the next Tx, and an application with nothing more to
// send stranded them.
func TestCopyModeTxTail(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{Bind: BindCopy}})
	defer p.Close()
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	const n = 200
	var pkts [n]pmd.Pkt
	if cache.Alloc(pkts[:]) != n {
		t.Fatal("pool empty")
	}
	f := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 6001, 6000, []byte("x"))
	for i := range pkts {
		pkts[i].Len = uint16(copy(pool.Bytes(pkts[i].Frame)[pkts[i].Off:], f))
	}
	if got := p.Tx(pkts[:]); got != n {
		t.Fatalf("Tx took %d of %d", got, n)
	}
	if left := p.s.tx.Pending(); left > 0 {
		t.Fatalf("%d of %d frames still in the tx ring after Tx returned", left, n)
	}
	if s := p.Stats(); s.TxPackets != n {
		t.Fatalf("%d sent, want %d", s.TxPackets, n)
	}
}

// TestCopyModeTxSmallCompletionRing: in copy mode each frame sent takes a completion
// slot, and a wakeup sends nothing once the completion ring is full until the port
// reaps it. With a completion ring (64) smaller than the burst (256), Tx left 192
// frames in the tx ring when it returned, for an application with nothing more to
// send to strand, and each later Tx moved only 64.
func TestCopyModeTxSmallCompletionRing(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{Bind: BindCopy, TxSize: 256, CompSize: 64}})
	defer p.Close()
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	const n = 256
	var pkts [n]pmd.Pkt
	f := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 6001, 6000, []byte("x"))
	for round := range 3 {
		if got := cache.Alloc(pkts[:]); got != n {
			t.Fatalf("pool has %d of %d frames", got, n)
		}
		for i := range pkts {
			pkts[i].Len = uint16(copy(pool.Bytes(pkts[i].Frame)[pkts[i].Off:], f))
		}
		got := p.Tx(pkts[:])
		cache.Free(pkts[got:])
		if got != n {
			t.Errorf("round %d: Tx took %d of %d", round, got, n)
		}
		if left := p.s.tx.Pending(); left > 0 {
			t.Fatalf("round %d: %d frames still in the tx ring after Tx returned", round, left)
		}
	}
}
