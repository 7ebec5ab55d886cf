package encap

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// naiveSum is RFC 1071's definition, word by word.
func naiveSum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add(make([]byte, 100))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := fold(sum(0, b)), naiveSum(b)
		// 0x0000 and 0xffff are the same number in ones' complement.
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("sum %#x, want %#x", got, want)
		}
	})
}

func TestChecksumAllOnes(t *testing.T) {
	b := make([]byte, 1500)
	for i := range b {
		b[i] = 0xff
	}
	for n := 0; n <= len(b); n++ {
		got, want := fold(sum(0, b[:n])), naiveSum(b[:n])
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d: %#x want %#x", n, got, want)
		}
	}
}

// onesEqual compares ones'-complement sums, whose zero has two forms.
func onesEqual(a, b uint16) bool {
	return a == b || (a == 0 && b == 0xffff) || (a == 0xffff && b == 0)
}

// mkTransport builds an IPv4 or IPv6 packet carrying proto with payload pay, every
// checksum filled in by naiveSum (the reference), followed by pad bytes of link
// padding.
func mkTransport(v6 bool, proto byte, pay []byte, pad int) []byte {
	var l4hdr int
	switch proto {
	case 6:
		l4hdr = 20
	case 17:
		l4hdr = 8
	case 1, 58:
		l4hdr = 8
	}
	l4 := make([]byte, l4hdr+len(pay))
	copy(l4[l4hdr:], pay)
	if proto == 6 || proto == 17 {
		binary.BigEndian.PutUint16(l4, 40000)
		binary.BigEndian.PutUint16(l4[2:], 443)
	} else {
		l4[0] = 8 // echo request
	}
	if proto == 6 {
		l4[12] = 5 << 4
	}
	if proto == 17 {
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	}
	var p []byte
	var pseudo []byte
	if v6 {
		p = make([]byte, 40)
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(len(l4)))
		p[6], p[7] = proto, 64
		copy(p[8:], v6A.AsSlice())
		copy(p[24:], v6B.AsSlice())
		pseudo = append(append([]byte(nil), p[8:40]...), 0, 0, byte(len(l4)>>8), byte(len(l4)), 0, 0, 0, proto)
	} else {
		p = make([]byte, 20)
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(20+len(l4)))
		p[8], p[9] = 64, proto
		copy(p[12:], v4A.AsSlice())
		copy(p[16:], v4B.AsSlice())
		binary.BigEndian.PutUint16(p[10:], ^naiveSum(p))
		pseudo = append(append([]byte(nil), p[12:20]...), 0, proto, byte(len(l4)>>8), byte(len(l4)))
	}
	at := map[byte]int{6: 16, 17: 6, 1: 2, 58: 2}[proto]
	if proto == 1 {
		pseudo = nil
	}
	c := ^naiveSum(append(append([]byte(nil), pseudo...), l4...))
	if c == 0 && proto == 17 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[at:], c)
	out := append(p, l4...)
	for i := 0; i < pad; i++ {
		out = append(out, byte(0xa5+i))
	}
	return out
}

// innerSum agrees with summing the bytes for every packet whose checksums are right.
func TestInnerSum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []byte{6, 17, 1, 58} {
			for _, n := range []int{0, 1, 7, 64, 1401} {
				for _, pad := range []int{0, 1, 6} {
					pay := make([]byte, n)
					for i := range pay {
						pay[i] = byte(i*7 + n)
					}
					p := mkTransport(v6, proto, pay, pad)
					got, ok := innerSum(p)
					want := !(v6 && proto == 1) && !(!v6 && proto == 58)
					if ok != want {
						t.Fatalf("v6 %v proto %d: ok %v", v6, proto, ok)
					}
					if ok && !onesEqual(fold(got), naiveSum(p)) {
						t.Fatalf("v6 %v proto %d len %d pad %d: %#x, bytes sum to %#x", v6, proto, n, pad, fold(got), naiveSum(p))
					}
				}
			}
		}
	}
	// What it cannot vouch for, it leaves to the caller.
	frag := mkTransport(false, 17, make([]byte, 30), 0)
	frag[6] = 0x20 // MF
	udp0 := mkTransport(false, 17, make([]byte, 30), 0)
	udp0[26], udp0[27] = 0, 0
	ext := mkTransport(true, 17, make([]byte, 30), 0)
	ext[6] = 0 // hop-by-hop options
	short := mkTransport(false, 6, nil, 0)[:30]
	for name, p := range map[string][]byte{"fragment": frag, "udp-no-checksum": udp0, "ext-header": ext, "short": short, "gre": {0x45, 0, 0, 20}} {
		if _, ok := innerSum(p); ok {
			t.Errorf("%s: innerSum vouched for it", name)
		}
	}
}

func FuzzInnerSum(f *testing.F) {
	f.Add(false, uint8(6), []byte("hello"), uint8(0))
	f.Add(true, uint8(17), []byte{0xff, 0xff, 0xff}, uint8(3))
	f.Fuzz(func(t *testing.T, v6 bool, protoSel uint8, pay []byte, pad uint8) {
		if len(pay) > 2000 {
			return
		}
		proto := []byte{6, 17, 1, 58}[protoSel%4]
		p := mkTransport(v6, proto, pay, int(pad%8))
		if got, ok := innerSum(p); ok && !onesEqual(fold(got), naiveSum(p)) {
			t.Fatalf("innerSum %#x, bytes sum to %#x", fold(got), naiveSum(p))
		}
		// Arbitrary bytes never panic it.
		innerSum(pay)
	})
}

// finishPartial turns a pseudo-header-seeded checksum into the full one.
func TestFinishPartial(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		for _, proto := range []byte{6, 17} {
			want := mkTransport(v6, proto, []byte("some payload bytes, odd length"), 2)
			p := append([]byte(nil), want...)
			hl, at := 20, map[byte]int{6: 16, 17: 6}[proto]
			var pseudo uint64
			if v6 {
				hl = 40
				pseudo = sum(uint64(proto)+uint64(len(p)-2-40), p[8:40])
			} else {
				pseudo = sum(uint64(proto)+uint64(len(p)-2-20), p[12:20])
			}
			// As a virtio driver leaves it: the folded pseudo-header sum.
			binary.BigEndian.PutUint16(p[hl+at:], fold(pseudo))
			if !finishPartial(p) {
				t.Fatal("not finished")
			}
			if !bytes.Equal(p, want) {
				t.Fatalf("v6 %v proto %d: checksum %x, want %x", v6, proto, p[hl+at:hl+at+2], want[hl+at:hl+at+2])
			}
		}
	}
	if finishPartial(mkTransport(false, 1, nil, 0)) {
		t.Error("finished an ICMP checksum")
	}
}

// TestIP4HeaderOK holds ip4HeaderOK's divisibility test to the folded checksum, on
// random headers, on headers given a right checksum, and on the corner cases.
func TestIP4HeaderOK(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h [20]byte
	check := func() {
		if got, want := ip4HeaderOK(h[:]), fold(sum(0, h[:])) == 0xffff; got != want {
			t.Fatalf("% x: ip4HeaderOK %v, folded sum says %v", h, got, want)
		}
	}
	for i := range 1 << 20 {
		for j := range h {
			h[j] = byte(rng.Uint32())
		}
		if i%2 == 0 {
			h[10], h[11] = 0, 0
			binary.BigEndian.PutUint16(h[10:], checksum(h[:]))
		}
		check()
	}
	for _, v := range []byte{0, 0xff} {
		for j := range h {
			h[j] = v
		}
		check()
	}
}
