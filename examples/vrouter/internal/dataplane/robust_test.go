package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
)

// v6YAML is node 1 of nodeYAML with an IPv6 address and gateway for its pod, and
// routes (YAML flow mappings, one per line) added to its VRF.
func v6YAML(routes ...string) string {
	y := strings.Replace(fmt.Sprintf(nodeYAML, 1, 2, "vxlan"), "ips: [10.1.1.2]", "ips: [10.1.1.2, 'fd00:1::2']", 1)
	y = strings.Replace(y, "gateway: [10.1.1.1]", "gateway: [10.1.1.1, 'fd00:1::1']", 1)
	for _, r := range routes {
		y = strings.Replace(y, "      - {prefix: 10.9.0.0/16, action: discard}\n", "      - {prefix: 10.9.0.0/16, action: discard}\n      - "+r+"\n", 1)
	}
	return y
}

// publishV6 gives v6Node's engine e the tables of v6YAML(routes...).
func publishV6(t *testing.T, e *Engine, routes ...string) {
	t.Helper()
	y := v6YAML(routes...)
	for _, r := range routes {
		if !strings.Contains(y, r) {
			t.Fatalf("route %s not added to the configuration", r)
		}
	}
	c, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
}

// v6Node is one node whose pod has an IPv4 and an IPv6 address.
func v6Node(t *testing.T) (*pmd.Pool, *pmd.Cache, *Engine, pmd.Port, pmd.Port, *config.Config) {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(v6YAML("")))
	if err != nil {
		t.Fatal(err)
	}
	ulA, ulB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	podA, podB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	tapA, tapB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	in := c.Interfaces[0]
	ifaces := []*Iface{
		{Name: "ul", Kind: Uplink, Queues: []pmd.Port{ulA}},
		{Name: "pod", Kind: Pod, Queues: []pmd.Port{podA}, VRF: VRFID(0), MAC: [6]byte(in.HW),
			IP4: []uint32{IP4(in.Addrs[0])}, Gw4: []uint32{IP4(in.Gateways[0])},
			IP6: [][16]byte{in.Addrs[1].As16()}, Gw6: [][16]byte{in.Gateways[1].As16()}},
		{Name: "t", Kind: Exception, Queues: []pmd.Port{tapA}, VRF: VRFID(0), MAC: [6]byte{2, 0xee, 0, 0, 0, 1}},
	}
	e := New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC,
		Decap: encap.DecapOptions{Local: []netip.Addr{c.Node.Addr}}})
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
	cache := pool.NewCache(64)
	t.Cleanup(func() {
		e.Close()
		for _, p := range []pmd.Port{ulA, ulB, podA, podB, tapA, tapB} {
			p.Close()
		}
		cache.Flush()
		pool.Close()
	})
	return pool, cache, e, podB, tapB, c
}

func csum6(src, dst []byte, msg []byte) uint16 {
	var s uint32
	s = sum16(s, src)
	s = sum16(s, dst)
	s += uint32(len(msg)) + 58
	s = sum16(s, msg)
	return ^fold16(s)
}

// nsSolicited is ns to target's solicited-node group (ff02::1:ffXX:XXXX, RFC 4291
// §2.7.1) and its multicast MAC (33:33:ff:XX:XX:XX, RFC 2464 §7), as a host sends it.
func nsSolicited(mac [6]byte, src, target netip.Addr, withSLLA bool) []byte {
	o := target.As16()
	sn := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: o[13], 14: o[14], 15: o[15]})
	return ns(mac, [6]byte{0x33, 0x33, 0xff, o[13], o[14], o[15]}, src, sn, target, withSLLA)
}

// ns builds a neighbour solicitation from mac/src for target, to dst.
func ns(mac [6]byte, ethDst [6]byte, src, dst, target netip.Addr, withSLLA bool) []byte {
	plen := 24
	if withSLLA {
		plen += 8
	}
	f := make([]byte, 14+40+plen)
	copy(f, ethDst[:])
	copy(f[6:], mac[:])
	binary.BigEndian.PutUint16(f[12:], etherIPv6)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(plen))
	ip[6], ip[7] = 58, 255
	s, d := src.As16(), dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	m := ip[40:]
	m[0] = 135
	tg := target.As16()
	copy(m[8:], tg[:])
	if withSLLA {
		m[24], m[25] = 1, 1
		copy(m[26:], mac[:])
	}
	binary.BigEndian.PutUint16(m[2:], csum6(ip[8:24], ip[24:40], m))
	return f
}

// TestDADOwnAddress: a pod's duplicate address detection probe for its own
// address must not be answered (the pod would then see its address as a duplicate
// and never use it).
func TestDADOwnAddress(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	in := cfg.Interfaces[0]
	own := in.Addrs[1]
	send(t, pool, c, pod, nsSolicited([6]byte(in.HW), netip.IPv6Unspecified(), own, false))
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("the pod's DAD probe for its own address %v was answered: NA %x", own, got[0])
	}
}

func udp6(src, dst [6]byte, sip, dip netip.Addr, hl byte, payload string) []byte {
	f := make([]byte, 14+40+8+len(payload))
	copy(f, dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], etherIPv6)
	ip := f[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(8+len(payload)))
	ip[6], ip[7] = 17, hl
	s, d := sip.As16(), dip.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	binary.BigEndian.PutUint16(ip[44:], uint16(8+len(payload)))
	copy(ip[48:], payload)
	return f
}

type lcg uint64

func (r *lcg) next() uint32 {
	*r = *r*6364136223846793005 + 1442695040888963407
	return uint32(*r >> 33)
}

// TestRobustRandomFrames sends mutated frames from every side of two nodes and checks
// that nothing panics, nothing is freed twice, every received packet is sent or
// counted as dropped, and every frame comes back.
func TestRobustRandomFrames(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		t.Run(et, func(t *testing.T) {
			pool, c, n1, n2 := twoNodes(t, et)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			mac1 := [6]byte(p1.HW)
			bases := [][]byte{
				udp4(mac1, routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "hello world, 0123456789"),
				udp4(mac1, routerMAC, p1.Addrs[0], p1.Gateways[0], 2, "gw"),
				udp6(mac1, routerMAC, netip.MustParseAddr("fd00::1"), netip.MustParseAddr("fd00::2"), 3, "v6 payload"),
				ns(mac1, [6]byte{0x33, 0x33, 0xff, 0, 0, 1}, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1:ff00:1"), netip.MustParseAddr("fd00::1"), true),
			}
			bases = append(bases, arpRequest(mac1, p1.Addrs[0], p1.Gateways[0]))
			r := lcg(1)
			ports := []pmd.Port{n1.pod, n1.host, n2.eng.ifaces[0].Queues[0]} // far ends into node 1 (uplink: node 2's end)
			drain := func() {
				for i := 0; i < 40; i++ {
					n1.eng.Poll()
					n2.eng.Poll()
				}
				for _, p := range []pmd.Port{n1.pod, n1.host, n2.pod, n2.host} {
					for len(recv(pool, c, p)) > 0 {
					}
				}
			}
			for iter := 0; iter < 3000; iter++ {
				b := append([]byte(nil), bases[r.next()%uint32(len(bases))]...)
				for k := r.next() % 4; k > 0; k-- {
					b[r.next()%uint32(len(b))] = byte(r.next())
				}
				if r.next()%4 == 0 {
					b = b[:r.next()%uint32(len(b))+1]
				}
				p := ports[r.next()%uint32(len(ports))]
				if r.next()%5 == 0 && len(b) > 2 {
					sendChain(t, pool, c, p, b, int(r.next()%uint32(len(b)-1))+1)
				} else {
					send(t, pool, c, p, b)
				}
				if iter%16 == 0 {
					drain()
				}
			}
			drain()
			for i, n := range []*node{n1, n2} {
				var rx, tx, dr uint64
				for _, in := range n.eng.ifaces {
					s := in.Stats()
					rx += s.RxPackets
					tx += s.TxPackets
					for _, d := range s.Drops {
						dr += d
					}
				}
				if rx != tx+dr {
					t.Errorf("node %d: rx %d != tx %d + drops %d", i+1, rx, tx, dr)
				}
			}
			if bf := pool.Stats().BadFrees; bf != 0 {
				t.Fatalf("%d bad frees", bf)
			}
			allFramesBack(t, pool, c, []*Engine{n1.eng, n2.eng}, n1.pod, n1.host, n2.pod, n2.host)
		})
	}
}

// TestRobustReloadRace publishes freshly built tables in a loop while two workers
// forward (run with -race).
func TestRobustReloadRace(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul := uplinkRings(t, pool, 2)
	n1 := newMQNode(t, pool, 1, "vxlan", ul[0], 2, 2, -1)
	n2 := newMQNode(t, pool, 2, "vxlan", ul[1], 1, 2, -1)
	c := pool.NewCache(64)
	stop := runWorkers(n1.eng, n2.eng)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < 200; i++ {
			tabs, err := Build(n1.cfg, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
			if err != nil {
				panic(err)
			}
			n1.eng.Publish(tabs)
		}
	}()
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	got := 0
	for i := 0; i < 2000; i++ {
		send(t, pool, c, n1.pod[i%2], udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "r"))
		got += len(recv(pool, c, n2.pod[0]))
	}
	<-done
	time.Sleep(50 * time.Millisecond)
	got += len(recv(pool, c, n2.pod[0]))
	stop()
	for k := len(recv(pool, c, n2.pod[0])); k > 0; k = len(recv(pool, c, n2.pod[0])) {
		got += k
	}
	// Every packet arrives, or is counted as refused by the receiving pod's ring
	// (the test drains it no faster than the machine lets it): none is lost to a
	// reload.
	full := 0
	for _, n := range []*mqNode{n1, n2} {
		for _, in := range n.eng.ifaces {
			s := in.Stats()
			t.Logf("%s: rx %d tx %d drops %v", in.Name, s.RxPackets, s.TxPackets, s.Drops)
			for r, c := range s.Drops {
				if Reason(r) == DropTxFull && n == n2 && in.Kind == Pod {
					full += int(c)
				} else if c != 0 {
					t.Errorf("%s: %d drops for reason %d", in.Name, c, r)
				}
			}
		}
	}
	if got+full != 2000 {
		t.Errorf("received %d of 2000 across reloads, %d refused by a full ring", got, full)
	}
	ports := append(append([]pmd.Port{}, n1.pod...), n2.pod...)
	allFramesBack(t, pool, c, []*Engine{n1.eng, n2.eng}, ports...)
}

// TestRobustRandomTooBig drives the fragmentation and ICMP paths with mutated large
// frames, single and chained: no bad frees, every frame back.
func TestRobustRandomTooBig(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp"} {
		t.Run(et, func(t *testing.T) {
			pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Huge: pmd.HugeNever})
			if err != nil {
				t.Fatal(err)
			}
			ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
			c := pool.NewCache(64)
			n1 := newNodeMTU(t, pool, 1, et, ul1, 700)
			p1 := n1.cfg.Interfaces[0]
			mac1 := [6]byte(p1.HW)
			dst := n1.cfg.VRFs[0].Routes[0].P.Addr().Next().Next()
			r := lcg(7)
			for iter := 0; iter < 2000; iter++ {
				b := udp4(mac1, routerMAC, p1.Addrs[0], dst, 64, strings.Repeat("z", 600+int(r.next()%3000)))
				if r.next()%2 == 0 {
					b[14+6] |= 0x40 // DF
					binary.BigEndian.PutUint16(b[24:], 0)
					binary.BigEndian.PutUint16(b[24:], ipv4Checksum(b[14:34]))
				}
				for k := r.next() % 3; k > 0; k-- {
					b[14+r.next()%40] = byte(r.next())
				}
				if r.next()%3 == 0 {
					sendChain(t, pool, c, n1.pod, b, 200+int(r.next()%1400))
				} else if len(b) <= pool.FrameSize()-pool.Headroom() {
					send(t, pool, c, n1.pod, b)
				}
				if iter%8 == 0 {
					for i := 0; i < 4; i++ {
						n1.eng.Poll()
					}
					for len(recv(pool, c, n1.pod)) > 0 {
					}
					for len(recv(pool, c, ul2)) > 0 {
					}
				}
			}
			for i := 0; i < 4; i++ {
				n1.eng.Poll()
			}
			for len(recv(pool, c, n1.pod)) > 0 {
			}
			for len(recv(pool, c, ul2)) > 0 {
			}
			s := n1.eng.ifaces[1].Stats()
			t.Logf("pod: rx %d icmp %d frag %d drops %v", s.RxPackets, s.ICMPSent, s.Fragmented, s.Drops)
			if bf := pool.Stats().BadFrees; bf != 0 {
				t.Fatalf("%d bad frees", bf)
			}
			allFramesBack(t, pool, c, []*Engine{n1.eng}, n1.pod, n1.host, ul1, ul2)
		})
	}
}

// TestRobustDecTTL4Exhaustive: after decTTL4 the header still verifies, for every
// starting checksum a valid header can carry.
func TestRobustDecTTL4Exhaustive(t *testing.T) {
	bad := 0
	for ttl := 2; ttl < 256; ttl += 3 {
		for w := 0; w < 0x10000; w++ {
			ip := make([]byte, 20)
			ip[0] = 0x45
			ip[8], ip[9] = byte(ttl), 17
			binary.BigEndian.PutUint16(ip[12:], uint16(w)) // vary the sum through the source
			binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip))
			decTTL4(ip)
			if fold16(sum16(0, ip)) != 0xffff {
				bad++
			}
		}
	}
	if bad != 0 {
		t.Fatalf("%d headers fail verification after decTTL4", bad)
	}
}

// TestDADOnTap: the host configuring the pods' IPv6 gateway on the
// exception TAP (where gateway traffic goes) runs DAD for it; the vRouter must not
// claim the address.
func TestDADOnTap(t *testing.T) {
	pool, c, e, _, tap, cfg := v6Node(t)
	gw := cfg.Interfaces[0].Gateways[1]
	send(t, pool, c, tap, nsSolicited([6]byte{2, 0xee, 0, 0, 0, 1}, netip.IPv6Unspecified(), gw, false))
	for i := 0; i < 2*exceptionEvery; i++ {
		e.Poll()
	}
	if got := recv(pool, c, tap); len(got) != 0 {
		t.Fatalf("the host's DAD probe for gateway %v was answered: NA %x", gw, got[0])
	}
}

// TestProxyARP: a pod asking for an address its VRF routes elsewhere (a remote
// node's pod on the same subnet, IPv4 or IPv6) gets the router MAC, so one subnet
// can span nodes; an address discarded, not routed, or routed to the asking pod
// itself is not answered.
func TestProxyARP(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6(t, e, "{prefix: 'fd00:1::100/120', remote: peer}", "{prefix: 'fd00:1::200/120', interface: pod}")
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	for _, c4 := range []struct {
		target string
		answer bool
	}{{"10.1.2.7", true}, {"10.9.0.5", false}, {"172.16.0.1", false}} {
		send(t, pool, c, pod, arpRequest(mac, in.Addrs[0], netip.MustParseAddr(c4.target)))
		e.Poll()
		got := recv(pool, c, pod)
		if c4.answer != (len(got) == 1) || (c4.answer && [6]byte(got[0][22:28]) != routerMAC) {
			t.Fatalf("ARP for %s: %x, answer %v", c4.target, got, c4.answer)
		}
	}
	for _, c6 := range []struct {
		target string
		answer bool
	}{{"fd00:1::105", true}, {"fd00:1::205", false}, {"fd00:9::1", false}} {
		send(t, pool, c, pod, nsSolicited(mac, in.Addrs[1], netip.MustParseAddr(c6.target), true))
		e.Poll()
		got := recv(pool, c, pod)
		if c6.answer != (len(got) == 1) {
			t.Fatalf("NS for %s: %d replies, answer %v", c6.target, len(got), c6.answer)
		}
		// The NA's target link-layer option carries the router MAC; Override is clear.
		if c6.answer && ([6]byte(got[0][len(got[0])-6:]) != routerMAC || got[0][14+40+4]&0x20 != 0) {
			t.Fatalf("NS for %s: NA %x", c6.target, got[0])
		}
	}
	if n := e.ifaces[1].Stats().Drops[DropARP]; n != 4 {
		t.Fatalf("%d ARP/ND requests dropped, want 4", n)
	}
}

// TestProxyLinkLocal: a pod's link-local address (fe80::/10) is on its own link and
// never routed (RFC 4291 §2.5.6), so a VRF route covering it (a default route ::/0)
// must not make the vRouter answer for it: every pod runs duplicate address detection
// for its link-local address as its interface comes up, and an answer marks it
// dadfailed.
func TestProxyLinkLocal(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6(t, e, "{prefix: '::/0', remote: peer}")
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	ll := netip.MustParseAddr("fe80::ff:fe00:102")
	// The pod's DAD probe for its link-local address, and a solicitation for another
	// link-local address (a neighbour the pod heard of).
	send(t, pool, c, pod, nsSolicited(mac, netip.IPv6Unspecified(), ll, false))
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("the pod's DAD probe for its link-local %v was answered: NA %x", ll, got[0])
	}
	other := netip.MustParseAddr("fe80::1")
	send(t, pool, c, pod, nsSolicited(mac, in.Addrs[1], other, true))
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("NS for link-local %v was answered: NA %x", other, got[0])
	}
	// A global address the default route covers is still answered.
	g := netip.MustParseAddr("fd00:1::77")
	send(t, pool, c, pod, nsSolicited(mac, in.Addrs[1], g, true))
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 1 {
		t.Fatalf("NS for %v: %d answers, want 1", g, len(got))
	}
}

// TestARPNotEthernetIPv4: an ARP message that is not Ethernet/IPv4 (other hardware
// or protocol types or sizes: its sender address is elsewhere, or not an IPv4
// address) is ARP the vRouter does not answer, counted as control_ignored; the
// pod's source check reads the sender address of Ethernet/IPv4 ARP only.
func TestARPNotEthernetIPv4(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	for _, hdr := range [][]byte{
		{0, 6, 8, 0, 6, 4, 0, 1},       // IEEE 802 hardware
		{0, 1, 0x86, 0xdd, 6, 4, 0, 1}, // IPv6 protocol type
		{0, 1, 8, 0, 8, 4, 0, 1},       // 8-byte hardware addresses
		{0, 1, 8, 0, 6, 16, 0, 1},      // 16-byte protocol addresses
	} {
		f := arpRequest(mac, in.Addrs[0], in.Gateways[0])
		copy(f[14:], hdr)
		// What lies where an Ethernet/IPv4 request has its sender address is not one.
		copy(f[28:], []byte{1, 2, 3, 4})
		f = append(f, make([]byte, 32)...)
		send(t, pool, c, pod, f)
	}
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("%d answers", len(got))
	}
	st := e.ifaces[1].Stats()
	if st.Drops[DropARP] != 4 || st.Drops[DropSpoofIP] != 0 {
		t.Fatalf("control_ignored %d, spoofed_ip %d; want 4, 0", st.Drops[DropARP], st.Drops[DropSpoofIP])
	}
}

// TestARPProbe: an address conflict probe (RFC 5227 §2.1.1: ARP request from sender
// address 0.0.0.0) for the prober's own address is not answered, as duplicate
// address detection probes are not (TestDADOwnAddress, TestDADOnTap): from a pod
// for its address, or from the host for the pods' gateway it configures on the
// exception TAP. An answer tells the prober its address is in use. The pod's probe
// is control traffic, not a spoofed source.
func TestARPProbe(t *testing.T) {
	pool, c, e, pod, tap, cfg := v6Node(t)
	in := cfg.Interfaces[0]
	send(t, pool, c, pod, arpRequest([6]byte(in.HW), netip.IPv4Unspecified(), in.Addrs[0]))
	host := [6]byte{2, 0xee, 0, 0, 0, 1}
	send(t, pool, c, tap, arpRequest(host, netip.IPv4Unspecified(), in.Gateways[0]))
	for i := 0; i < 2*exceptionEvery; i++ {
		e.Poll()
	}
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("the pod's probe for its own %v was answered: %x", in.Addrs[0], got[0])
	}
	if got := recv(pool, c, tap); len(got) != 0 {
		t.Fatalf("the host's probe for gateway %v was answered: %x", in.Gateways[0], got[0])
	}
	if st := e.ifaces[1].Stats(); st.Drops[DropARP] != 1 || st.Drops[DropSpoofIP] != 0 {
		t.Fatalf("pod: control_ignored %d, spoofed_ip %d; want 1, 0", st.Drops[DropARP], st.Drops[DropSpoofIP])
	}
}

// TestProxyARPHost: the host asking on the exception TAP for an address the VRF
// routes to the host itself (an exception route) gets no answer: that address is
// routed back to the asking port, as a pod's own route is (TestProxyARP). With an
// answer the host sent such packets to the vRouter, which sent them back to it.
func TestProxyARPHost(t *testing.T) {
	pool, c, e, _, tap, cfg := v6Node(t)
	y := strings.Replace(fmt.Sprintf(nodeYAML, 1, 2, "vxlan"), "- {prefix: 10.9.0.0/16, action: discard}",
		"- {prefix: 10.9.0.0/16, action: discard}\n      - {prefix: 10.8.0.0/16, action: exception}", 1)
	withRoute, err := config.Parse([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	tabs, err := Build(withRoute, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
	host := [6]byte{2, 0xee, 0, 0, 0, 1}
	gw := cfg.Interfaces[0].Gateways[0]
	for _, c4 := range []struct {
		target string
		answer bool
	}{{"10.8.0.5", false}, {"10.1.2.7", true}} {
		send(t, pool, c, tap, arpRequest(host, gw, netip.MustParseAddr(c4.target)))
		for i := 0; i < 2*exceptionEvery; i++ {
			e.Poll()
		}
		if got := recv(pool, c, tap); c4.answer != (len(got) == 1) {
			t.Fatalf("the host's ARP for %s: %d answers, answer %v", c4.target, len(got), c4.answer)
		}
	}
}

// publishV6MTU is publishV6 with a tunnel MTU: the uplink's, 0 for none.
func publishV6MTU(t *testing.T, e *Engine, mtu int, routes ...string) {
	t.Helper()
	c, err := config.Parse([]byte(v6YAML(routes...)))
	if err != nil {
		t.Fatal(err)
	}
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, mtu)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
}

// withExt6 returns the IPv6 frame f with extension header ext (its next header
// byte set here) inserted after the fixed header.
func withExt6(f []byte, nh byte, ext []byte) []byte {
	ext = append([]byte(nil), ext...)
	ext[0] = f[14+6]
	g := append(append(append([]byte(nil), f[:54]...), ext...), f[54:]...)
	g[14+6] = nh
	binary.BigEndian.PutUint16(g[14+4:], binary.BigEndian.Uint16(g[14+4:])+uint16(len(ext)))
	return g
}

// TestTooBig6ExtensionHeaders: a pod's IPv6 packet too big for its tunnel is
// answered with "packet too big" also when extension headers come before its upper
// layer (hop-by-hop options, a fragment header: the first fragment or a later one),
// or the pod's path MTU discovery never learns the tunnel's MTU and all such packets
// are lost; behind them an ICMPv6 error still gets no answer (RFC 4443 §2.4(e)).
func TestTooBig6ExtensionHeaders(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6MTU(t, e, 1500, "{prefix: 'fd00:2::/64', remote: peer}")
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	big := udp6(mac, routerMAC, in.Addrs[1], netip.MustParseAddr("fd00:2::2"), 64, strings.Repeat("b", 1460))
	hbh := []byte{0, 0, 1, 4, 0, 0, 0, 0}         // hop-by-hop: PadN
	first := []byte{0, 0, 0, 1, 0, 0, 0, 7}       // fragment header: offset 0, M
	later := []byte{0, 0, 0x05, 0xa8, 0, 0, 0, 7} // offset 181 (1448 bytes)
	icmpErr := append([]byte(nil), big...)
	icmpErr[14+6], icmpErr[54] = 58, 1 // destination unreachable
	for _, tc := range []struct {
		name   string
		f      []byte
		answer bool
	}{
		{"hop-by-hop", withExt6(big, 0, hbh), true},
		{"first fragment", withExt6(big, 44, first), true},
		{"later fragment", withExt6(big, 44, later), true},
		{"hop-by-hop then fragment", withExt6(withExt6(big, 44, first), 0, hbh), true},
		{"ICMPv6 error behind hop-by-hop", withExt6(icmpErr, 0, hbh), false},
		{"ICMPv6 error behind a fragment header", withExt6(icmpErr, 44, first), false},
	} {
		send(t, pool, c, pod, tc.f)
		e.Poll()
		got := recv(pool, c, pod)
		if tc.answer != (len(got) == 1) {
			t.Fatalf("%s: %d answers, want answer %v", tc.name, len(got), tc.answer)
		}
		if tc.answer {
			r := got[0]
			m := r[54:]
			if r[14+6] != 58 || m[0] != 2 || binary.BigEndian.Uint32(m[4:]) != 1450 || csum6(r[14+8:14+24], r[14+24:14+40], m) != 0 {
				t.Fatalf("%s: answer %x", tc.name, r[:62])
			}
		}
	}
	if d := e.ifaces[1].Stats().Drops[DropTooBig]; d != 6 {
		t.Fatalf("too_big %d, want 6", d)
	}
}

// TestMartiansNotRouted: addresses that never leave their link or host are not
// routed whatever the routes say (a default route here): to or from an IPv6
// link-local address (RFC 4291 §2.5.6), to ::1 or ::, to or from an IPv4-mapped
// address (RFC 4291 §2.5.5.2), to or from 127/8 or 0/8 (RFC 1812 §5.3.7), from a
// multicast or broadcast address (RFC 1812 §5.3.7, RFC 4291 §2.7). From a pod, and from a tunnel, where they would otherwise reach
// the remote's pod, or the host as unknown.
func TestMartiansNotRouted(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6(t, e, "{prefix: '::/0', remote: peer}", "{prefix: '0.0.0.0/0', remote: peer}")
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	for _, dst := range []string{"fe80::1", "::1", "::", "::ffff:10.1.2.9", "127.0.0.1", "0.0.0.7"} {
		a := netip.MustParseAddr(dst)
		if a.Is4() {
			send(t, pool, c, pod, udp4(mac, routerMAC, in.Addrs[0], a, 64, "m"))
		} else {
			send(t, pool, c, pod, udp6(mac, routerMAC, in.Addrs[1], a, 64, "m"))
		}
	}
	e.Poll()
	if s := e.ifaces[0].Stats(); s.TxPackets != 0 {
		t.Fatalf("%d martian packets from the pod tunnelled", s.TxPackets)
	}
	if d := e.ifaces[1].Stats().Drops[DropNoRoute]; d != 6 {
		t.Fatalf("no_route %d, want 6", d)
	}

	pool2, c2, n1, n2 := twoNodes(t, "vxlan")
	n2.eng.tables.Load().UnknownToHost = true
	p2 := n2.cfg.Interfaces[0]
	outer := tunnelOuter(t, pool2, c2, n1, n2)
	for _, inner := range [][]byte{
		udp4(routerMAC, routerMAC, netip.MustParseAddr("127.0.0.1"), p2.Addrs[0], 64, "lo"),
		udp6(routerMAC, routerMAC, netip.MustParseAddr("fe80::5"), netip.MustParseAddr("fd00:7::2"), 64, "ll"),
		udp6(routerMAC, routerMAC, netip.MustParseAddr("::ffff:127.0.0.1"), netip.MustParseAddr("fd00:7::2"), 64, "mapped"),
		udp4(routerMAC, routerMAC, netip.MustParseAddr("224.0.0.5"), p2.Addrs[0], 64, "mcast"),
		udp4(routerMAC, routerMAC, netip.MustParseAddr("255.255.255.255"), p2.Addrs[0], 64, "bcast"),
		udp6(routerMAC, routerMAC, netip.MustParseAddr("ff02::1"), netip.MustParseAddr("fd00:7::2"), 64, "mcast6"),
	} {
		f := append(outer, inner...)
		binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
		binary.BigEndian.PutUint16(f[24:], 0)
		binary.BigEndian.PutUint16(f[24:], ipv4Checksum(f[14:34]))
		binary.BigEndian.PutUint16(f[38:], uint16(len(f)-34))
		send(t, pool2, c2, n1.eng.ifaces[0].Queues[0], f)
	}
	for i := 0; i < 2*exceptionEvery; i++ {
		n2.eng.Poll()
	}
	if got := len(recv(pool2, c2, n2.pod)) + len(recv(pool2, c2, n2.host)); got != 0 {
		t.Fatalf("%d tunnelled martian packets delivered", got)
	}
	if d := dropped(n2, 0, DropNoRoute); d != 6 {
		t.Fatalf("no_route %d on the uplink, want 6", d)
	}
}

// TestProxyMartian: the vRouter does not answer ARP or neighbour solicitations for
// addresses it never routes (TestMartiansNotRouted), whatever route covers them (a
// default route here): loopback, the unspecified address, IPv4-mapped, 0/8. An answer drew the
// pod's packets to them to the vRouter, which drops them. A global address the
// default route covers is still answered.
func TestProxyMartian(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6(t, e, "{prefix: '::/0', remote: peer}", "{prefix: '0.0.0.0/0', remote: peer}")
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	for _, tc := range []struct {
		target string
		answer bool
	}{{"::1", false}, {"::", false}, {"::ffff:10.1.2.9", false}, {"127.0.0.1", false}, {"0.0.0.5", false}, {"10.1.2.9", true}, {"fd00:9::9", true}} {
		a := netip.MustParseAddr(tc.target)
		if a.Is4() {
			send(t, pool, c, pod, arpRequest(mac, in.Addrs[0], a))
		} else {
			send(t, pool, c, pod, ns(mac, routerMAC, in.Addrs[1], in.Gateways[1], a, true))
		}
		e.Poll()
		if got := recv(pool, c, pod); tc.answer != (len(got) == 1) {
			t.Fatalf("%s: %d answers, want answer %v", tc.target, len(got), tc.answer)
		}
	}
}
