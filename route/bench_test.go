package route

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

func BenchmarkApplySingle(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		b.Run(name, func(b *testing.B) {
			tb, ids := newTestTable(b, 8)
			rng := rand.New(rand.NewPCG(1, 2))
			ps := make([]netip.Prefix, 4096)
			for i := range ps {
				for {
					ps[i] = randPrefix(rng, v6)
					if ps[i].Bits() >= 16 {
						break
					}
				}
			}
			in := make(map[netip.Prefix]bool)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p := ps[i%len(ps)]
				if in[p] {
					tb.Delete(0, p)
				} else {
					tb.Insert(0, p, ids[i%8])
				}
				in[p] = !in[p]
			}
		})
	}
}
