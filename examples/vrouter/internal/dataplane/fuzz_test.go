package dataplane

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
)

// fuzzMTU is the uplink MTU of FuzzEngine's node: small, so that short frames reach
// fragmentation and "too big".
const fuzzMTU = 300

// fuzzNode is node 1 of c (v6YAML) with tables tabs; far holds the test's ends of
// its uplink, pod and TAP, in the engine's order.
func fuzzNode(t *testing.T, c *config.Config, tabs *Tables) (*pmd.Pool, *pmd.Cache, *Engine, [3]pmd.Port) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	var near, far [3]pmd.Port
	for i := range near {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		near[i], far[i] = a, b
	}
	in := c.Interfaces[0]
	ifaces := []*Iface{
		{Name: "ul", Kind: Uplink, Queues: []pmd.Port{near[0]}},
		{Name: "pod", Kind: Pod, Queues: []pmd.Port{near[1]}, VRF: VRFID(0), MAC: [6]byte(in.HW),
			IP4: []uint32{IP4(in.Addrs[0])}, Gw4: []uint32{IP4(in.Gateways[0])},
			IP6: [][16]byte{in.Addrs[1].As16()}, Gw6: [][16]byte{in.Gateways[1].As16()}},
		{Name: "t", Kind: Exception, Queues: []pmd.Port{near[2]}, VRF: VRFID(0), MAC: [6]byte{2, 0xee, 0, 0, 0, 1}},
	}
	e := New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC,
		Decap: encap.DecapOptions{Local: []netip.Addr{c.Node.Addr}}})
	e.Publish(tabs)
	return pool, pool.NewCache(64), e, far
}

// vxlanTo wraps inner in VXLAN (VNI 100) from node 2 to node 1 of nodeYAML.
func vxlanTo(inner []byte) []byte {
	f := make([]byte, 50, 50+len(inner))
	copy(f, []byte{2, 0, 0, 0, 0x50, 1, 2, 0, 0, 0, 0x50, 2, 8, 0})
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(36+len(inner)))
	copy(ip[12:], []byte{192, 168, 50, 2, 192, 168, 50, 1})
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:], 49152)
	binary.BigEndian.PutUint16(ip[22:], 4789)
	binary.BigEndian.PutUint16(ip[24:], uint16(16+len(inner)))
	ip[28] = 0x08
	ip[34] = 100 // VNI 100, in bytes 4..6 of the VXLAN header
	return append(f, inner...)
}

// noErrorDue reports whether frame is a packet no ICMP error may be sent about: an
// IPv4 ICMP error or later fragment (RFC 1122 §3.2.2, RFC 1812 §4.3.2.7), an ICMPv6
// error right after the IPv6 header (RFC 4443 §2.4(e)).
func noErrorDue(f []byte) bool {
	if len(f) >= 62 && binary.BigEndian.Uint16(f[12:]) == etherIPv6 {
		return f[20] == 58 && f[54] < 128
	}
	if len(f) < 34 || binary.BigEndian.Uint16(f[12:]) != etherIPv4 {
		return false
	}
	if binary.BigEndian.Uint16(f[20:])&0x1fff != 0 {
		return true
	}
	if f[23] != 1 {
		return false
	}
	ihl := int(f[14]&0xf) * 4
	if len(f) <= 14+ihl {
		return false
	}
	switch f[14+ihl] {
	case 3, 4, 5, 11, 12:
		return true
	}
	return false
}

// FuzzEngine runs one frame at a time through a whole engine, from the pod, the
// exception TAP or the uplink (side), in one frame or as a chain of seg-byte frames,
// and checks the frame accounting: it is received once, and then forwarded (one or
// more packets out: fragments), answered (ARP, ND) or dropped exactly once; an ICMP
// error goes out only with a drop, never about an ICMP error or a later fragment;
// fragmentation drops nothing; every packet out is counted as sent. What goes out is
// well formed: IPv4 headers verify, ICMP errors have valid checksums and fit 576
// (IPv4) or 1280 (IPv6) bytes. No frame is freed twice and every frame comes back.
func FuzzEngine(f *testing.F) {
	// One set of tables for every run (building them is slow); the engine only
	// reads them.
	c, err := config.Parse([]byte(v6YAML("{prefix: 'fd00:2::/64', remote: peer}")))
	if err != nil {
		f.Fatal(err)
	}
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, fuzzMTU)
	if err != nil {
		f.Fatal(err)
	}
	in := c.Interfaces[0]
	mac := [6]byte(in.HW)
	remote4, remote6 := netip.MustParseAddr("10.1.2.2"), netip.MustParseAddr("fd00:2::2")
	hbh := []byte{0, 0, 1, 4, 0, 0, 0, 0}
	big6 := udp6(mac, routerMAC, in.Addrs[1], remote6, 64, strings.Repeat("6", 1300))
	df := udp4(mac, routerMAC, in.Addrs[0], remote4, 64, strings.Repeat("d", 400))
	df[14+6] = 0x40
	binary.BigEndian.PutUint16(df[24:], 0)
	binary.BigEndian.PutUint16(df[24:], ipv4Checksum(df[14:34]))
	icmpErr := udp4(mac, routerMAC, in.Addrs[0], remote4, 1, "unreachable")
	icmpErr[14+9], icmpErr[34] = 1, 3
	binary.BigEndian.PutUint16(icmpErr[24:], 0)
	binary.BigEndian.PutUint16(icmpErr[24:], ipv4Checksum(icmpErr[14:34]))
	for _, s := range []struct {
		side  uint8
		seg   uint16
		frame []byte
	}{
		{1, 0, udp4(mac, routerMAC, in.Addrs[0], remote4, 64, "hello")},
		{1, 0, udp4(mac, routerMAC, in.Addrs[0], remote4, 1, "ttl")},
		{1, 0, udp4(mac, routerMAC, in.Addrs[0], in.Gateways[0], 64, "gw")},
		{1, 100, udp4(mac, routerMAC, in.Addrs[0], remote4, 64, strings.Repeat("f", 600))},
		{1, 0, df},
		{1, 0, icmpErr},
		{1, 0, udp6(mac, routerMAC, in.Addrs[1], remote6, 64, "hello6")},
		{1, 0, udp6(mac, routerMAC, in.Addrs[1], remote6, 1, "hl")},
		{1, 700, big6},
		{1, 700, withExt6(big6, 0, hbh)},
		{1, 0, nsSolicited(mac, in.Addrs[1], in.Gateways[1], true)},
		{1, 0, nsSolicited(mac, netip.IPv6Unspecified(), in.Addrs[1], false)},
		{1, 0, arpRequest(mac, in.Addrs[0], in.Gateways[0])},
		{1, 0, arpRequest(mac, in.Addrs[0], remote4)},
		{2, 0, udp4([6]byte{2, 0xee, 0, 0, 0, 1}, routerMAC, in.Gateways[0], in.Addrs[0], 64, "from host")},
		{2, 0, udp4([6]byte{2, 0xee, 0, 0, 0, 1}, routerMAC, in.Gateways[0], remote4, 1, "host ttl")},
		{0, 0, vxlanTo(udp4(routerMAC, routerMAC, remote4, in.Addrs[0], 64, "to the pod"))},
		{0, 0, vxlanTo(udp6(routerMAC, routerMAC, remote6, in.Addrs[1], 64, "to the pod"))},
		{0, 0, vxlanTo(udp4(routerMAC, routerMAC, remote4, in.Addrs[0], 1, "ttl"))},
		{0, 0, vxlanTo(udp4(routerMAC, routerMAC, remote4, remote4, 64, "hairpin"))},
	} {
		f.Add(s.side, s.seg, s.frame)
	}
	f.Fuzz(func(t *testing.T, side uint8, seg uint16, frame []byte) {
		if len(frame) == 0 || len(frame) > 4000 {
			return
		}
		pool, cache, e, far := fuzzNode(t, c, tabs)
		p := far[int(side)%3]
		if seg == 0 || int(seg) >= len(frame) || int(seg) > pool.FrameSize()-pool.Headroom() {
			if len(frame) > pool.FrameSize()-pool.Headroom() {
				return
			}
			send(t, pool, cache, p, frame)
		} else {
			if (len(frame)+int(seg)-1)/int(seg) > 16 {
				return // more segments than a port would chain
			}
			sendChain(t, pool, cache, p, frame, int(seg))
		}
		for range 3 {
			e.Poll()
		}
		var rx, tx, drops, icmp, frag uint64
		for _, in := range e.ifaces {
			s := in.Stats()
			rx += s.RxPackets
			tx += s.TxPackets
			icmp += s.ICMPSent
			frag += s.Fragmented
			for _, d := range s.Drops {
				drops += d
			}
		}
		var out uint64
		for i, fp := range far {
			got, _ := recvChains(pool, cache, fp)
			out += uint64(len(got))
			for _, g := range got {
				checkOut(t, i, g)
			}
		}
		switch {
		case rx != 1:
			t.Fatalf("received %d packets, want 1", rx)
		case tx != out:
			t.Fatalf("%d packets out, %d counted as sent", out, tx)
		case frag == 1 && (drops != 0 || out < 2 || icmp != 0):
			t.Fatalf("fragmented, with %d drops, %d packets out, %d ICMP errors", drops, out, icmp)
		case frag == 0 && drops+out-icmp != 1:
			t.Fatalf("%d drops, %d packets out of which %d ICMP errors: the frame is not accounted for once", drops, out, icmp)
		case icmp > drops || frag > 1:
			t.Fatalf("%d ICMP errors for %d drops, %d fragmented", icmp, drops, frag)
		case icmp > 0 && noErrorDue(frame):
			t.Fatalf("an ICMP error about an ICMP error or a later fragment")
		}
		if bf := pool.Stats().BadFrees; bf != 0 {
			t.Fatalf("%d bad frees", bf)
		}
		allFramesBack(t, pool, cache, []*Engine{e}, far[:]...)
		pool.Close()
	})
}

// checkOut checks a frame the engine sent out of interface i (0 the uplink, 1 the
// pod, 2 the TAP): its IPv4 header verifies, and an ICMP error from the pod's
// gateway is within its size limit and has a valid checksum.
func checkOut(t *testing.T, i int, g []byte) {
	t.Helper()
	if len(g) < 14 {
		t.Fatalf("interface %d: a %d-byte frame out", i, len(g))
	}
	switch binary.BigEndian.Uint16(g[12:]) {
	case etherIPv4:
		if len(g) < 34 {
			t.Fatalf("interface %d: a %d-byte IPv4 frame out", i, len(g))
		}
		ihl := int(g[14]&0xf) * 4
		if ihl < 20 || len(g) < 14+ihl || naiveSum(g[14:14+ihl]) != 0xffff {
			t.Fatalf("interface %d: IPv4 header %x does not verify", i, g[14:34])
		}
		if i == 1 && g[23] == 1 && [6]byte(g[6:12]) == routerMAC && binary.BigEndian.Uint32(g[26:]) == 0x0a010101 {
			if len(g)-14 > 576 || naiveSum(g[34:]) != 0xffff {
				t.Fatalf("ICMP error of %d bytes, checksum %#x", len(g)-14, naiveSum(g[34:]))
			}
		}
	case etherIPv6:
		if i == 1 && len(g) >= 62 && g[20] == 58 && g[54] < 128 {
			if len(g)-14 > 1280 || csum6(g[22:38], g[38:54], g[54:]) != 0 {
				t.Fatalf("ICMPv6 error of %d bytes, bad checksum", len(g)-14)
			}
		}
	}
}
