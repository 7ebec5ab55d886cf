package main

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"
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

func TestPacer(t *testing.T) {
	p := &pacer{rate: 1e6} // one packet a microsecond
	if n, w := p.allow(0, 10*time.Microsecond, 64); n != 10 || w != 0 {
		t.Errorf("10 µs in, none sent: allow = %d, %v; want 10, 0", n, w)
	}
	if n, w := p.allow(100, 50*time.Microsecond, 64); n != 0 || w != 51*time.Microsecond {
		t.Errorf("ahead by 50: allow = %d, %v; want 0 and a wait of 51 µs", n, w)
	}
	if n, w := p.allow(100, 100*time.Microsecond, 64); n != 0 || w != 20*time.Microsecond {
		t.Errorf("on time: allow = %d, %v; want 0 and the least wait, 20 µs", n, w)
	}
	if n, w := p.allow(100, 120*time.Microsecond, 64); n != 20 || w != 0 || p.skipped != 0 {
		t.Errorf("behind by 20: allow = %d, %v (%d skipped); want 20, 0, none skipped", n, w, p.skipped)
	}
	if n, w := (&pacer{}).allow(1<<40, 0, 64); n != 64 || w != 0 {
		t.Errorf("unpaced: allow = %d, %v; want 64, 0", n, w)
	}
}

// TestPacerLag: a pacer that fell far behind sends at most one burst above its
// schedule and skips the rest of the slots it missed. Before, it sent every missed
// packet at once: 1 ms late at 1 Mpps, 1000 frames back to back.
func TestPacerLag(t *testing.T) {
	p := &pacer{rate: 1e6}
	sent := uint64(0)
	n, _ := p.allow(sent, time.Millisecond, 1000)
	if n != maxLag || p.skipped != 1000-maxLag {
		t.Fatalf("1 ms late: allow = %d (%d skipped); want %d (%d skipped)", n, p.skipped, maxLag, 1000-maxLag)
	}
	sent += uint64(n)
	// Caught up: the schedule goes on from there, a packet a microsecond.
	if n, w := p.allow(sent, time.Millisecond, 1000); n != 0 || w != 20*time.Microsecond {
		t.Errorf("right after: allow = %d, %v; want 0 and the least wait, 20 µs", n, w)
	}
	if n, _ := p.allow(sent, time.Millisecond+10*time.Microsecond, 1000); n != 10 {
		t.Errorf("10 µs later: allow = %d; want 10", n)
	}
	// Over a whole run, what went plus what was skipped is what the rate allowed.
	total := sent
	for el := time.Millisecond; el <= 20*time.Millisecond; el += 3 * time.Millisecond {
		n, _ := p.allow(total, el, 1000)
		total += uint64(n)
	}
	if total+p.skipped != 19000 {
		t.Errorf("sent %d, skipped %d by 19 ms at 1 Mpps; want them to add up to 19000", total, p.skipped)
	}
}

// TestSleepEnds: a pacing wait ends with the context. At -rate 0.2 the first packet
// is due after 5 s, and pktgen -duration 1s took those 5 s, and a Ctrl-C waited them
// out (at -rate 1e-6, eleven days).
func TestSleepEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	start := time.Now()
	sleep(ctx, time.NewTimer(0), time.Hour)
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("sleep outlasted its context by %v", el)
	}
}

// TestFramePayloadCleared: the frames pktgen writes are recycled pool buffers, some of
// which held frames the socket received. Their payload must not carry those bytes
// (other hosts' traffic) back out onto the wire, nor differ from frame to frame.
func TestFramePayloadCleared(t *testing.T) {
	src, _ := net.ParseMAC("02:00:00:00:00:01")
	dst, _ := net.ParseMAC("02:00:00:00:00:02")
	s, d := netip.MustParseAddr("10.1.1.2"), netip.MustParseAddr("10.1.2.2")
	for _, size := range []int{60, 64, 1514} {
		b := make([]byte, size)
		for i := range b {
			b[i] = 0xa5 // a received frame's bytes
		}
		frame(b, src, dst, s, d, 40000)
		for i, c := range b[14+28:] {
			if c != 0 {
				t.Errorf("size %d: payload byte %d is %#02x, left from the buffer's last frame", size, i, c)
				break
			}
		}
		ip := b[14:]
		if got := int(binary.BigEndian.Uint16(ip[2:])); got != size-14 {
			t.Errorf("size %d: IPv4 total length %d, want %d", size, got, size-14)
		}
		if got := int(binary.BigEndian.Uint16(ip[24:])); got != size-14-20 {
			t.Errorf("size %d: UDP length %d, want %d", size, got, size-14-20)
		}
	}
}
