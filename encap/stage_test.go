package encap

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// A frame that is not tunnel traffic: an ARP request.
func arpFrame() []byte {
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 9, 0x08, 0x06})
	return f
}

// The stages strung together as a vRouter would: classify → spread → decap → lookup
// → encap, checking what each hands on.
func TestStages(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(128)
	defer c.Flush()
	vx, mu := findVariant(t, "vxlan/outer4"), findVariant(t, "mplsoudp-1label/outer6")

	var in pmd.Batch
	const flows = 16
	for i := 0; i < flows; i++ {
		v := vx
		if i%2 == 1 {
			v = mu
		}
		inner := append([]byte(nil), v.inner...)
		// Vary the inner source port: one flow each.
		l4 := 14 + 20 // VXLAN: Ethernet and IPv4
		if v.opts.Type != VXLAN {
			l4 = 20 // MPLS L3 VPN: IPv4
		}
		binary.BigEndian.PutUint16(inner[l4:], uint16(1000+i))
		in.Push(load(t, pool, c, build(t, pool, c, variant{opts: v.opts, inner: inner})))
	}
	in.Push(load(t, pool, c, arpFrame()))
	bad := build(t, pool, c, vx)
	bad[14+10] ^= 0xff // IPv4 header checksum
	in.Push(load(t, pool, c, bad))

	d := NewDecapper(DecapOptions{})
	var other []Reason
	toOther := func(pk *pmd.Pkt, why Reason) { other = append(other, why); c.Free([]pmd.Pkt{*pk}) }
	d.ClassifyStage(pool, &in, HashOptions{}, toOther)
	if in.Len() != flows || len(other) != 2 || other[0] != DropBadEthertype || !other[0].NotTunnel() ||
		other[1] != DropBadChecksum || other[1].NotTunnel() {
		t.Fatalf("classify kept %d, passed on %v", in.Len(), other)
	}
	for _, pk := range in.Pkts() {
		if pk.Flags&pmd.PktHashValid == 0 || (KeyType(pk.Meta) != VXLAN && KeyType(pk.Meta) != MPLSoUDP) {
			t.Fatalf("classified packet %+v", pk)
		}
	}
	// The hash is the inner flow's: the same packet decapsulated hashes the same.
	first := in.Pkts()[0]
	var r Result
	if d.Classify(pool.Data(&first), false, &r) != OK ||
		FlowHash(pool.Data(&first)[r.OuterLen:], true, HashOptions{}) != first.Hash {
		t.Fatal("classify hash is not the inner flow hash")
	}

	var w0, w1 pmd.Batch
	Spread(&in, []*pmd.Batch{&w0, &w1})
	if in.Len() != 0 || w0.Len()+w1.Len() != flows || w0.Len() == 0 || w1.Len() == 0 {
		t.Fatalf("spread left %d, gave %d and %d", in.Len(), w0.Len(), w1.Len())
	}
	for _, w := range []*pmd.Batch{&w0, &w1} {
		for _, pk := range w.Pkts() {
			// The same flow always lands on the same worker.
			var again pmd.Batch
			var a, b pmd.Batch
			again.Push(pk)
			Spread(&again, []*pmd.Batch{&a, &b})
			if (a.Len() == 1) != (w == &w0) {
				t.Fatal("spread is not a function of the hash")
			}
		}
	}

	// Worker: decap, look the key up, encap towards another node.
	tunnels := []*Tunnel{nil, mustTunnel(t, Options{Type: MPLSoGRE, Src: v4B, Dst: v4A, Labels: []Label{{Label: 500}}, DSCP: -1})}
	var dropped []Reason
	drop := func(pk *pmd.Pkt, why Reason) { dropped = append(dropped, why); c.Free([]pmd.Pkt{*pk}) }
	for _, w := range []*pmd.Batch{&w0, &w1} {
		n := w.Len()
		d.DecapStage(pool, w, drop)
		if w.Len() != n {
			t.Fatalf("decap dropped %v", dropped)
		}
		// Lookup: VXLAN VNI 0xabcdef goes to tunnel 1, the MPLS label to nowhere.
		w.Filter(func(pk *pmd.Pkt) bool {
			switch pk.Meta {
			case Key(VXLAN, 0xabcdef):
				pk.Meta = 1
				pk.Adj(14) // the L3 VPN carries the IP packet
			case Key(MPLSoUDP, 100):
				pk.Meta = 7 // no such tunnel
			default:
				t.Fatalf("key %#x", pk.Meta)
			}
			return true
		}, nil)
		EncapStage(pool, w, tunnels, drop)
		for _, pk := range w.Pkts() {
			if d.Classify(pool.Data(&pk), false, &r) != OK || r.Type != MPLSoGRE || r.Label() != 500 || r.Src != v4B {
				t.Fatalf("re-encapsulated frame: %+v", r)
			}
		}
		c.Free(w.Pkts())
		w.Reset()
	}
	if len(dropped) != flows/2 {
		t.Fatalf("dropped %v", dropped)
	}
	for _, why := range dropped {
		if why != DropNoTunnel {
			t.Fatalf("dropped %v", dropped)
		}
	}
	st := d.Stats()
	if st.Decapsulated != flows || st.Drops[DropBadEthertype] != 1 || st.Drops[DropBadChecksum] != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func mustTunnel(t testing.TB, o Options) *Tunnel {
	t.Helper()
	tun, err := NewTunnel(o)
	if err != nil {
		t.Fatal(err)
	}
	return tun
}

// EncapStage hands packets it cannot encapsulate to drop with the reason.
func TestEncapStageDrops(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 16, Headroom: 128, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := pool.NewCache(8)
	defer c.Flush()
	tun := mustTunnel(t, Options{Type: MPLSoUDP, Src: v6A, Dst: v6B, Labels: make([]Label, 8), DSCP: -1})
	var b pmd.Batch
	ok := load(t, pool, c, mkInnerIP(false, 60, 1, 0))
	low := load(t, pool, c, mkInnerIP(false, 60, 1, 0))
	low.Off = 20
	none := load(t, pool, c, mkInnerIP(false, 60, 1, 0))
	none.Meta = 3
	b.Push(ok)
	b.Push(low)
	b.Push(none)
	var got []Reason
	EncapStage(pool, &b, []*Tunnel{tun}, func(pk *pmd.Pkt, why Reason) { got = append(got, why); c.Free([]pmd.Pkt{*pk}) })
	if b.Len() != 1 || len(got) != 2 || got[0] != DropNoHeadroom || got[1] != DropNoTunnel {
		t.Fatalf("kept %d, dropped %v", b.Len(), got)
	}
	c.Free(b.Pkts())
}

// Spread keeps what does not fit, in order.
func TestSpreadFull(t *testing.T) {
	var src, dst pmd.Batch
	for i := 0; i < pmd.MaxBurst; i++ {
		dst.Push(pmd.Pkt{Meta: 1})
	}
	src.Push(pmd.Pkt{Meta: 7, Flags: pmd.PktHashValid, Hash: 1})
	src.Push(pmd.Pkt{Meta: 8})
	Spread(&src, []*pmd.Batch{&dst})
	if src.Len() != 2 || src.Pkts()[0].Meta != 7 || src.Pkts()[1].Meta != 8 {
		t.Fatalf("src %+v", src.Pkts())
	}
	// No batch at all is as good as all full (it used to index dst[0] and panic).
	Spread(&src, nil)
	if src.Len() != 2 || src.Pkts()[0].Meta != 7 || src.Pkts()[1].Meta != 8 {
		t.Fatalf("src %+v after Spread to no batch", src.Pkts())
	}
}

// Stats may be read while the owner decapsulates (run with -race).
func TestStatsConcurrent(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	defer c.Flush()
	frame := build(t, pool, c, findVariant(t, "vxlan/outer4"))
	d := NewDecapper(DecapOptions{Local: []netip.Addr{v4B}})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var last uint64
		for {
			select {
			case <-stop:
				return
			default:
			}
			s := d.Stats()
			if s.Decapsulated < last {
				t.Error("counter went backwards")
				return
			}
			last = s.Decapsulated
		}
	}()
	var b pmd.Batch
	for round := 0; round < 200; round++ {
		for i := 0; i < 8; i++ {
			b.Push(load(t, pool, c, frame))
		}
		d.DecapStage(pool, &b, func(pk *pmd.Pkt, why Reason) { t.Errorf("drop %v", why) })
		c.Free(b.Pkts())
		b.Reset()
	}
	close(stop)
	wg.Wait()
	if s := d.Stats(); s.Decapsulated != 200*8 {
		t.Fatalf("stats %+v", s)
	}
}

// A decap-lookup-encap worker: VXLAN frames from the uplink are decapsulated, their
// VNI looked up, and their inner IP packets sent on over MPLS over UDP, one batch per
// poll.
func Example_pipeline() {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	defer pool.Close()
	c := pool.NewCache(64)
	defer c.Flush()

	// The uplink: the other end of a ring pair stands in for the NIC.
	nic, uplink, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer nic.Close()
	defer uplink.Close()
	from := mustExampleTunnel(Options{Type: VXLAN, VNI: 42, Src: v4B, Dst: v4A, DSCP: -1})
	var rx pmd.Batch
	for i := 0; i < 4; i++ {
		c.Alloc(rx.Room()[:1])
		pk := &rx.Room()[0]
		pool.Append(pk, 100)
		copy(pool.Data(pk), innerEth(false, 100, 0))
		from.Encap(pool, pk)
		rx.Grow(1)
	}
	rx.Tx(nic)

	// The worker's state: a Decapper, the VNI → tunnel table, a drop counter.
	d := NewDecapper(DecapOptions{Local: []netip.Addr{v4A}})
	tunnels := []*Tunnel{mustExampleTunnel(Options{Type: MPLSoUDP, Src: v4A, Dst: v4B,
		Labels: []Label{{Label: 1000}}, DSCP: -1})}
	vrfs := map[uint32]uint32{Key(VXLAN, 42): 0} // key → tunnel index
	dropped := 0
	drop := func(pk *pmd.Pkt, why Reason) { dropped++; c.Free([]pmd.Pkt{*pk}) }

	var b pmd.Batch
	b.Rx(uplink)
	d.DecapStage(pool, &b, drop)
	b.Filter(func(pk *pmd.Pkt) bool {
		nh, ok := vrfs[pk.Meta]
		pk.Meta = nh
		return ok && pk.Adj(14) // an L3 VPN carries the IP packet
	}, func(pk *pmd.Pkt) { drop(pk, DropNoTunnel) })
	EncapStage(pool, &b, tunnels, drop)
	fmt.Println(b.Len(), "packets out,", dropped, "dropped,", d.Stats().Decapsulated, "decapsulated")
	b.Tx(uplink)

	var out pmd.Batch
	out.Rx(nic)
	var r Result
	NewDecapper(DecapOptions{}).Classify(pool.Data(&out.Pkts()[0]), false, &r)
	fmt.Println(r.Type, r.Label(), r.InnerLen, "bytes inside")
	c.Free(out.Pkts())
	// Output:
	// 4 packets out, 0 dropped, 4 decapsulated
	// mplsoudp 1000 86 bytes inside
}

func mustExampleTunnel(o Options) *Tunnel {
	t, err := NewTunnel(o)
	if err != nil {
		panic(err)
	}
	return t
}

// After decap the hash is the inner flow's, or none: never the outer one's.
func TestDecapHash(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	v := findVariant(t, "mplsoudp-1label/outer4")
	for _, inner := range []bool{false, true} {
		pk := load(t, pool, c, build(t, pool, c, v))
		pk.Hash, pk.Flags = 12345, pmd.PktHashValid // as a NIC's RSS would leave it
		d := NewDecapper(DecapOptions{InnerFlowHash: inner, Hash: HashOptions{Symmetric: true}})
		var r Result
		if d.Decap(pool, &pk, &r) != OK {
			t.Fatal("decap")
		}
		valid := pk.Flags&pmd.PktHashValid != 0
		if valid != inner || (inner && pk.Hash != FlowHash(v.inner, false, HashOptions{Symmetric: true})) {
			t.Fatalf("InnerFlowHash %v: hash %#x valid %v", inner, pk.Hash, valid)
		}
		c.Free([]pmd.Pkt{pk})
	}
}

// The stages take unchained packets: a chain (pmd.PktMore) in a batch is refused
// whole, every segment handed to drop (or other) with DropTooLong and counted once,
// and the packets around it keep their order. Before, each segment went through the
// stage as a frame of its own: a first segment holding a whole tunnel frame (a jumbo
// frame's head) was decapsulated and kept with PktMore still set, and a later segment
// whose bytes (the sender's payload) look like a tunnel frame was decapsulated as
// one; EncapStage refused the segments with PktMore but encapsulated the last one
// and sent it on as a packet of its own.
func TestStagesRefuseChains(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	frame := build(t, pool, c, findVariant(t, "vxlan/outer4"))
	inner := mkInnerIP(false, 100, 9, 0)
	tun := mustTunnel(t, Options{Type: MPLSoUDP, Src: v4A, Dst: v4B, Labels: []Label{{Label: 7}}, DSCP: -1})

	// fill makes b: a packet, a chain of three whose every segment holds the whole
	// of data, a packet, a chain of two, an unterminated chain of one at the end. It
	// returns the frames in that order.
	fill := func(b *pmd.Batch, data []byte) []pmd.Frame {
		var frames []pmd.Frame
		for _, more := range []bool{false, true, true, false, false, true, false, true} {
			pk := load(t, pool, c, data)
			if more {
				pk.Flags |= pmd.PktMore
			}
			b.Push(pk)
			frames = append(frames, pk.Frame)
		}
		return frames
	}
	var got []string
	drop := func(pk *pmd.Pkt, why Reason) {
		got = append(got, fmt.Sprint(pk.Frame, why))
		c.Free([]pmd.Pkt{*pk})
	}
	check := func(name string, b *pmd.Batch, frames []pmd.Frame) {
		t.Helper()
		var kept []pmd.Frame
		for _, pk := range b.Pkts() {
			kept = append(kept, pk.Frame)
			if pk.Flags&pmd.PktMore != 0 {
				t.Errorf("%s: kept a segment with PktMore: %+v", name, pk)
			}
		}
		var want []string
		for _, i := range []int{1, 2, 3, 5, 6, 7} {
			want = append(want, fmt.Sprint(frames[i], DropTooLong))
		}
		wantKept := []pmd.Frame{frames[0], frames[4]}
		if fmt.Sprint(kept) != fmt.Sprint(wantKept) || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: kept %v, dropped %v; want %v and %v", name, kept, got, wantKept, want)
		}
		c.Free(b.Pkts())
		b.Reset()
		got = nil
	}

	var b pmd.Batch
	d := NewDecapper(DecapOptions{})
	frames := fill(&b, frame)
	d.ClassifyStage(pool, &b, HashOptions{}, drop)
	check("ClassifyStage", &b, frames)
	if s := d.Stats(); s.Drops[DropTooLong] != 3 {
		t.Errorf("ClassifyStage counted %d chains, want 3", s.Drops[DropTooLong])
	}

	d = NewDecapper(DecapOptions{})
	frames = fill(&b, frame)
	d.DecapStage(pool, &b, drop)
	check("DecapStage", &b, frames)
	if s := d.Stats(); s.Drops[DropTooLong] != 3 || s.Decapsulated != 2 {
		t.Errorf("DecapStage stats %+v, want 3 chains and 2 decapsulated", s)
	}

	d = NewDecapper(DecapOptions{})
	frames = fill(&b, frame)
	var res [8]Result
	n := d.DecapBatch(pool, b.Pkts(), res[:], drop)
	b.Reset()
	b.Grow(n)
	check("DecapBatch", &b, frames)
	if s := d.Stats(); s.Drops[DropTooLong] != 3 || s.Decapsulated != 2 {
		t.Errorf("DecapBatch stats %+v, want 3 chains and 2 decapsulated", s)
	}

	// Decap alone refuses a chain's first segment, as Encap does (DecapChain takes
	// chains).
	d = NewDecapper(DecapOptions{})
	pk := load(t, pool, c, frame)
	pk.Flags |= pmd.PktMore
	var r Result
	if why := d.Decap(pool, &pk, &r); why != DropTooLong || pk.Len != uint16(len(frame)) {
		t.Errorf("Decap of a chain's first segment: %v, %+v", why, pk)
	}
	c.Free([]pmd.Pkt{pk})

	frames = fill(&b, inner)
	EncapStage(pool, &b, []*Tunnel{tun}, drop)
	check("EncapStage", &b, frames)

	// Empty batches pass through every stage untouched.
	d.ClassifyStage(pool, &b, HashOptions{}, drop)
	d.DecapStage(pool, &b, drop)
	EncapStage(pool, &b, []*Tunnel{tun}, drop)
	if b.Len() != 0 || len(got) != 0 {
		t.Errorf("empty batch: %d kept, %d dropped", b.Len(), len(got))
	}

	c.Flush()
	if s := pool.Stats(); s.Free != pool.Frames() || s.BadFrees != 0 {
		t.Errorf("pool after the stages: %+v", s)
	}
}

// Spread moves a chain (pmd.PktMore) whole, to the batch its first segment's hash
// chooses, or leaves it whole in src when it does not fit; a packet of the same flow
// after a chain left behind stays behind too. Before, each segment was spread on its
// own: the continuation segments, which carry no hash, went to dst[0] while the first
// went to its flow's batch, and a chain met a full batch half moved.
func TestSpreadChains(t *testing.T) {
	hashTo := func(k, n int) uint32 { return uint32((uint64(k)<<32 + 1<<31) / uint64(n)) } // lands in dst[k] of n
	var src, w0, w1 pmd.Batch
	seg := func(meta uint32, hash uint32, valid, more bool) pmd.Pkt {
		pk := pmd.Pkt{Meta: meta, Hash: hash}
		if valid {
			pk.Flags |= pmd.PktHashValid
		}
		if more {
			pk.Flags |= pmd.PktMore
		}
		return pk
	}
	h1 := hashTo(1, 2)
	src.Push(seg(1, h1, true, true))
	src.Push(seg(2, 0, false, true))
	src.Push(seg(3, 0, false, false))
	src.Push(seg(4, h1, true, false))
	src.Push(seg(5, 0, false, false))
	Spread(&src, []*pmd.Batch{&w0, &w1})
	metas := func(b *pmd.Batch) string {
		var m []uint32
		for _, pk := range b.Pkts() {
			m = append(m, pk.Meta)
		}
		return fmt.Sprint(m)
	}
	if metas(&src) != "[]" || metas(&w0) != "[5]" || metas(&w1) != "[1 2 3 4]" {
		t.Fatalf("spread: src %s, w0 %s, w1 %s", metas(&src), metas(&w0), metas(&w1))
	}

	// A chain that does not fit stays whole, and the packets after it stay too.
	src.Reset()
	w0.Reset()
	w1.Reset()
	for w1.Len() < pmd.MaxBurst-1 {
		w1.Push(seg(0, h1, true, false))
	}
	src.Push(seg(1, h1, true, true))
	src.Push(seg(2, 0, false, false))
	src.Push(seg(3, h1, true, false))
	src.Push(seg(4, 0, false, false))
	Spread(&src, []*pmd.Batch{&w0, &w1})
	if metas(&src) != "[1 2 3 4]" || w0.Len() != 0 || w1.Len() != pmd.MaxBurst-1 {
		t.Fatalf("spread to a full batch: src %s, w0 %d, w1 %d", metas(&src), w0.Len(), w1.Len())
	}

	// An unterminated chain at the end moves whole too.
	src.Reset()
	w1.Reset()
	src.Push(seg(1, h1, true, true))
	src.Push(seg(2, 0, false, true))
	Spread(&src, []*pmd.Batch{&w0, &w1})
	if metas(&src) != "[]" || metas(&w0) != "[]" || metas(&w1) != "[1 2]" {
		t.Fatalf("spread: src %s, w0 %s, w1 %s", metas(&src), metas(&w0), metas(&w1))
	}
}

// Spread over 1 and over non-power-of-two numbers of workers: every packet lands in
// exactly one batch, a hash always in the same one, and the flows share out evenly.
func TestSpreadDistribution(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 5, 7, 8} {
		dst := make([]*pmd.Batch, workers)
		for i := range dst {
			dst[i] = new(pmd.Batch)
		}
		where := map[uint32]int{}
		count := make([]int, workers)
		var state uint64 = 42
		const rounds, burst = 200, 64
		for round := 0; round < rounds; round++ {
			var src pmd.Batch
			for i := 0; i < burst; i++ {
				state = state*6364136223846793005 + 1442695040888963407
				pk := pmd.Pkt{Hash: uint32(state >> 32), Flags: pmd.PktHashValid, Meta: 1}
				if i%4 == 0 && round > 0 {
					pk.Hash, pk.Meta = uint32(round-1), 0 // a hash seen before, in an earlier round
				}
				src.Push(pk)
			}
			src.Push(pmd.Pkt{Hash: uint32(round)})
			Spread(&src, dst)
			if src.Len() != 0 {
				t.Fatalf("%d workers: %d packets left", workers, src.Len())
			}
			total := 0
			for k, b := range dst {
				for _, pk := range b.Pkts() {
					if pk.Flags&pmd.PktHashValid == 0 {
						if k != 0 {
							t.Fatalf("%d workers: a packet without a hash went to %d", workers, k)
						}
						continue
					}
					if w, ok := where[pk.Hash]; ok && w != k {
						t.Fatalf("%d workers: hash %#x went to %d and %d", workers, pk.Hash, w, k)
					}
					where[pk.Hash] = k
					count[k] += int(pk.Meta)
				}
				total += b.Len()
				b.Reset()
			}
			if total != burst+1 {
				t.Fatalf("%d workers: %d packets out of %d", workers, total, burst+1)
			}
		}
		for k, n := range count {
			if share := float64(n) * float64(workers) / (rounds * burst * 3 / 4); share < 0.85 || share > 1.15 {
				t.Errorf("%d workers: worker %d got %d packets (%.2f of a fair share)", workers, k, n, share)
			}
		}
	}
}

// ClassifyStage hands a chain that is not tunnel traffic (a jumbo packet for the
// host) to other whole with its NotTunnel reason, as it does such a packet in one
// frame, so that it reaches the exception path; a tunnel chain gets DropTooLong.
func TestClassifyStageChainNotTunnel(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	var b pmd.Batch
	host := loadChain(t, pool, c, innerEth(false, 3000, 0), []int{1000, 1000})
	arp := loadChain(t, pool, c, append(arpFrame(), make([]byte, 1500)...), []int{800})
	v := findVariant(t, "vxlan/outer4")
	tun := loadChain(t, pool, c, build(t, pool, c, variant{opts: v.opts, inner: innerEth(false, 1600, 0)}), []int{1000})
	for _, ch := range [][]pmd.Pkt{host, arp, tun} {
		for _, pk := range ch {
			b.Push(pk)
		}
	}
	var got []Reason
	d := NewDecapper(DecapOptions{})
	d.ClassifyStage(pool, &b, HashOptions{}, func(pk *pmd.Pkt, why Reason) { got = append(got, why); c.Free([]pmd.Pkt{*pk}) })
	want := []Reason{DropUnknownPort, DropUnknownPort, DropUnknownPort, DropBadEthertype, DropBadEthertype, DropTooLong, DropTooLong}
	if b.Len() != 0 || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("kept %d, other got %v, want %v", b.Len(), got, want)
	}
	if s := d.Stats(); s.Drops[DropUnknownPort] != 1 || s.Drops[DropBadEthertype] != 1 || s.Drops[DropTooLong] != 1 {
		t.Fatalf("stats %+v", s)
	}
	c.Flush()
	if s := pool.Stats(); s.Free != pool.Frames() {
		t.Fatalf("%d of %d frames free", s.Free, pool.Frames())
	}
}

// src may be one of dst (a receiving worker that keeps its share of the flows): the
// packets for it stay in src, in order. Before, Spread pushed them behind src's
// packets and then cut src back to those left over, losing them and their frames.
func TestSpreadToSelf(t *testing.T) {
	var src, w1 pmd.Batch
	hashTo := func(k, n int) uint32 { return uint32((uint64(k)<<32 + 1<<31) / uint64(n)) }
	for i := 0; i < 6; i++ {
		src.Push(pmd.Pkt{Meta: uint32(i), Hash: hashTo(i%2, 2), Flags: pmd.PktHashValid})
	}
	src.Push(pmd.Pkt{Meta: 6, Flags: pmd.PktHashValid | pmd.PktMore})
	src.Push(pmd.Pkt{Meta: 7})
	Spread(&src, []*pmd.Batch{&src, &w1})
	var kept, moved []uint32
	for _, pk := range src.Pkts() {
		kept = append(kept, pk.Meta)
	}
	for _, pk := range w1.Pkts() {
		moved = append(moved, pk.Meta)
	}
	if fmt.Sprint(kept) != "[0 2 4 6 7]" || fmt.Sprint(moved) != "[1 3 5]" {
		t.Fatalf("src kept %v, w1 got %v", kept, moved)
	}
}
