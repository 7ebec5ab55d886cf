package vhost

import (
	"net"
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// TestSplitReconnectBaseZero: DPDK's virtio-user sends SET_VRING_BASE 0 for a split
// ring every time it sets the ring up, also when a back-end reconnects to its running
// rings (virtio-user in server mode, the back-end in client mode: a vRouter that
// restarts). The ring's used.idx then says how far the device got; DPDK's vhost
// resumes from it when the base disagrees (translate_ring_addresses), and so must
// this back-end, instead of reading the driver's avail.idx as hundreds of chains
// ahead of a base of 0 and breaking the ring, or serving stale avail entries again.
func TestSplitReconnectBaseZero(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	const q, size = 1, 8 // the guest's transmit queue, read by Port.Rx
	addr := splitRing(t, f, q, size)
	ringUp := func(base uint32) {
		t.Helper()
		kick, err := uds.Eventfd()
		if err != nil {
			t.Fatal(err)
		}
		f.evfds = append(f.evfds, kick)
		f.must(ReqSetVringNum, stateB(q, size))
		f.must(ReqSetVringBase, stateB(q, base))
		f.must(ReqSetVringAddr, addr)
		f.must(ReqSetVringKick, u64b(q), kick)
		f.must(ReqSetVringEnable, stateB(q, 1))
	}
	ringUp(0)
	port, pool := b.Port(0), b.opts.Pool
	seq := 0
	send := func(k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			g, h := f.alloc(12 + 60)
			clear(h)
			h[12] = byte(seq + i)
			f.add(q, []vring.Seg{{Addr: g, Len: 12 + 60}})
		}
		var pkts [size]pmd.Pkt
		got := 0
		waitFor(t, "rx", func() bool {
			n := port.Rx(pkts[:])
			for _, p := range pkts[:n] {
				if d := pool.Data(&p); len(d) != 60 || d[0] != byte(seq+got) {
					t.Errorf("packet %d: %d bytes, first %d", seq+got, len(d), d[0])
				}
				got++
			}
			pool.Put(frames(pkts[:n]))
			return got >= k
		})
		if got != k {
			t.Fatalf("received %d packets, want %d", got, k)
		}
		var used [size]vring.Used
		if n := f.collect(q, used[:]); n != k {
			t.Fatalf("collected %d completions, want %d", n, k)
		}
		seq += k
	}
	for range 5 {
		send(4) // 20 chains: avail.idx and used.idx at 20, more than the ring holds
	}

	// The back-end's connection drops and it comes back; the front-end keeps its
	// rings and sets them up again as virtio-user does, from base 0.
	f.c.Close()
	waitFor(t, "detach", func() bool { return !b.Attached() })
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	f.c = uds.NewConn(c.(*net.UnixConn))
	f.negotiate(FeatureVersion1)
	ringUp(0)
	send(3)
	send(size)
}

// splitRing allocates split ring i of n entries in f's memory, as setupQueue does,
// and returns its SET_VRING_ADDR payload.
func splitRing(t *testing.T, f *fakeFront, i, n int) []byte {
	o := vring.Options{Size: n, Features: f.features & (vring.FeatureEventIdx | vring.FeatureIndirectDesc | vring.FeatureVersion1)}
	ds, as, us := vring.SplitSizes(n)
	dg, dh := f.alloc(ds)
	ag, ah := f.alloc(as)
	ug, uh := f.alloc(us)
	d, err := vring.NewSplitDriver(vring.SplitRing{Desc: dh, Avail: ah, Used: uh}, f.mem, o)
	if err != nil {
		t.Fatal(err)
	}
	f.split[i] = d
	uva := func(gpa uint64) uint64 { return gpa - f.gpa + f.uva }
	a := make([]byte, sizeAddr)
	le.PutUint32(a, uint32(i))
	le.PutUint64(a[8:], uva(dg))
	le.PutUint64(a[16:], uva(ug))
	le.PutUint64(a[24:], uva(ag))
	return a
}
