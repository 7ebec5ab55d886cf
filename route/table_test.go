package route

import (
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"testing"
)

// refTable is the naive reference: a linear scan over all prefixes.
type refTable map[netip.Prefix]NextHopID

func (r refTable) lookup(a netip.Addr) NextHopID {
	best, bl := NoRoute, -1
	for p, nh := range r {
		if p.Bits() > bl && p.Contains(a) {
			best, bl = nh, p.Bits()
		}
	}
	return best
}

func newTestTable(t testing.TB, nhs int) (*Table, []NextHopID) {
	t.Helper()
	tb, err := New(Options{MaxVRFs: 8, MaxNextHops: 1024})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]NextHopID, nhs)
	for i := range ids {
		ids[i], err = tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(i)})
		if err != nil {
			t.Fatal(err)
		}
	}
	return tb, ids
}

// randAddr draws addresses from a few clustered bases so prefixes overlap.
func randAddr(rng *rand.Rand, v6 bool) netip.Addr {
	if !v6 {
		bases := [...]uint32{0x0a000000, 0x0a0a0a00, 0xc0a80000, 0xffffff00, 0}
		a := bases[rng.IntN(len(bases))] ^ (rng.Uint32() >> (8 + rng.IntN(24)))
		return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	}
	var b [16]byte
	bases := [...][2]byte{{0x20, 0x01}, {0x2a, 0x00}, {0xfe, 0x80}, {0, 0}}
	bb := bases[rng.IntN(len(bases))]
	b[0], b[1] = bb[0], bb[1]
	k := rng.IntN(16)
	for i := 2 + k/2; i < 16; i++ {
		if rng.IntN(3) == 0 {
			b[i] = byte(rng.Uint32())
		}
	}
	return netip.AddrFrom16(b)
}

func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	a := randAddr(rng, v6)
	max := 32
	if v6 {
		max = 128
	}
	var l int
	switch rng.IntN(6) {
	case 0:
		l = max // host routes
	case 1:
		l = rng.IntN(4) // near-default, including /0
	default:
		l = rng.IntN(max + 1)
	}
	return netip.PrefixFrom(a, l).Masked()
}

func checkAgainst(t *testing.T, tb *Table, vrf uint32, ref refTable, rng *rand.Rand, v6 bool, n int) {
	t.Helper()
	var probed []netip.Addr
	probe := func(a netip.Addr) {
		if got, want := tb.Lookup(vrf, a), ref.lookup(a); got != want {
			t.Fatalf("lookup %v: got %d want %d", a, got, want)
		}
		probed = append(probed, a)
	}
	defer func() { checkBatch(t, tb, vrf, ref, probed, v6) }()
	for range n {
		probe(randAddr(rng, v6))
	}
	// probe each prefix's first and last address and just outside
	for p := range ref {
		probe(p.Addr())
		last := lastAddr(p)
		probe(last)
		if nx := last.Next(); nx.IsValid() {
			probe(nx)
		}
		if pv := p.Addr().Prev(); pv.IsValid() {
			probe(pv)
		}
	}
}

// checkBatch looks addrs up with LookupBatch4/6, which walk groups of
// addresses level by level, and compares each answer with the reference.
func checkBatch(t *testing.T, tb *Table, vrf uint32, ref refTable, addrs []netip.Addr, v6 bool) {
	t.Helper()
	out := make([]NextHopID, len(addrs))
	if v6 {
		a6 := make([][16]byte, len(addrs))
		for i, a := range addrs {
			a6[i] = a.As16()
		}
		if n := tb.LookupBatch6(vrf, a6, out); n != len(addrs) {
			t.Fatalf("LookupBatch6 did %d of %d", n, len(addrs))
		}
	} else {
		a4 := make([]uint32, len(addrs))
		for i, a := range addrs {
			a4[i] = binary.BigEndian.Uint32(a.AsSlice())
		}
		if n := tb.LookupBatch4(vrf, a4, out); n != len(addrs) {
			t.Fatalf("LookupBatch4 did %d of %d", n, len(addrs))
		}
	}
	for i, a := range addrs {
		if want := ref.lookup(a); out[i] != want {
			t.Fatalf("batch lookup %v (index %d of %d): got %d want %d", a, i, len(addrs), out[i], want)
		}
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func TestPropertyAgainstLinearScan(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(name))))
			tb, ids := newTestTable(t, 16)
			ref := refTable{}
			var live []netip.Prefix
			for round := range 60 {
				var b Batch
				bref := refTable{}
				for p, nh := range ref {
					bref[p] = nh
				}
				nops := 1 + rng.IntN(40)
				if round%10 == 9 {
					nops = 300
				}
				for range nops {
					if len(live) > 0 && rng.IntN(3) == 0 {
						i := rng.IntN(len(live))
						p := live[i]
						live[i] = live[len(live)-1]
						live = live[:len(live)-1]
						b.Delete(3, p)
						delete(bref, p)
						continue
					}
					p := randPrefix(rng, v6)
					nh := ids[rng.IntN(len(ids))]
					if _, ok := bref[p]; !ok {
						live = append(live, p)
					}
					bref[p] = nh
					b.Insert(3, p, nh)
				}
				if err := tb.Apply(&b); err != nil {
					t.Fatal(err)
				}
				ref = bref
				checkAgainst(t, tb, 3, ref, rng, v6, 300)
				var n int
				for p, nh := range tb.Routes(3) {
					if ref[p] != nh {
						t.Fatalf("dump %v→%d, reference %d", p, nh, ref[p])
					}
					n++
				}
				if n != len(ref) {
					t.Fatalf("dump has %d routes, reference %d", n, len(ref))
				}
			}
			// delete everything one by one: table must drain back to empty
			for _, p := range live {
				if err := tb.Delete(3, p); err != nil {
					t.Fatal(err)
				}
				delete(ref, p)
			}
			checkAgainst(t, tb, 3, ref, rng, v6, 200)
			for _, id := range ids {
				if rc := tb.RefCount(id); rc != 0 {
					t.Fatalf("next hop %d refcount %d after draining", id, rc)
				}
			}
			s := tb.Stats()
			if s.Routes4+s.Routes6 != 0 {
				t.Fatalf("stats after drain: %+v", s)
			}
			// drained structures collapse to shared uniform blocks
			if v6 && s.Bytes6 > 8<<10 || !v6 && s.Bytes4 > 64<<10 {
				t.Fatalf("drained table still uses %d/%d bytes", s.Bytes4, s.Bytes6)
			}
		})
	}
}

func TestBatchValidation(t *testing.T) {
	tb, ids := newTestTable(t, 2)
	p := netip.MustParsePrefix("10.0.0.0/8")
	var b Batch
	b.Insert(0, p, ids[0])
	b.Delete(0, netip.MustParsePrefix("10.1.0.0/16")) // absent: whole batch fails
	if err := tb.Apply(&b); !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
	if tb.Lookup(0, netip.MustParseAddr("10.0.0.1")) != NoRoute {
		t.Fatal("failed batch was partly applied")
	}
	for _, c := range []struct {
		vrf uint32
		p   netip.Prefix
		nh  NextHopID
		err error
	}{
		{99, p, ids[0], ErrBadVRF},
		{0, netip.MustParsePrefix("10.0.0.1/8"), ids[0], ErrBadPrefix},
		{0, netip.Prefix{}, ids[0], ErrBadPrefix},
		{0, p, 999, ErrNoNextHop},
		{0, p, NoRoute, ErrNoNextHop},
	} {
		if err := tb.Insert(c.vrf, c.p, c.nh); !errors.Is(err, c.err) {
			t.Errorf("Insert(%d,%v,%d) = %v, want %v", c.vrf, c.p, c.nh, err, c.err)
		}
	}
	// insert then delete within one batch
	b.Reset()
	b.Insert(1, p, ids[1])
	b.Delete(1, p)
	if err := tb.Apply(&b); err != nil {
		t.Fatal(err)
	}
	if tb.Lookup(1, netip.MustParseAddr("10.0.0.1")) != NoRoute {
		t.Fatal("route inserted and deleted in one batch is visible")
	}
	if err := tb.Insert(0, p, ids[0]); err != nil {
		t.Fatal(err)
	}
	if err := tb.DeleteNextHop(ids[0]); !errors.Is(err, ErrNextHopInUse) {
		t.Fatalf("delete in-use next hop: %v", err)
	}
}

func TestVRFIsolationAndMemory(t *testing.T) {
	tb, err := New(Options{MaxVRFs: 4096})
	if err != nil {
		t.Fatal(err)
	}
	nh, _ := tb.AddNextHop(NextHop{Kind: KindReceive})
	base := tb.Stats()
	for v := uint32(0); v < 2000; v++ {
		if err := tb.Insert(v, netip.MustParsePrefix("10.1.2.0/24"), nh); err != nil {
			t.Fatal(err)
		}
		if err := tb.Insert(v, netip.MustParsePrefix("fd00:1::/64"), nh); err != nil {
			t.Fatal(err)
		}
	}
	s := tb.Stats()
	per := (s.Bytes4 + s.Bytes6 - base.Bytes4 - base.Bytes6) / 2000
	t.Logf("VRF with one IPv4 and one IPv6 route: %d bytes", per)
	if per > 24<<10 {
		t.Fatalf("small VRF costs %d bytes", per)
	}
	if tb.Lookup(4000, netip.MustParseAddr("10.1.2.3")) != NoRoute || tb.Lookup(1, netip.MustParseAddr("10.1.2.3")) != nh {
		t.Fatal("VRF isolation")
	}
}

func TestLookupAllocs(t *testing.T) {
	tb, ids := newTestTable(t, 4)
	rng := rand.New(rand.NewPCG(7, 7))
	var b Batch
	for range 500 {
		b.Insert(0, randPrefix(rng, false), ids[rng.IntN(4)])
		b.Insert(0, randPrefix(rng, true), ids[rng.IntN(4)])
	}
	if err := tb.Apply(&b); err != nil {
		t.Fatal(err)
	}
	a4 := make([]uint32, 32)
	a6 := make([][16]byte, 32)
	for i := range a4 {
		a4[i] = rng.Uint32()
		a6[i] = randAddr(rng, true).As16()
	}
	out := make([]NextHopID, 32)
	n := testing.AllocsPerRun(100, func() {
		tb.LookupBatch4(0, a4, out)
		tb.LookupBatch6(0, a6, out)
		tb.Lookup4(0, a4[0])
		tb.Lookup6(0, &a6[0])
		tb.NextHop(out[0])
	})
	if n != 0 {
		t.Fatalf("lookups allocate %v per run", n)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestShortPrefixChurnMemory moves a short IPv4 prefix (whole chunks) and a
// short IPv6 prefix (whole mids) through many next hops, then removes them:
// the memory kept afterwards must be that of the routes left, not grow with
// every next hop the prefixes ever had.
func TestShortPrefixChurnMemory(t *testing.T) {
	tb, err := New(Options{MaxVRFs: 2, MaxNextHops: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]NextHopID, 1000)
	for i := range ids {
		if ids[i], err = tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// enough routes that IPv4 uses the directory
	for i := range 20 {
		if err := tb.Insert(0, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(100 + i)}), 8), ids[0]); err != nil {
			t.Fatal(err)
		}
		if err := tb.Insert(0, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x30, byte(i)}), 16), ids[0]); err != nil {
			t.Fatal(err)
		}
	}
	p4, p6 := netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001::/16")
	before := heapInUse()
	for _, id := range ids {
		if err := tb.Insert(0, p4, id); err != nil {
			t.Fatal(err)
		}
		if err := tb.Insert(0, p6, id); err != nil {
			t.Fatal(err)
		}
	}
	if tb.Lookup(0, netip.MustParseAddr("10.1.2.3")) != ids[len(ids)-1] || tb.Lookup(0, netip.MustParseAddr("2001::1")) != ids[len(ids)-1] {
		t.Fatal("churned prefixes lost")
	}
	if err := tb.Delete(0, p4); err != nil {
		t.Fatal(err)
	}
	if err := tb.Delete(0, p6); err != nil {
		t.Fatal(err)
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB; %+v", grew>>10, tb.Stats())
	if grew > 2<<20 {
		t.Fatalf("%d KiB kept after the churned prefixes were removed", grew>>10)
	}
}

// TestWriterScratchMemory gives many VRFs a default route (which touches
// every IPv4 directory slot) and a short IPv6 prefix over populated mids
// (which touches every chunk of those mids): the writer's per-batch
// overlays must not keep the storage of those batches, which would cost
// each VRF more than its whole published table, invisible in Stats.
func TestWriterScratchMemory(t *testing.T) {
	tb, err := New(Options{MaxVRFs: 4096})
	if err != nil {
		t.Fatal(err)
	}
	nh, _ := tb.AddNextHop(NextHop{Kind: KindReceive})
	const nv = 200
	before := heapInUse()
	for v := uint32(0); v < nv; v++ {
		var b Batch
		for i := range 16 {
			b.Insert(v, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 0, byte(i), 0}), 24), nh)
			b.Insert(v, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20 + byte(i), 1}), 64), nh)
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		b.Insert(v, netip.MustParsePrefix("0.0.0.0/0"), nh)
		b.Insert(v, netip.MustParsePrefix("2000::/3"), nh)
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	grew := int64(heapInUse()) - int64(before)
	s := tb.Stats()
	pub := int64(s.Bytes4 + s.Bytes6)
	t.Logf("heap grew %d KiB per VRF, published structures %d KiB per VRF", grew/nv>>10, pub/nv>>10)
	if grew > 3*pub/2 {
		t.Fatalf("heap grew %d KiB for %d KiB of published structures", grew>>10, pub>>10)
	}
	if tb.Lookup(nv-1, netip.MustParseAddr("192.0.2.1")) != nh || tb.Lookup(nv-1, netip.MustParseAddr("2001::1")) != nh {
		t.Fatal("routes lost")
	}
}

// TestWithdrawnRoutesMemory loads VRFs with many routes of both families,
// then withdraws all but a few: what stays must be about the size of the
// routes left, not of the routes the VRFs once had.
func TestWithdrawnRoutesMemory(t *testing.T) {
	tb, err := New(Options{MaxVRFs: 4})
	if err != nil {
		t.Fatal(err)
	}
	nh, _ := tb.AddNextHop(NextHop{Kind: KindReceive})
	const n = 40000
	p4 := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	p6 := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 1, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)}), 128)
	}
	before := heapInUse()
	for v := uint32(0); v < 2; v++ {
		var b Batch
		for i := range n {
			b.Insert(v, p4(i), nh)
			b.Insert(v, p6(i), nh)
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		b.Reset()
		for i := 10; i < n; i++ {
			b.Delete(v, p4(i))
			b.Delete(v, p6(i))
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
	}
	grew := int64(heapInUse()) - int64(before)
	s := tb.Stats()
	t.Logf("heap grew %d KiB; %+v", grew>>10, s)
	if grew > 1<<20 {
		t.Fatalf("%d KiB kept for %d routes left", grew>>10, s.Routes4+s.Routes6)
	}
	if tb.Lookup(1, p4(9).Addr()) != nh || tb.Lookup(1, p6(9).Addr()) != nh || tb.Lookup(1, p4(10).Addr()) != NoRoute {
		t.Fatal("routes left are wrong")
	}
}
