package vhost

import (
	"bytes"
	"testing"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// TestDatapathFake moves packets both ways between the backend's Port and a fake
// front-end driving vring's driver side, for each ring layout and buffer mode.
func TestDatapathFake(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1},
		{"split-mrg", FeatureVersion1 | FeatureMrgRxbuf},
		{"split-mrg-inorder-eventidx", FeatureVersion1 | FeatureMrgRxbuf | FeatureInOrder | FeatureEventIdx},
		{"packed", FeatureVersion1 | FeatureRingPacked},
		{"packed-mrg", FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf},
		{"packed-mrg-inorder-eventidx", FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf | FeatureInOrder | FeatureEventIdx},
	} {
		t.Run(c.name, func(t *testing.T) { testDatapath(t, c.feat) })
	}
}

func testDatapath(t *testing.T, feat uint64) {
	b, f := oneQueue(t, feat, 256)
	f.setupQueue(1, 256)
	port := b.Port(0)
	pool := b.opts.Pool
	mrg := feat&FeatureMrgRxbuf != 0

	// Guest → host: 40 packets of growing size, each header + payload in one buffer.
	var want [][]byte
	for i := 0; i < 40; i++ {
		n := 60 + i*37
		g, h := f.alloc(12 + n)
		for j := range h {
			h[j] = 0
		}
		for j := 0; j < n; j++ {
			h[12+j] = byte(i + j)
		}
		want = append(want, append([]byte(nil), h[12:]...))
		f.add(1, []vring.Seg{{Addr: g, Len: uint32(12 + n)}})
	}
	var pkts [64]pmd.Pkt
	got := 0
	waitFor(t, "rx", func() bool {
		n := port.Rx(pkts[:])
		for _, p := range pkts[:n] {
			if !bytes.Equal(pool.Data(&p), want[got]) {
				t.Fatalf("packet %d: got %d bytes, want %d", got, p.Len, len(want[got]))
			}
			got++
		}
		pool.Put(frames(pkts[:n]))
		return got == len(want)
	})
	if f.packed {
		// The transmit ring: with IN_ORDER a burst is completed by one used
		// descriptor (§2.8.8), without it by one per buffer.
		ring := f.host[f.devRing[1]-f.gpa:]
		marked := 0
		for i := 0; i < 40; i++ {
			if fl := le.Uint16(ring[16*i+14:]); fl&(1<<7) != 0 && fl&(1<<15) != 0 {
				marked++
			}
		}
		if inOrder := feat&FeatureInOrder != 0; inOrder && marked >= 40 || !inOrder && marked != 40 {
			t.Fatalf("%d of 40 transmit descriptors written back as used (in order: %v)", marked, inOrder)
		}
	}
	var used [64]vring.Used
	if n := f.collect(1, used[:]); n != 40 {
		t.Fatalf("collected %d tx completions, want 40", n)
	}

	// Host → guest: the guest offers 2048-byte buffers (or 512 with mrg, so big
	// packets span several).
	bufLen := 2048
	if mrg {
		bufLen = 512
	}
	bufs := map[uint64][]byte{}
	for i := 0; i < 128; i++ {
		g, h := f.alloc(bufLen)
		for j := range h {
			h[j] = 0xa5 // a stale header must be overwritten, not trusted
		}
		bufs[g] = h
		f.add(0, []vring.Seg{{Addr: g, Len: uint32(bufLen), Write: true}})
	}
	cache := pool.NewCache(0)
	defer cache.Flush()
	var sent [][]byte
	for i := 0; i < 20; i++ {
		var p [1]pmd.Pkt
		if cache.Alloc(p[:]) != 1 {
			t.Fatal("pool empty")
		}
		n := 64 + i*70
		pool.Append(&p[0], n)
		d := pool.Data(&p[0])
		for j := range d {
			d[j] = byte(3*i + j)
		}
		sent = append(sent, append([]byte(nil), d...))
		if port.Tx(p[:]) != 1 {
			t.Fatalf("tx %d refused", i)
		}
	}
	// Reassemble what the guest received, as a virtio-net driver does.
	n := f.collect(0, used[:])
	idx := 0
	for k := 0; k < len(sent); k++ {
		if idx >= n {
			t.Fatalf("only %d used entries for %d packets", n, len(sent))
		}
		first := used[idx]
		gpa := bufAddr(t, f, 0, first.ID, bufs)
		h := bufs[gpa]
		nb := 1
		if mrg {
			nb = int(h[10]) | int(h[11])<<8
		}
		if !bytes.Equal(h[:10], make([]byte, 10)) || int(h[10])|int(h[11])<<8 != nb {
			t.Fatalf("guest packet %d: header % x", k, h[:12])
		}
		var pkt []byte
		pkt = append(pkt, h[12:first.Len]...)
		for j := 1; j < nb; j++ {
			u := used[idx+j]
			pkt = append(pkt, bufs[bufAddr(t, f, 0, u.ID, bufs)][:u.Len]...)
		}
		idx += nb
		if !bytes.Equal(pkt, sent[k]) {
			t.Fatalf("guest packet %d: %d bytes, want %d (num_buffers %d)", k, len(pkt), len(sent[k]), nb)
		}
	}
	st := port.Stats()
	if st.RxPackets != 40 || st.TxPackets != 20 || st.TotalDrops() != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// bufAddr maps a used id back to the buffer's guest address, as recorded at Add.
func bufAddr(t *testing.T, f *fakeFront, q int, id uint16, bufs map[uint64][]byte) uint64 {
	t.Helper()
	a, ok := f.descAddr(q, id)
	if !ok {
		t.Fatalf("unknown used id %d", id)
	}
	if _, ok := bufs[a]; !ok {
		t.Fatalf("used id %d points at %#x, not a buffer", id, a)
	}
	return a
}

func frames(p []pmd.Pkt) []pmd.Frame {
	f := make([]pmd.Frame, len(p))
	for i := range p {
		f[i] = p[i].Frame
	}
	return f
}

// TestPackedRestartBase stops a packed ring with GET_VRING_BASE when both its
// positions are back at 0 after one lap (wrap counters 0, so the base is 0), and
// restarts it with that base, as a front-end does around migration. The ring must
// go on from there: a 0 that was sent is a position, not a fresh ring.
func TestPackedRestartBase(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1 | FeatureRingPacked)
	const size = 8
	f.setupQueue(0, size)
	f.setupQueue(1, size)
	port := b.Port(0)
	pool := b.opts.Pool

	seq := 0
	send := func(k int) {
		t.Helper()
		for i := 0; i < k; i++ {
			g, h := f.alloc(12 + 60)
			clear(h)
			h[12] = byte(seq + i)
			f.add(1, []vring.Seg{{Addr: g, Len: 12 + 60}})
		}
		var pkts [size]pmd.Pkt
		got := 0
		waitFor(t, "rx", func() bool {
			n := port.Rx(pkts[:])
			for _, p := range pkts[:n] {
				if d := pool.Data(&p); len(d) != 60 || d[0] != byte(seq+got) {
					t.Fatalf("packet %d: %d bytes, first %d", seq+got, len(d), d[0])
				}
				got++
			}
			pool.Put(frames(pkts[:n]))
			return got == k
		})
		var used [size]vring.Used
		if n := f.collect(1, used[:]); n != k {
			t.Fatalf("collected %d completions, want %d", n, k)
		}
		seq += k
	}
	send(size) // one whole lap: both positions at 0, wrap counters now 0

	if base := restartQueue(t, f, 1); base != 0 {
		t.Fatalf("GET_VRING_BASE after one lap = %#x, want 0", base)
	}
	send(3)
	send(size) // and across the next wrap
}

// TestPackedRestartKeepsUsedPosition: a packed ring whose used position lags its
// available one (QEMU's SET_VRING_BASE carries both: buffers it had in flight)
// reaches used position 0 with used wrap counter 0 while the available position is
// elsewhere; then a memory change stops and restarts it. It must go on writing used
// descriptors where it was, at 0: QEMU's encoding of that state has an empty used
// half, which from SET_VRING_BASE means "used = available" (DPDK's front-end sends no
// used half), but a ring the back-end stopped itself knows its used position.
func TestPackedRestartKeepsUsedPosition(t *testing.T) {
	const size, gpa, uva = 8, 0x10000, 0x7f0000000000
	host := make([]byte, 1<<16)
	mem, err := vring.NewMemory(vring.Region{Addr: gpa, UserAddr: uva, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	d := newDevice(&Options{})
	d.features = FeatureVersion1 | FeatureRingPacked
	d.mem.mem = mem
	q := d.queues[1]
	q.num, q.addrSet, q.kickSet, q.enabled = size, true, true, true
	q.addr = vringAddr{Index: 1, Desc: uva, Avail: uva + 0x1000, Used: uva + 0x1010}
	// Available position 1, wrap counter 0; used position 6, wrap counter 1: four
	// buffers (6, 7, 0, 1) were in flight in the front-end.
	if _, err := d.setVringBase(&message{payload: stateB(1, 1|(6|1<<15)<<16)}); err != nil {
		t.Fatal(err)
	}
	d.startAll()
	desc := host[:16*size]
	offer := func(pos int, id uint16) {
		e := desc[16*pos:]
		le.PutUint64(e, gpa+0x2000+64*uint64(id))
		le.PutUint32(e[8:], 64)
		le.PutUint16(e[12:], id)
		le.PutUint16(e[14:], vring.DescUsed|vring.DescWrite) // available, driver wrap 0
	}
	serve := func(want int) {
		t.Helper()
		r := q.active.Load()
		if r == nil {
			t.Fatal("ring not running")
		}
		c := make([]vring.Chain, 4)
		for i := range c {
			c[i].Segs = make([]vring.Seg, 0, 1)
		}
		n, err := r.packed.Pop(c)
		if n != want || err != nil {
			t.Fatalf("pop: %d, %v; want %d", n, err, want)
		}
		u := make([]vring.Used, n)
		for i := range u {
			u[i] = c[i].Used(50)
		}
		if err := r.packed.Push(u); err != nil {
			t.Fatal(err)
		}
	}
	offer(1, 1)
	offer(2, 2)
	serve(2) // used at 6 and 7: used position 0, wrap counter 0
	d.stopAll()
	if q.base != 3 {
		t.Fatalf("base %#x, want available 3 and used 0, both wrap counters 0", q.base)
	}
	d.startAll()
	if a, aw, u, uw := q.active.Load().packed.Base(); a != 3 || aw || u != 0 || uw {
		t.Fatalf("restarted at available %d (wrap %v), used %d (wrap %v); want 3, 0, 0, 0", a, aw, u, uw)
	}
	offer(3, 3)
	serve(1)
	if id, n := le.Uint16(desc[12:]), le.Uint32(desc[8:]); id != 3 || n != 50 {
		t.Fatalf("used descriptor at position 0: id %d len %d, want 3, 50", id, n)
	}
}

// TestSendRARP: after SEND_RARP the next Rx delivers one RARP request from the given
// MAC to the broadcast address, ahead of the guest's own packets, and only once.
func TestSendRARP(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.proto = ProtoRARP
	f.negotiate(FeatureVersion1)
	f.setupQueue(0, 64)
	f.setupQueue(1, 64)
	port, pool := b.Port(0), b.opts.Pool
	mac := []byte{0x52, 0x54, 0x00, 0x12, 0x34, 0x56}
	f.must(ReqSendRARP, append(append([]byte(nil), mac...), 0, 0))
	g, h := f.alloc(12 + 60)
	clear(h)
	h[12] = 0x77
	f.add(1, []vring.Seg{{Addr: g, Len: 12 + 60}})
	var pkts [8]pmd.Pkt
	var got [][]byte
	waitFor(t, "rx", func() bool {
		n := port.Rx(pkts[:])
		for _, p := range pkts[:n] {
			got = append(got, append([]byte(nil), pool.Data(&p)...))
		}
		pool.Put(frames(pkts[:n]))
		return len(got) >= 2
	})
	if n := port.Rx(pkts[:]); n != 0 {
		pool.Put(frames(pkts[:n]))
		t.Fatalf("%d more packets: the RARP went out twice?", n)
	}
	want := make([]byte, 60)
	copy(want, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(want[6:], mac)
	copy(want[12:], []byte{0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3})
	copy(want[22:], mac)
	copy(want[32:], mac)
	if len(got) != 2 || !bytes.Equal(got[0], want) || got[1][0] != 0x77 {
		t.Fatalf("got %d packets, first %x", len(got), got[0])
	}
}
