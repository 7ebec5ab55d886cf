package route

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// diffPrefix draws a prefix of any family, including IPv4-mapped IPv6 ones
// (which are IPv6 routes) and prefixes at the structural edges.
func diffPrefix(rng *rand.Rand) netip.Prefix {
	switch rng.IntN(8) {
	case 0: // IPv4-mapped IPv6, covering or inside ::ffff:0:0/96
		a := randAddr(rng, false).As4()
		m := netip.AddrFrom16([16]byte{10: 0xff, 11: 0xff, 12: a[0], 13: a[1], 14: a[2], 15: a[3]})
		return netip.PrefixFrom(m, 80+rng.IntN(49)).Masked()
	case 1:
		edges4 := []int{0, 1, 11, 12, 13, 23, 24, 25, 31, 32}
		return netip.PrefixFrom(randAddr(rng, false), edges4[rng.IntN(len(edges4))]).Masked()
	case 2:
		edges6 := []int{0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 63, 64, 127, 128}
		return netip.PrefixFrom(randAddr(rng, true), edges6[rng.IntN(len(edges6))]).Masked()
	case 3, 4, 5:
		return randPrefix(rng, false)
	default:
		return randPrefix(rng, true)
	}
}

// TestDifferentialVRFsFamilies applies random batches that mix VRFs and both
// families (inserts, replaces, deletes, IPv4-mapped IPv6 prefixes, /0 and
// host routes) and checks every VRF against a linear scan after each batch,
// then drains every VRF and checks the structures shrink back.
func TestDifferentialVRFsFamilies(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	tb, err := New(Options{MaxVRFs: 64, MaxNextHops: 256})
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]NextHopID, 24)
	for i := range ids {
		if ids[i], err = tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(i)}); err != nil {
			t.Fatal(err)
		}
	}
	vrfs := []uint32{0, 1, 7, 62, 63}
	ref := map[uint32]refTable{}
	for _, v := range vrfs {
		ref[v] = refTable{}
	}
	rounds := 150
	if testing.Short() {
		rounds = 80
	}
	for round := range rounds {
		var b Batch
		next := map[uint32]refTable{}
		for v, r := range ref {
			next[v] = refTable{}
			for p, nh := range r {
				next[v][p] = nh
			}
		}
		nops := 1 + rng.IntN(30)
		if round%15 == 14 {
			nops = 200
		}
		for range nops {
			v := vrfs[rng.IntN(len(vrfs))]
			r := next[v]
			if len(r) > 0 && rng.IntN(3) == 0 {
				for p := range r {
					b.Delete(v, p)
					delete(r, p)
					break
				}
				continue
			}
			p := diffPrefix(rng)
			nh := ids[rng.IntN(len(ids))]
			b.Insert(v, p, nh)
			r[p] = nh
		}
		// a bad change anywhere in the batch leaves every VRF unchanged
		if round%7 == 3 {
			bad := b
			bad.ops = append([]batchOp(nil), b.ops...)
			a := randAddr(rng, rng.IntN(2) == 0)
			hostBits := netip.PrefixFrom(a, 0)
			if a.Is4() && a.As4()[3]&1 == 0 || !a.Is4() && a.As16()[15]&1 == 0 {
				hostBits = netip.PrefixFrom(a.Next(), 8)
			}
			bad.Insert(vrfs[0], hostBits, ids[0])
			if err := tb.Apply(&bad); hostBits != hostBits.Masked() && !errors.Is(err, ErrBadPrefix) {
				t.Fatalf("prefix with host bits %v: %v", hostBits, err)
			} else if hostBits == hostBits.Masked() && err != nil {
				t.Fatal(err)
			}
			if hostBits != hostBits.Masked() {
				for _, v := range vrfs {
					checkFamilies(t, tb, v, ref[v], rng, 20)
				}
			} else {
				// it was valid after all: apply to the reference too
				next[vrfs[0]][hostBits] = ids[0]
				ref = next
				continue
			}
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		ref = next
		for _, v := range vrfs {
			checkFamilies(t, tb, v, ref[v], rng, 50)
			// the IPv4 table never answers for mapped addresses and back
			for p := range ref[v] {
				a := p.Addr()
				if a.Is4() {
					m := netip.AddrFrom16(a.As16())
					if got, want := tb.Lookup(v, m), ref[v].lookup(m); got != want {
						t.Fatalf("vrf %d mapped %v: got %d want %d", v, m, got, want)
					}
				} else if a.Is4In6() {
					u := a.Unmap()
					if got, want := tb.Lookup(v, u), ref[v].lookup(u); got != want {
						t.Fatalf("vrf %d unmapped %v: got %d want %d", v, u, got, want)
					}
				}
			}
			n := 0
			for p, nh := range tb.Routes(v) {
				if ref[v][p] != nh {
					t.Fatalf("vrf %d dump %v→%d, reference %d", v, p, nh, ref[v][p])
				}
				n++
			}
			if n != len(ref[v]) {
				t.Fatalf("vrf %d dump has %d routes, reference %d", v, n, len(ref[v]))
			}
		}
	}
	// drain all VRFs in one batch per VRF
	for _, v := range vrfs {
		var b Batch
		for p := range ref[v] {
			b.Delete(v, p)
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		ref[v] = refTable{}
		checkFamilies(t, tb, v, ref[v], rng, 50)
	}
	for _, id := range ids {
		if rc := tb.RefCount(id); rc != 0 {
			t.Fatalf("next hop %d refcount %d after draining", id, rc)
		}
	}
	s := tb.Stats()
	t.Logf("drained: %+v", s)
	if s.Routes4+s.Routes6 != 0 || s.Bytes4 > len(vrfs)*64 || s.Bytes6 > len(vrfs)*8<<10 {
		t.Fatalf("stats after drain: %+v", s)
	}
}

// checkFamilies is checkAgainst for a reference holding both families.
func checkFamilies(t *testing.T, tb *Table, vrf uint32, ref refTable, rng *rand.Rand, n int) {
	t.Helper()
	r4, r6 := refTable{}, refTable{}
	for p, nh := range ref {
		if p.Addr().Is4() {
			r4[p] = nh
		} else {
			r6[p] = nh
		}
	}
	checkAgainst(t, tb, vrf, r4, rng, false, n)
	checkAgainst(t, tb, vrf, r6, rng, true, n)
}
