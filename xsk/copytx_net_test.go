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

// TestKickDeviceDownCounted: a wakeup of a socket whose device is down fails with
// ENETDOWN and its frames stay queued. Kick took that, like EAGAIN, EBUSY and
// ENOBUFS, as nothing to report, so a port whose link was down counted its packets
// sent with no counter saying why none left; it is now KickDown, and the busy
// answers KickBusy, neither a KickError.
func TestKickDeviceDownCounted(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{Bind: BindCopy}})
	defer p.Close()
	if err := e.a.Handle().LinkSetDown(e.a.Link(t, e.v.A)); err != nil {
		t.Fatal(err)
	}
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	var pkts [1]pmd.Pkt
	if cache.Alloc(pkts[:]) != 1 {
		t.Fatal("pool empty")
	}
	f := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 6001, 6000, []byte("x"))
	pkts[0].Len = uint16(copy(pool.Bytes(pkts[0].Frame)[pkts[0].Off:], f))
	if p.Tx(pkts[:]) != 1 {
		t.Fatal("Tx took nothing")
	}
	st, err := p.Socket().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Kicks == 0 || st.KickDown != st.Kicks || st.KickErrors != 0 {
		t.Errorf("link down: %d wakeups, %d counted down, %d errors; want all down, no errors", st.Kicks, st.KickDown, st.KickErrors)
	}
	if left := p.s.tx.Pending(); left != 1 {
		t.Errorf("%d frames queued, want 1", left)
	}
}
