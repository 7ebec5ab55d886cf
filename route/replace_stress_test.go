package route

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// replaceSite is a prefix whose route a writer keeps replacing between two next
// hops, and an address only it (of all the sites) covers most specifically.
type replaceSite struct {
	p      netip.Prefix
	probe  netip.Addr
	a, b   NextHopID
	probe4 uint32
	probe6 [16]byte
}

// flipBit returns a with bit i (MSB first) inverted.
func flipBit(a netip.Addr, i int) netip.Addr {
	b := a.As16()
	off := 0
	if a.Is4() {
		off = 12
	}
	b[off+i/8] ^= 0x80 >> (i % 8)
	if a.Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

// TestStressReplace has a writer replace routes in place (one next hop for another,
// by Insert over the route or by Delete and Insert in one batch) while it churns
// other routes, in VRFs that cross the small-list/directory thresholds, with
// prefixes at every structural edge (/0, the directory, chunk and group
// boundaries, host routes), and changes an ECMP group's members. Readers assert that every lookup of a replaced prefix's
// probe returns its old or its new next hop: never no route, never another; and that a group's snapshot selects only its own
// members.
func TestStressReplace(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { stressReplace(t, v6) })
	}
}

func stressReplace(t *testing.T, v6 bool) {
	steps := 3000
	if raceEnabled || testing.Short() {
		steps = 1000
	}
	tb, err := New(Options{MaxVRFs: 4, MaxNextHops: 4096})
	if err != nil {
		t.Fatal(err)
	}
	lens := []int{0, 1, 8, 11, 12, 13, 16, 20, 23, 24, 25, 31, 32}
	base := netip.MustParseAddr("10.20.30.40")
	if v6 {
		lens = []int{0, 1, 7, 8, 9, 15, 16, 17, 23, 24, 25, 32, 64, 120, 127, 128}
		base = netip.MustParseAddr("2001:db8:1234:5678:9abc:def0:1357:9bdf")
	}
	// VRF 1 holds every site; VRF 2 a few, plus churn that moves it across the
	// small-list thresholds.
	vrfSites := map[uint32][]int{1: {}, 2: {}}
	var sites []replaceSite
	for i, l := range lens {
		s := replaceSite{p: netip.PrefixFrom(base, l).Masked(), probe: base}
		if l < base.BitLen() {
			s.probe = flipBit(base, l)
		}
		for _, id := range []*NextHopID{&s.a, &s.b} {
			if *id, err = tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(i)}); err != nil {
				t.Fatal(err)
			}
		}
		if v6 {
			s.probe6 = s.probe.As16()
		} else {
			b := s.probe.As4()
			s.probe4 = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		}
		sites = append(sites, s)
		vrfSites[1] = append(vrfSites[1], i)
		if i%3 == 0 {
			vrfSites[2] = append(vrfSites[2], i)
		}
	}
	// Churn prefixes: none may cover a probe (they would change its answer).
	rng := rand.New(rand.NewPCG(7, 11))
	var noise []netip.Prefix
	seen := map[netip.Prefix]bool{}
	for len(noise) < 64 {
		p := randPrefix(rng, v6)
		if p.Bits() == 0 || seen[p] {
			continue
		}
		ok := true
		for _, s := range sites {
			if p.Contains(s.probe) || p == s.p {
				ok = false
				break
			}
		}
		if ok {
			seen[p] = true
			noise = append(noise, p)
		}
	}
	noiseNH, err := tb.AddNextHop(NextHop{Kind: KindDiscard})
	if err != nil {
		t.Fatal(err)
	}
	cur := map[uint32][]NextHopID{}
	var b Batch
	for vrf, idx := range vrfSites {
		cur[vrf] = make([]NextHopID, len(sites))
		for _, i := range idx {
			b.Insert(vrf, sites[i].p, sites[i].a)
			cur[vrf][i] = sites[i].a
		}
	}
	if err := tb.Apply(&b); err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var bad atomic.Int64
	var lookups atomic.Int64
	var mu sync.Mutex
	var reports []string
	report := func(format string, args ...any) {
		if bad.Add(1) <= 5 {
			mu.Lock()
			reports = append(reports, fmt.Sprintf(format, args...))
			mu.Unlock()
		}
	}
	check := func(vrf uint32, i int, got NextHopID, how string) {
		if s := &sites[i]; got != s.a && got != s.b {
			report("vrf %d %s %v (route %v): %s returned %d, want %d or %d", vrf, map[bool]string{false: "v4", true: "v6"}[v6], s.probe, s.p, how, got, s.a, s.b)
		}
	}
	// An ECMP group whose members the writer keeps changing: a reader's snapshot
	// must only ever select its own members.
	var members []NextHopID
	for i := range 4 {
		id, err := tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(100 + i)})
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, id)
	}
	group, err := tb.AddNextHop(NextHop{Kind: KindECMP, Members: members})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for h := uint32(0); !stop.Load(); h += 0x9e3779b9 {
			nh := tb.NextHop(group)
			m := nh.Select(h)
			if !slices.Contains(nh.Members, m) || tb.NextHop(m) == nil {
				report("ECMP group %d with members %v selected %d", group, nh.Members, m)
			}
			if h&0xff00 == 0 {
				runtime.Gosched()
			}
		}
	}()
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func(batch bool) {
			defer wg.Done()
			a4 := make([]uint32, len(sites))
			a6 := make([][16]byte, len(sites))
			out := make([]NextHopID, len(sites))
			for i := range sites {
				a4[i], a6[i] = sites[i].probe4, sites[i].probe6
			}
			for n := 0; !stop.Load(); n++ {
				for vrf, idx := range vrfSites {
					if batch {
						if v6 {
							tb.LookupBatch6(vrf, a6, out)
						} else {
							tb.LookupBatch4(vrf, a4, out)
						}
						for _, i := range idx {
							check(vrf, i, out[i], "LookupBatch")
						}
						continue
					}
					for _, i := range idx {
						if v6 {
							check(vrf, i, tb.Lookup6(vrf, &a6[i]), "Lookup6")
						} else {
							check(vrf, i, tb.Lookup4(vrf, a4[i]), "Lookup4")
						}
					}
				}
				lookups.Add(1)
				if n%64 == 0 {
					runtime.Gosched()
				}
			}
		}(r == 1)
	}
	present := map[uint32]map[netip.Prefix]bool{1: {}, 2: {}}
	for step := 0; step < steps && bad.Load() == 0; step++ {
		b.Reset()
		vrf := uint32(1 + rng.IntN(2))
		idx := vrfSites[vrf]
		for k := 1 + rng.IntN(3); k > 0; k-- {
			i := idx[rng.IntN(len(idx))]
			s := &sites[i]
			next := s.a
			if cur[vrf][i] == s.a {
				next = s.b
			}
			if rng.IntN(3) == 0 {
				b.Delete(vrf, s.p)
			}
			b.Insert(vrf, s.p, next)
			cur[vrf][i] = next
		}
		// churn: in VRF 2 up to 20 routes besides its sites, across both thresholds
		for k := rng.IntN(6); k > 0; k-- {
			p := noise[rng.IntN(len(noise))]
			if vrf == 2 && !present[vrf][p] && len(present[vrf]) >= 20 {
				continue
			}
			if present[vrf][p] {
				b.Delete(vrf, p)
				delete(present[vrf], p)
			} else {
				b.Insert(vrf, p, noiseNH)
				present[vrf][p] = true
			}
		}
		var ms []NextHopID
		for _, m := range members {
			if rng.IntN(2) == 0 {
				ms = append(ms, m)
			}
		}
		if len(ms) == 0 {
			ms = members[:1]
		}
		if err := tb.SetNextHop(group, NextHop{Kind: KindECMP, Members: ms}); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		if err := tb.Apply(&b); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatal(err)
		}
		// the writer's own view must be exact
		for _, i := range idx {
			if got := tb.Lookup(vrf, sites[i].probe); got != cur[vrf][i] {
				report("after step %d: vrf %d %v (route %v) = %d, want %d", step, vrf, sites[i].probe, sites[i].p, got, cur[vrf][i])
			}
		}
		if step%16 == 0 {
			runtime.Gosched()
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d steps, %d reader rounds", steps, lookups.Load())
	for _, r := range reports {
		t.Error(r)
	}
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d invalid lookups", n)
	}
}
