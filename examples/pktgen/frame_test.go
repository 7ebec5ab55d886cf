package main

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
)

func hdrSum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}

// TestFrameReuse: pktgen writes each frame into a pool buffer that held an
// earlier frame (its own, completed, or one the socket received). The IPv4 header
// must be valid whatever the buffer held.
func TestFrameReuse(t *testing.T) {
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	dst, _ := net.ParseMAC("02:00:00:00:00:02")
	s, d := netip.MustParseAddr("10.1.1.2"), netip.MustParseAddr("10.1.2.2")
	b := make([]byte, 64)
	for i := 1; i <= 2; i++ { // the same buffer, reused as a recycled frame is
		frame(b, src, dst, s, d, 40000)
		if sum := hdrSum(b[14:34]); sum != 0xffff {
			t.Errorf("use %d: IPv4 header checksum %#04x invalid (header sums to %#04x)", i, binary.BigEndian.Uint16(b[24:]), sum)
		}
	}
	// A buffer that held a received frame.
	for i := range b {
		b[i] = 0xff
	}
	frame(b, src, dst, s, d, 40000)
	ip := b[14:]
	if off := binary.BigEndian.Uint16(ip[6:]) & 0x1fff; off != 0 {
		t.Errorf("fragment offset %d from stale bytes", off)
	}
	if ck := binary.BigEndian.Uint16(ip[26:]); ck != 0 {
		t.Errorf("UDP checksum %#04x from stale bytes (neither 0 nor computed)", ck)
	}
	if hdrSum(ip[:20]) != 0xffff {
		t.Errorf("IPv4 header checksum invalid over a stale buffer")
	}
}
