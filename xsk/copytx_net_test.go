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
