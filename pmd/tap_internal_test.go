package pmd

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/testenv"
)

// newSocketTap returns a TapPort over one end of a SOCK_SEQPACKET socket pair, which
// like a TAP device reads and writes one frame per call, and the other end. It needs
// neither root nor /dev/net/tun.
func newSocketTap(t *testing.T, pool *Pool) (*TapPort, int) {
	t.Helper()
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("socketpair: %v", err)
	}
	t.Cleanup(func() { unix.Close(sp[1]) })
	return &TapPort{fd: sp[0], name: "socketpair", pool: pool, cache: pool.NewCache(64),
		big: make([]byte, tapMaxFrame), iov: make([][]byte, 0, MaxBurst)}, sp[1]
}

// TestTapTxChainTooLong: a chain of more segments than one writev gathers is dropped
// as too long (DropTooLong), as the ring port counts it, not as a send the kernel
// refused (DropTxError): it never reached the kernel.
func TestTapTxChainTooLong(t *testing.T) {
	pool := newTestPool(t, 1024)
	tp, _ := newSocketTap(t, pool)
	defer tp.Close()
	c := pool.NewCache(64)
	defer c.Flush()
	pkts := make([]Pkt, MaxBurst+1)
	if c.Alloc(pkts) != len(pkts) {
		t.Fatal("alloc")
	}
	for i := range pkts[:MaxBurst] {
		pool.Append(&pkts[i], 1)
		pkts[i].Flags = PktMore
	}
	pool.Append(&pkts[MaxBurst], 1)
	if n := tp.Tx(pkts); n != len(pkts) {
		c.Free(pkts[n:])
		t.Fatalf("Tx took %d of the %d-segment chain", n, len(pkts))
	}
	st := tp.Stats()
	if st.Drops[DropTooLong] != 1 || st.Drops[DropTxError] != 0 || st.TxPackets != 0 {
		t.Fatalf("drops %v, tx %d: want one too_long", st.Drops, st.TxPackets)
	}
}

// TestTapRxNoBufferIdle: Rx with the pool exhausted drops nothing: a frame waiting in
// the device stays there for a later Rx, and an idle device has none to drop. Rx
// counted DropNoBuffer once per call all the same, so a poll loop on an idle TAP with
// an empty pool made up drops by the million, and a frame received later was counted
// both as received and as dropped.
func TestTapRxNoBufferIdle(t *testing.T) {
	pool := newTestPool(t, 64)
	tp, peer := newSocketTap(t, pool)
	defer tp.Close()
	all := make([]Frame, pool.Frames())
	got := pool.Get(all)
	defer func() { pool.Put(all[:got]) }()
	var rx [8]Pkt
	for i := 0; i < 100; i++ {
		if n := tp.Rx(rx[:]); n != 0 {
			t.Fatalf("Rx got %d with the pool empty", n)
		}
	}
	if d := tp.Stats().Drops[DropNoBuffer]; d != 0 {
		t.Fatalf("%d no_buffer drops on an idle TAP", d)
	}
	frame := make([]byte, 60)
	if _, err := unix.Write(peer, frame); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		tp.Rx(rx[:])
	}
	pool.Put(all[:got])
	got = 0
	n := tp.Rx(rx[:])
	tp.cache.Free(rx[:n])
	st := tp.Stats()
	if n != 1 || st.RxPackets != 1 || st.TotalDrops() != 0 {
		t.Fatalf("Rx %d after the pool refilled, stats %+v: want the one frame sent, received, no drops", n, st)
	}
}

// TestTapTxLinkDown: a TAP device that is not up refuses writes with EIO (the kernel's
// "device not ready"); Tx counted those packets as DropTxError, though they were
// dropped because the link is down, which DropLinkDown says.
func TestTapTxLinkDown(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/net/tun", "the TUN/TAP driver")
	pool := newTestPool(t, 64)
	tp, err := NewTap(TapOptions{Name: "dtp%d", Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close() // the device goes with its descriptor
	txTwoLinkDown(t, tp, pool)
}

// TestTapTxDeviceGone: a TAP device deleted under the port (ip link del) detaches its
// descriptor, and every write fails with EBADFD. Tx counted those packets as
// DropTxError; the link is gone, which DropLinkDown says, as for a device that is
// down.
func TestTapTxDeviceGone(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/net/tun", "the TUN/TAP driver")
	pool := newTestPool(t, 64)
	tp, err := NewTap(TapOptions{Name: "dtg%d", Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	if out, err := exec.Command("ip", "link", "del", tp.Name()).CombinedOutput(); err != nil {
		t.Fatalf("ip link del %s: %v\n%s", tp.Name(), err, out)
	}
	txTwoLinkDown(t, tp, pool)
	var pkts [2]Pkt
	if n := tp.Rx(pkts[:]); n != 0 {
		t.Fatalf("Rx from a deleted device: %d packets", n)
	}
}

// txTwoLinkDown sends two frames through tp and wants both counted as DropLinkDown.
func txTwoLinkDown(t *testing.T, tp *TapPort, pool *Pool) {
	t.Helper()
	var pkts [2]Pkt
	if tp.cache.Alloc(pkts[:]) != len(pkts) {
		t.Fatal("alloc")
	}
	for i := range pkts {
		pool.Append(&pkts[i], 60)
	}
	if n := tp.Tx(pkts[:]); n != len(pkts) {
		tp.cache.Free(pkts[n:])
		t.Fatalf("Tx took %d of %d", n, len(pkts))
	}
	st := tp.Stats()
	if st.Drops[DropLinkDown] != 2 || st.Drops[DropTxError] != 0 || st.TxPackets != 0 {
		t.Fatalf("drops %v, tx %d: want two link_down", st.Drops, st.TxPackets)
	}
}
