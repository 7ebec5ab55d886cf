package routebench

import (
	"math/rand/v2"
	"net/netip"
)

type lenWeight struct {
	lo, hi int
	pct    float64
}

var dist4 = []lenWeight{
	{8, 8, 0.001}, {9, 12, 0.05}, {13, 13, 0.1}, {14, 14, 0.3}, {15, 15, 0.5}, {16, 16, 1.4},
	{17, 17, 0.8}, {18, 18, 1.3}, {19, 19, 2.5}, {20, 20, 4}, {21, 21, 4.5}, {22, 22, 9.5},
	{23, 23, 8.5}, {24, 24, 60}, {25, 31, 1.5}, {32, 32, 5},
}

var dist6 = []lenWeight{
	{28, 28, 1}, {29, 29, 3}, {30, 31, 0.5}, {32, 32, 10}, {33, 35, 0.5}, {36, 36, 4},
	{40, 40, 6}, {44, 44, 8}, {45, 45, 1}, {46, 46, 2}, {47, 47, 2}, {48, 48, 55},
	{56, 56, 3}, {64, 64, 3}, {128, 128, 1},
}

func pickLen(rng *rand.Rand, d []lenWeight) int {
	var total float64
	for _, w := range d {
		total += w.pct
	}
	x := rng.Float64() * total
	for _, w := range d {
		if x < w.pct {
			return w.lo + rng.IntN(w.hi-w.lo+1)
		}
		x -= w.pct
	}
	return d[len(d)-1].hi
}

func unicast4(rng *rand.Rand) uint32 {
	for {
		a := rng.Uint32()
		b0 := a >> 24
		if b0 == 0 || b0 >= 224 || b0 == 10 || b0 == 127 || a>>20 == 0xac1 || a>>16 == 0xc0a8 {
			continue
		}
		return a
	}
}

// Routes4 returns n distinct IPv4 prefixes.
func Routes4(n int, seed uint64) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, 4))
	pods := make([]uint32, 8192)
	for i := range pods {
		pods[i] = unicast4(rng) &^ 0xff
	}
	seen := make(map[netip.Prefix]struct{}, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		l := pickLen(rng, dist4)
		var a uint32
		if l > 24 {
			a = pods[rng.IntN(len(pods))] | rng.Uint32()&0xff
		} else {
			a = unicast4(rng)
		}
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), l).Masked()
		if _, ok := seen[p]; ok {
			continue
		}
		seen[p] = struct{}{}
		out = append(out, p)
	}
	return out
}

func rand6(rng *rand.Rand) [16]byte {
	var b [16]byte
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	b[0] = 0x20 | b[0]&0x1f // 2000::/3
	return b
}

// Routes6 returns n distinct IPv6 prefixes.
func Routes6(n int, seed uint64) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, 6))
	allocs := make([][16]byte, 30000)
	for i := range allocs {
		allocs[i] = rand6(rng)
	}
	seen := make(map[netip.Prefix]struct{}, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		l := pickLen(rng, dist6)
		b := rand6(rng)
		if l > 32 {
			al := allocs[rng.IntN(len(allocs))]
			copy(b[:4], al[:4])
			if l > 48 {
				// a /48 of this allocation that is likely to repeat
				b[4], b[5] = byte(rng.IntN(8)), byte(rng.IntN(16))
			}
		}
		p := netip.PrefixFrom(netip.AddrFrom16(b), l).Masked()
		if _, ok := seen[p]; ok {
			continue
		}
		seen[p] = struct{}{}
		out = append(out, p)
	}
	return out
}

// Addrs draws n addresses, each inside a uniformly chosen prefix of ps.
func Addrs(ps []netip.Prefix, n int, seed uint64) []netip.Addr {
	rng := rand.New(rand.NewPCG(seed, 99))
	out := make([]netip.Addr, n)
	for i := range out {
		p := ps[rng.IntN(len(ps))]
		b := p.Addr().AsSlice()
		for j := p.Bits(); j < len(b)*8; j++ {
			if rng.IntN(2) == 1 {
				b[j/8] |= 0x80 >> (j % 8)
			}
		}
		out[i], _ = netip.AddrFromSlice(b)
	}
	return out
}
