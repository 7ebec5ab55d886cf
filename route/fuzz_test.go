package route

import (
	"net/netip"
	"testing"
)

// FuzzTableOps decodes the input into a sequence of inserts, deletes and
// lookups (both families, overlapping prefixes from a few clustered bases)
// and checks every lookup against the linear-scan reference.
func FuzzTableOps(f *testing.F) {
	f.Add([]byte{0, 24, 1, 2, 3, 0, 1, 0, 8, 1, 0, 0, 0, 2, 2, 32, 1, 2, 3, 4, 0})
	f.Add([]byte{1, 64, 0x20, 1, 0xd, 0xb8, 3, 1, 128, 0x20, 1, 0xd, 0xb8, 1, 2, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 1, 4, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, ids := newTestTable(t, 4)
		var ref refTable
		var b Batch
		bref := refTable{}
		next := func(n int) []byte {
			if len(data) < n {
				data = append(data, make([]byte, n-len(data))...)
			}
			x := data[:n]
			data = data[n:]
			return x
		}
		for steps := 0; len(data) > 0 && steps < 64; steps++ {
			hdr := next(2)
			v6 := hdr[0]&1 != 0
			kind := hdr[0] >> 1 % 4
			var a netip.Addr
			if v6 {
				var x [16]byte
				copy(x[:], next(4))
				x[0], x[1] = 0x20, x[0]&3 // cluster under 2000::/14
				copy(x[12:], next(2))
				a = netip.AddrFrom16(x)
			} else {
				a = netip.AddrFrom4([4]byte(next(4)))
			}
			max := 32
			if v6 {
				max = 128
			}
			p := netip.PrefixFrom(a, int(hdr[1])%(max+1)).Masked()
			switch kind {
			case 0, 1: // insert
				nh := ids[int(hdr[1])%len(ids)]
				b.Insert(0, p, nh)
				bref[p] = nh
			case 2: // delete (only if present, else the batch would fail)
				if _, ok := bref[p]; ok {
					b.Delete(0, p)
					delete(bref, p)
				}
			case 3: // commit and look up around a
				if err := tb.Apply(&b); err != nil {
					t.Fatal(err)
				}
				b.Reset()
				ref = refTable{}
				for k, v := range bref {
					ref[k] = v
				}
				for _, q := range []netip.Addr{a, a.Next(), a.Prev(), lastAddr(p), p.Addr()} {
					if q.IsValid() && tb.Lookup(0, q) != ref.lookup(q) {
						t.Fatalf("lookup %v: got %d want %d", q, tb.Lookup(0, q), ref.lookup(q))
					}
				}
			}
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		for p := range bref {
			for _, q := range []netip.Addr{p.Addr(), lastAddr(p), lastAddr(p).Next()} {
				if q.IsValid() && tb.Lookup(0, q) != bref.lookup(q) {
					t.Fatalf("final lookup %v: got %d want %d", q, tb.Lookup(0, q), bref.lookup(q))
				}
			}
		}
	})
}
