package dataplane

import (
	"encoding/binary"
	"testing"
)

func ipv4Frame(ttl byte) []byte {
	f := make([]byte, 14+20+8)
	binary.BigEndian.PutUint16(f[12:], etherIPv4)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 28)
	ip[8] = ttl
	ip[9] = 17
	copy(ip[12:], []byte{10, 1, 1, 2, 10, 1, 2, 2})
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	return f
}

func TestDecTTL4(t *testing.T) {
	for ttl := 2; ttl <= 255; ttl++ {
		f := ipv4Frame(byte(ttl))
		ip := f[14:34]
		if !decTTL4(ip) || ip[8] != byte(ttl-1) {
			t.Fatalf("ttl %d", ttl)
		}
		got := binary.BigEndian.Uint16(ip[10:])
		binary.BigEndian.PutUint16(ip[10:], 0)
		if want := ipv4Checksum(ip); got != want {
			t.Fatalf("ttl %d: incremental checksum %#04x, full %#04x", ttl, got, want)
		}
	}
	f := ipv4Frame(1)
	if decTTL4(f[14:34]) || f[14+8] != 1 {
		t.Fatal("TTL 1 decremented")
	}
}

func TestParse(t *testing.T) {
	var h hdr
	f := ipv4Frame(64)
	if !parse(f, len(f), &h) || h.src4 != 0x0a010102 || h.dst4 != 0x0a010202 || h.proto != 17 || h.l4 != 34 {
		t.Fatalf("%+v", h)
	}
	for n := 0; n < len(f); n++ {
		if parse(f[:n], n, &h) {
			t.Fatalf("truncated to %d parsed", n)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(ipv4Frame(64))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h hdr
		if parse(b, len(b), &h) && h.ethertype != etherARP && h.l4 > len(b) {
			t.Fatalf("l4 %d beyond %d bytes", h.l4, len(b))
		}
	})
}

func TestDecHopLimit6(t *testing.T) {
	ip := make([]byte, 40)
	ip[7] = 2
	if !decHopLimit6(ip) || ip[7] != 1 || decHopLimit6(ip) || ip[7] != 1 {
		t.Fatalf("hop limit %d", ip[7])
	}
}

// TestParseIPv4Checksum: an IPv4 header whose checksum fails is refused (RFC 1812
// §5.2.2), options included in the sum; a valid one, with options, parses.
func TestParseIPv4Checksum(t *testing.T) {
	var h hdr
	for ttl := 1; ttl <= 255; ttl += 17 {
		f := ipv4Frame(byte(ttl))
		if !parse(f, len(f), &h) {
			t.Fatalf("ttl %d: valid header refused", ttl)
		}
		for _, at := range []int{8, 10, 11, 19} {
			g := append([]byte(nil), f...)
			g[14+at] ^= 0x40
			if parse(g, len(g), &h) {
				t.Fatalf("ttl %d: header with byte %d flipped parsed", ttl, at)
			}
		}
	}
	// 24 bytes: a 4-byte option (NOP x4) in the sum.
	f := make([]byte, 14+24+8)
	binary.BigEndian.PutUint16(f[12:], etherIPv4)
	ip := f[14:]
	ip[0] = 0x46
	binary.BigEndian.PutUint16(ip[2:], 32)
	ip[8], ip[9] = 64, 17
	copy(ip[20:24], []byte{1, 1, 1, 1})
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:24]))
	if !parse(f, len(f), &h) {
		t.Fatal("valid header with options refused")
	}
	ip[22] = 0
	if parse(f, len(f), &h) {
		t.Fatal("header with a changed option parsed")
	}
}

// TestDecTTL4AllChecksums: the checksum decTTL4 leaves is the one computed anew, for
// every checksum a header can arrive with, the 0xfeff that ends at 0x0000 included
// (RFC 1624 §3: the incremental update must not yield 0xffff there).
func TestDecTTL4AllChecksums(t *testing.T) {
	for w := 0; w < 0x10000; w++ {
		f := ipv4Frame(64)
		ip := f[14:34]
		binary.BigEndian.PutUint16(ip[12:], uint16(w)) // vary the sum through the source
		binary.BigEndian.PutUint16(ip[10:], 0)
		binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip))
		in := binary.BigEndian.Uint16(ip[10:])
		decTTL4(ip)
		got := binary.BigEndian.Uint16(ip[10:])
		binary.BigEndian.PutUint16(ip[10:], 0)
		if want := ipv4Checksum(ip); got != want {
			t.Fatalf("checksum %#04x: %#04x after decTTL4, %#04x computed anew", in, got, want)
		}
	}
}
