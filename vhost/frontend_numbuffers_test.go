package vhost

import (
	"context"
	"testing"

	"github.com/dpkit/dpkit/internal/sysmem"
	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// rxDevice plays the back-end's datapath on the receive queue of f's first queue
// pair (split rings, no EVENT_IDX), from inside the test: the test sees the
// front-end's memory directly, as a back-end sees it through the shared regions.
type rxDevice struct {
	t   *testing.T
	dev *vring.SplitDevice
	mem *vring.Memory
}

func newRxDevice(t *testing.T, f *Frontend) *rxDevice {
	t.Helper()
	pool := f.opts.Pool.Region()
	mem, err := vring.NewMemory(
		vring.Region{Addr: uint64(sysmem.Addr(pool)), Host: pool},
		vring.Region{Addr: uint64(sysmem.Addr(f.rings)), Host: f.rings})
	if err != nil {
		t.Fatal(err)
	}
	d, a, u := vring.SplitSizes(f.opts.QueueSize)
	area := f.rings // queue 0 comes first
	ao := (d + 63) &^ 63
	uo := ao + (a+63)&^63
	dev, err := vring.NewSplitDevice(vring.SplitRing{Desc: area[:d], Avail: area[ao : ao+a], Used: area[uo : uo+u]},
		mem, vring.Options{Size: f.opts.QueueSize, Features: vring.FeatureVersion1})
	if err != nil {
		t.Fatal(err)
	}
	return &rxDevice{t: t, dev: dev, mem: mem}
}

// deliver puts one packet per entry of nbufs into the next posted buffers, each
// claiming nbufs[i] buffers in its header's num_buffers while taking one, its first
// payload byte tag+i, and publishes them all at once.
func (r *rxDevice) deliver(tag byte, nbufs ...uint16) {
	r.t.Helper()
	chains := make([]vring.Chain, len(nbufs))
	n, err := r.dev.Pop(chains)
	if err != nil || n != len(nbufs) {
		r.t.Fatalf("Pop: %d buffers of %d posted, %v", n, len(nbufs), err)
	}
	used := make([]vring.Used, n)
	for i, c := range chains {
		const plen = 60
		b, err := r.mem.Slice(c.Segs[0].Addr, 12+plen)
		if err != nil {
			r.t.Fatal(err)
		}
		clear(b[:12])
		b[10], b[11] = byte(nbufs[i]), byte(nbufs[i]>>8)
		for j := range b[12:] {
			b[12+j] = tag + byte(i)
		}
		used[i] = c.Used(12 + plen)
	}
	if err := r.dev.Push(used); err != nil {
		r.t.Fatal(err)
	}
}

// mrgFrontend dials a fake back-end that negotiates mergeable buffers and returns the
// front-end, a device side to deliver into its receive queue, and its pool.
func mrgFrontend(t *testing.T) (*Frontend, *rxDevice, *pmd.Pool) {
	t.Helper()
	feat := uint64(FeatureVersion1 | FeatureMrgRxbuf | FeatureProtocolFeatures)
	b := newFakeBack(t, func(c *uds.Conn, h header, p []byte) bool {
		honest(c, h, p, feat, ProtoReplyAck)
		return true
	})
	pool := sharedPool(t)
	f, err := Dial(context.Background(), FrontendOptions{Path: b.path, Pool: pool, QueueSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	return f, newRxDevice(t, f), pool
}

// TestFrontendNumBuffersLie: with MRG_RXBUF, a back-end that claims in num_buffers
// more buffers than it used for a packet loses that packet (a counted drop), never
// the packets it delivers after it. A back-end publishes all the buffers of a packet
// together (dpkit's and DPDK's do; Linux's and DPDK's virtio drivers take a packet
// whose buffers are not all there for an error), so the buffers in the used ring
// when the packet's first is read bound it. Before, the front-end waited for the
// rest: a num_buffers over pmd.MaxBurst discarded that many later buffers (65534 for
// 0xFFFF), the back-end's own later traffic, and a smaller lie took the following
// packets, headers and all, for the missing parts of the chain.
func TestFrontendNumBuffersLie(t *testing.T) {
	for _, lie := range []uint16{0xFFFF, pmd.MaxBurst + 1, 5, 2} {
		t.Run("", func(t *testing.T) { numBuffersLie(t, lie) })
	}
}

func numBuffersLie(t *testing.T, lie uint16) {
	f, r, pool := mrgFrontend(t)
	defer f.Close()
	p := f.Port(0)
	var rx [pmd.MaxBurst]pmd.Pkt
	// The lie, alone in the used ring.
	r.deliver(0x10, lie)
	if n := p.Rx(rx[:]); n != 0 {
		pool.Put(frames(rx[:n]))
		t.Errorf("num_buffers %d with one buffer used: Rx returned %d packets", lie, n)
	}
	// Then good packets, one buffer each, in two bursts.
	const good = 6
	got := 0
	for burst := range 2 {
		r.deliver(byte(0x40+16*burst), 1, 1, 1)
		for k := 0; k < 4; k++ {
			n := p.Rx(rx[:])
			for i, pk := range rx[:n] {
				d := pool.Data(&pk)
				if pk.Flags&pmd.PktMore != 0 || len(d) != 60 || d[0] != byte(0x40+16*burst+(got+i)%3) {
					t.Errorf("num_buffers %d: packet %d after the lie: flags %#x len %d first byte %#x",
						lie, got+i, pk.Flags, len(d), d[0])
				}
			}
			pool.Put(frames(rx[:n]))
			got += n
		}
	}
	if got != good {
		t.Errorf("num_buffers %d: %d of the %d packets delivered after the lie received", lie, got, good)
	}
	st := p.Stats()
	if st.RxPackets != good || st.TotalDrops() != 1 {
		t.Errorf("num_buffers %d: %d packets received, %d dropped (%v); want %d and 1", lie, st.RxPackets, st.TotalDrops(), st.Drops, good)
	}
	if p.Err() != nil {
		t.Errorf("the port broke: %v", p.Err())
	}
}

// deliverChains puts one packet per entry of nbufs into the next posted buffers,
// each using (and claiming in num_buffers) nbufs[i] buffers of 60 payload bytes,
// every byte of packet i tag+i, and publishes them all at once.
func (r *rxDevice) deliverChains(tag byte, nbufs ...uint16) {
	r.t.Helper()
	total := 0
	for _, nb := range nbufs {
		total += int(nb)
	}
	chains := make([]vring.Chain, total)
	n, err := r.dev.Pop(chains)
	if err != nil || n != total {
		r.t.Fatalf("Pop: %d buffers of %d posted, %v", n, total, err)
	}
	used := make([]vring.Used, 0, n)
	for i, nb := range nbufs {
		for k := range int(nb) {
			c := chains[len(used)]
			hl := 0
			if k == 0 {
				hl = 12
			}
			b, err := r.mem.Slice(c.Segs[0].Addr, uint64(hl+60))
			if err != nil {
				r.t.Fatal(err)
			}
			if k == 0 {
				clear(b[:12])
				b[10], b[11] = byte(nb), byte(nb>>8)
			}
			for j := range b[hl:] {
				b[hl+j] = tag + byte(i)
			}
			used = append(used, c.Used(uint32(hl+60)))
		}
	}
	if err := r.dev.Push(used); err != nil {
		r.t.Fatal(err)
	}
}

// TestFrontendNumBuffersLieAtBurstEnd: a num_buffers lie in the packet that fills
// the caller's pkts is caught as one alone in the used ring is. The packets before
// it are received, the lie is a counted drop, and the packets the back-end delivers
// later are received whole. Before, the front-end carried the unfinished chain over
// to the next Rx without looking whether its buffers were in the used ring, and the
// next call took the following packets, headers and all, for its missing parts.
//
// An honest chain that does not fit is returned whole by the next call.
func TestFrontendNumBuffersLieAtBurstEnd(t *testing.T) {
	f, r, pool := mrgFrontend(t)
	defer f.Close()
	p := f.Port(0)
	var rx [4]pmd.Pkt
	// Three good packets, then one claiming three buffers while using one: the
	// fourth fills rx.
	r.deliver(0x10, 1, 1, 1, 3)
	got := 0
	check := func(tag byte, n int) {
		for i, pk := range rx[:n] {
			d := pool.Data(&pk)
			if pk.Flags&pmd.PktMore != 0 || len(d) != 60 || d[0] != tag+byte(i) {
				t.Errorf("packet %d: flags %#x len %d first byte %#x, want a lone 60-byte packet starting %#x",
					got+i, pk.Flags, len(d), d[0], tag+byte(i))
			}
		}
		pool.Put(frames(rx[:n]))
		got += n
	}
	check(0x10, p.Rx(rx[:]))
	r.deliver(0x40, 1, 1, 1)
	for k := 0; k < 3; k++ {
		check(0x40-3+byte(got), p.Rx(rx[:]))
	}
	if got != 6 {
		t.Errorf("%d of the 6 good packets received", got)
	}
	// An honest chain of three buffers after three single ones: rx has room for
	// its first buffer only.
	r.deliverChains(0x60, 1, 1, 1, 3)
	check(0x60, p.Rx(rx[:]))
	n := p.Rx(rx[:])
	if n != 3 || rx[0].Flags&rx[1].Flags&pmd.PktMore == 0 || rx[2].Flags&pmd.PktMore != 0 {
		t.Errorf("the chain after the burst end: %d buffers, flags %#x %#x %#x", n, rx[0].Flags, rx[1].Flags, rx[2].Flags)
	}
	for i, pk := range rx[:n] {
		if d := pool.Data(&pk); len(d) != 60 || d[0] != 0x63 {
			t.Errorf("chain buffer %d: len %d first byte %#x", i, len(d), d[0])
		}
	}
	pool.Put(frames(rx[:n]))
	st := p.Stats()
	if st.RxPackets != 10 || st.TotalDrops() != 1 {
		t.Errorf("%d packets received, %d dropped (%v); want 10 and 1", st.RxPackets, st.TotalDrops(), st.Drops)
	}
}
