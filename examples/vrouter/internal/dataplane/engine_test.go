package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
)

var routerMAC = [6]byte{0, 0, 0x5e, 0, 1, 0}

// node is one in-process vRouter whose ports are software rings: the test holds the
// far ends (the pods' side and the host's side); the uplinks of two nodes are joined.
type node struct {
	eng  *Engine
	pod  pmd.Port // far end of the pod's port
	host pmd.Port // far end of the TAP
	cfg  *config.Config
}

const nodeYAML = `
node: {name: n%[1]d, underlay_ip: 192.168.50.%[1]d}
uplink: {interface: ul}
exception: {tap: t}
vrfs:
  - name: red
    vni: 100
    label: 100
    routes:
      - {prefix: 10.1.%[2]d.0/24, remote: peer}
      - {prefix: 10.9.0.0/16, action: discard}
interfaces:
  - name: pod
    type: veth
    vrf: red
    ips: [10.1.%[1]d.2]
    mac: 02:00:00:00:0%[1]d:02
    gateway: [10.1.%[1]d.1]
    veth: {interface: v}
remotes:
  - {name: peer, underlay_ip: 192.168.50.%[2]d, mac: 02:00:00:00:50:0%[2]d, encap: %[3]s}
`

func newNode(t testing.TB, pool *pmd.Pool, i int, encapType string, uplink pmd.Port) *node {
	return newNodeMTU(t, pool, i, encapType, uplink, 0)
}

func newNodeMTU(t testing.TB, pool *pmd.Pool, i int, encapType string, uplink pmd.Port, mtu int) *node {
	t.Helper()
	c, err := config.Parse([]byte(fmt.Sprintf(nodeYAML, i, 3-i, encapType)))
	if err != nil {
		t.Fatal(err)
	}
	podA, podB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	tapA, tapB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	t.Cleanup(func() { podA.Close(); podB.Close(); tapA.Close(); tapB.Close() })
	ifaces := []*Iface{
		{Name: "ul", Kind: Uplink, Queues: []pmd.Port{uplink}},
		{Name: "pod", Kind: Pod, Queues: []pmd.Port{podA}, VRF: VRFID(0), MAC: [6]byte(c.Interfaces[0].HW),
			IP4: []uint32{IP4(c.Interfaces[0].Addrs[0])}, Gw4: []uint32{IP4(c.Interfaces[0].Gateways[0])}},
		{Name: "t", Kind: Exception, Queues: []pmd.Port{tapA}, VRF: VRFID(0), MAC: [6]byte{2, 0xee, 0, 0, 0, byte(i)}},
	}
	e := New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC,
		Decap: encap.DecapOptions{Local: []netip.Addr{c.Node.Addr}}})
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, byte(i)}, routerMAC, mtu)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
	t.Cleanup(e.Close)
	return &node{eng: e, pod: podB, host: tapB, cfg: c}
}

func udp4(src, dst [6]byte, sip, dip netip.Addr, ttl byte, payload string) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f, dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], etherIPv4)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8], ip[9] = ttl, 17
	copy(ip[12:], sip.AsSlice())
	copy(ip[16:], dip.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	binary.BigEndian.PutUint16(ip[20:], 1000)
	binary.BigEndian.PutUint16(ip[22:], 2000)
	binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
	copy(ip[28:], payload)
	return f
}

func send(t *testing.T, pool *pmd.Pool, c *pmd.Cache, p pmd.Port, frame []byte) {
	t.Helper()
	var pk [1]pmd.Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("alloc")
	}
	pool.Append(&pk[0], len(frame))
	copy(pool.Data(&pk[0]), frame)
	if p.Tx(pk[:]) != 1 {
		t.Fatal("tx")
	}
}

func recv(pool *pmd.Pool, c *pmd.Cache, p pmd.Port) [][]byte {
	var pkts [64]pmd.Pkt
	n := p.Rx(pkts[:])
	var out [][]byte
	for i := range pkts[:n] {
		out = append(out, append([]byte(nil), pool.Data(&pkts[i])...))
	}
	c.Free(pkts[:n])
	return out
}

func twoNodes(t testing.TB, encapType string) (*pmd.Pool, *pmd.Cache, *node, *node) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	c := pool.NewCache(64)
	t.Cleanup(func() {
		c.Flush()
		ul1.Close()
		ul2.Close()
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	})
	n1 := newNode(t, pool, 1, encapType, ul1)
	n2 := newNode(t, pool, 2, encapType, ul2)
	return pool, c, n1, n2
}

// tunnelOuter sends a packet from n1's pod to n2's and returns the outer headers
// (Ethernet, IPv4, UDP, VXLAN) n1 put on it, for tests that tunnel frames of their
// own to n2 as n1 would.
func tunnelOuter(t *testing.T, pool *pmd.Pool, c *pmd.Cache, n1, n2 *node) []byte {
	t.Helper()
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	send(t, pool, c, n1.pod, udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "x"))
	n1.eng.Poll()
	got := recv(pool, c, n2.eng.ifaces[0].Queues[0]) // what node 1 sent on the underlay
	if len(got) != 1 || len(got[0]) < 50 {
		t.Fatalf("underlay got %d frames", len(got))
	}
	return got[0][:50:50]
}

func pump(nodes ...*node) {
	for i := 0; i < 4; i++ {
		for _, n := range nodes {
			n.eng.Poll()
		}
	}
}

func TestPodToPodAcrossNodes(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		t.Run(et, func(t *testing.T) {
			pool, c, n1, n2 := twoNodes(t, et)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			send(t, pool, c, n1.pod, udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "hello"))
			pump(n1, n2)
			got := recv(pool, c, n2.pod)
			if len(got) != 1 {
				t.Fatalf("pod2 received %d frames", len(got))
			}
			f := got[0]
			if [6]byte(f[0:6]) != [6]byte(p2.HW) || [6]byte(f[6:12]) != routerMAC {
				t.Fatalf("MACs %x -> %x", f[6:12], f[0:6])
			}
			if f[14+8] != 62 {
				t.Fatalf("TTL %d, want 62 (two routers)", f[14+8])
			}
			ip := append([]byte(nil), f[14:34]...)
			binary.BigEndian.PutUint16(ip[10:], 0)
			if ipv4Checksum(ip) != binary.BigEndian.Uint16(f[24:]) {
				t.Fatal("IPv4 checksum wrong after forwarding")
			}
			if !bytes.HasSuffix(f, []byte("hello")) || len(f) != 14+20+8+5 {
				t.Fatalf("payload: %x", f)
			}
			// And back.
			send(t, pool, c, n2.pod, udp4([6]byte(p2.HW), routerMAC, p2.Addrs[0], p1.Addrs[0], 64, "back"))
			pump(n1, n2)
			if got := recv(pool, c, n1.pod); len(got) != 1 || !bytes.HasSuffix(got[0], []byte("back")) {
				t.Fatalf("reply: %d frames", len(got))
			}
			if n1.eng.ifaces[0].Stats().TxPackets != 1 || n1.eng.ifaces[0].Stats().RxPackets != 1 {
				t.Fatal("uplink counters")
			}
		})
	}
}

// allFramesBack closes the engines and then the ports, flushes c, and fails unless
// every frame of pool is free again: nothing leaked.
func allFramesBack(t testing.TB, pool *pmd.Pool, c *pmd.Cache, engines []*Engine, ports ...pmd.Port) {
	t.Helper()
	for _, e := range engines {
		e.Close()
	}
	for _, p := range ports {
		p.Close()
	}
	c.Flush()
	if st := pool.Stats(); st.Free != st.Frames {
		t.Fatalf("%d of %d frames free after Close", st.Free, st.Frames)
	}
}

// linkedNodes returns two nodes of encapsulation et on a pool of their own, their
// uplinks of MTU mtu joined by a ring pair, and drain, which closes their engines and
// uplinks and checks that every frame came back (allFramesBack).
func linkedNodes(t testing.TB, et string, mtu int) (pool *pmd.Pool, c *pmd.Cache, n1, n2 *node, drain func()) {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	c = pool.NewCache(64)
	n1 = newNodeMTU(t, pool, 1, et, ul1, mtu)
	n2 = newNodeMTU(t, pool, 2, et, ul2, mtu)
	return pool, c, n1, n2, func() { allFramesBack(t, pool, c, []*Engine{n1.eng, n2.eng}, ul1, ul2) }
}

func dropped(n *node, iface int, why Reason) uint64 {
	return n.eng.ifaces[iface].Stats().Drops[why]
}

func TestPolicy(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "vxlan")
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	mac1 := [6]byte(p1.HW)

	// Spoofed source address, spoofed MAC.
	send(t, pool, c, n1.pod, udp4(mac1, routerMAC, netip.MustParseAddr("10.1.1.99"), p2.Addrs[0], 64, "x"))
	send(t, pool, c, n1.pod, udp4([6]byte{2, 9, 9, 9, 9, 9}, routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "x"))
	// TTL 1 expires here; 10.9/16 is discarded; 172.16/12 has no route.
	send(t, pool, c, n1.pod, udp4(mac1, routerMAC, p1.Addrs[0], p2.Addrs[0], 1, "x"))
	send(t, pool, c, n1.pod, udp4(mac1, routerMAC, p1.Addrs[0], netip.MustParseAddr("10.9.1.1"), 64, "x"))
	send(t, pool, c, n1.pod, udp4(mac1, routerMAC, p1.Addrs[0], netip.MustParseAddr("172.16.0.1"), 64, "x"))
	pump(n1, n2)
	if got := recv(pool, c, n2.pod); len(got) != 0 {
		t.Fatalf("%d frames leaked to pod2", len(got))
	}
	for why, want := range map[Reason]uint64{DropSpoofIP: 1, DropSpoofMAC: 1, DropTTLExpired: 1, DropDiscard: 1, DropNoRoute: 1} {
		if got := dropped(n1, 1, why); got != want {
			t.Errorf("%v: %d drops, want %d", why, got, want)
		}
	}
	// The expired packet alone is answered, with ICMP time exceeded.
	if got := recv(pool, c, n1.pod); len(got) != 1 || got[0][14+9] != 1 || got[0][34] != 11 {
		t.Fatalf("pod1 got %x, want one ICMP time exceeded", got)
	}

	// Traffic to the gateway goes to the host's TAP, addressed to the host.
	send(t, pool, c, n1.pod, udp4(mac1, routerMAC, p1.Addrs[0], p1.Gateways[0], 64, "host"))
	pump(n1)
	got := recv(pool, c, n1.host)
	if len(got) != 1 || [6]byte(got[0][0:6]) != n1.eng.hostMAC || !bytes.HasSuffix(got[0], []byte("host")) {
		t.Fatalf("host got %d frames", len(got))
	}

	// ARP for the gateway is answered with the router MAC.
	arp := arpRequest(mac1, p1.Addrs[0], p1.Gateways[0])
	send(t, pool, c, n1.pod, arp)
	pump(n1)
	got = recv(pool, c, n1.pod)
	if len(got) != 1 || binary.BigEndian.Uint16(got[0][20:]) != 2 || [6]byte(got[0][22:28]) != routerMAC {
		t.Fatalf("ARP reply: %x", got)
	}
	if !strings.Contains(DropSpoofIP.String(), "spoof") {
		t.Fatal("reason names")
	}
}

func TestEngineZeroAlloc(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "mplsoudp")
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "0123456789")
	var pkts [32]pmd.Pkt
	allocs := testing.AllocsPerRun(200, func() {
		n := c.Alloc(pkts[:])
		for i := range pkts[:n] {
			pool.Append(&pkts[i], len(frame))
			copy(pool.Data(&pkts[i]), frame)
		}
		n1.pod.Tx(pkts[:n])
		n1.eng.Poll()
		n2.eng.Poll()
		n = n2.pod.Rx(pkts[:])
		c.Free(pkts[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per burst through two routers", allocs)
	}
}

// BenchmarkEngine measures the forwarding engine alone: bursts of 32 64-byte UDP
// packets from a pod through node 1 (checks, lookup, encapsulation) and node 2
// (decapsulation, lookup, MAC rewrite) to the far pod, over software rings. ns/op is
// per packet through both routers.
func BenchmarkEngine(b *testing.B) {
	for _, et := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		b.Run(et, func(b *testing.B) {
			pool, c, n1, n2 := twoNodes(b, et)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "0123456789abcdef01")
			var pkts [32]pmd.Pkt
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += 32 {
				n := c.Alloc(pkts[:])
				for j := range pkts[:n] {
					pool.Append(&pkts[j], len(frame))
					copy(pool.Data(&pkts[j]), frame)
				}
				n1.pod.Tx(pkts[:n])
				n1.eng.Poll()
				n2.eng.Poll()
				n = n2.pod.Rx(pkts[:])
				c.Free(pkts[:n])
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
		})
	}
}

// sendChain sends frame from p as a chain of frames of at most seg bytes each.
func sendChain(t *testing.T, pool *pmd.Pool, c *pmd.Cache, p pmd.Port, frame []byte, seg int) {
	t.Helper()
	var ch []pmd.Pkt
	for off := 0; off < len(frame); off += seg {
		var pk [1]pmd.Pkt
		if c.Alloc(pk[:]) != 1 {
			t.Fatal("alloc")
		}
		n := min(seg, len(frame)-off)
		pool.Append(&pk[0], n)
		copy(pool.Data(&pk[0]), frame[off:off+n])
		if off+n < len(frame) {
			pk[0].Flags |= pmd.PktMore
		}
		ch = append(ch, pk[0])
	}
	if p.Tx(ch) != len(ch) {
		t.Fatal("tx")
	}
}

// recvChains receives whole packets, joining each chain's segments.
func recvChains(pool *pmd.Pool, c *pmd.Cache, p pmd.Port) (frames [][]byte, segs int) {
	var pkts [64]pmd.Pkt
	n := p.Rx(pkts[:])
	var cur []byte
	for i := range pkts[:n] {
		cur = append(cur, pool.Data(&pkts[i])...)
		if pkts[i].Flags&pmd.PktMore == 0 {
			frames = append(frames, cur)
			cur = nil
		}
	}
	c.Free(pkts[:n])
	return frames, n
}

// TestJumboChains forwards a 9000-byte frame, received as a chain of frames (as
// AF_XDP with multi-buffer delivers it), from a pod across the two nodes over each
// encapsulation: it arrives as a chain with every byte but the rewritten headers
// unchanged. A tunnel whose uplink MTU is too small drops it as too_big.
func TestJumboChains(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		t.Run(et, func(t *testing.T) {
			pool, c, n1, n2 := twoNodes(t, et)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			payload := strings.Repeat("0123456789abcdef", 560)
			frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, payload)
			sendChain(t, pool, c, n1.pod, frame, 1500)
			pump(n1, n2)
			got, segs := recvChains(pool, c, n2.pod)
			if len(got) != 1 || segs < 6 {
				t.Fatalf("pod2 received %d frames in %d segments; drops n1 %v, n2 %v", len(got), segs,
					n1.eng.ifaces[1].Stats().Drops[DropTooBig], n2.eng.ifaces[0].Stats().Drops[DropDecap])
			}
			f := got[0]
			if len(f) != len(frame) || [6]byte(f[0:6]) != [6]byte(p2.HW) || f[14+8] != 62 || string(f[34:]) != string(frame[34:]) {
				t.Fatalf("forwarded frame: %d bytes, TTL %d", len(f), f[14+8])
			}
			ip := append([]byte(nil), f[14:34]...)
			binary.BigEndian.PutUint16(ip[10:], 0)
			if ipv4Checksum(ip) != binary.BigEndian.Uint16(f[24:]) {
				t.Fatal("IPv4 checksum wrong after forwarding")
			}
			if n1.eng.ifaces[1].Stats().RxPackets != 1 || n2.eng.ifaces[1].Stats().TxPackets != 1 {
				t.Fatal("a chain must count as one packet")
			}
		})
	}
	t.Run("mtu", func(t *testing.T) {
		pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
		if err != nil {
			t.Fatal(err)
		}
		ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		c := pool.NewCache(0)
		n1 := newNodeMTU(t, pool, 1, "vxlan", ul1, 1500)
		p1 := n1.cfg.Interfaces[0]
		frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, strings.Repeat("x", 3000))
		// DF set: without it the packet is fragmented to fit (TestFragment). Before
		// the pool's caches were kept below half the pool, this test's cache took
		// all 256 frames, fragmenting found none, and a packet without DF was
		// dropped as too_big for that reason.
		frame[14+6] |= 0x40
		binary.BigEndian.PutUint16(frame[14+10:], 0)
		binary.BigEndian.PutUint16(frame[14+10:], ipv4Checksum(frame[14:34]))
		sendChain(t, pool, c, n1.pod, frame, 1500)
		pump(n1)
		if got := dropped(n1, 1, DropTooBig); got != 1 {
			t.Fatalf("too_big drops %d, want 1", got)
		}
		if f := n1.eng.ifaces[1].Stats().Fragmented; f != 0 {
			t.Fatalf("a DF packet was fragmented (%d)", f)
		}
		// The pod is told: ICMP destination unreachable, fragmentation needed.
		if got, _ := recvChains(pool, c, n1.pod); len(got) != 1 || len(got[0]) < 36 || got[0][14+9] != 1 || got[0][34] != 3 || got[0][35] != 4 {
			t.Fatalf("pod got %d frames, want one ICMP fragmentation needed", len(got))
		}
		allFramesBack(t, pool, c, []*Engine{n1.eng}, ul1, ul2) // the dropped chain too
	})
}

// TestJumboZeroAlloc: chains through both routers allocate nothing either.
func TestJumboZeroAlloc(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsogre"} {
		pool, c, n1, n2 := twoNodes(t, et)
		p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
		frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, strings.Repeat("z", 8900))
		var pkts [64]pmd.Pkt
		allocs := testing.AllocsPerRun(100, func() {
			k := 0
			for off := 0; off < len(frame); off += 1792 {
				c.Alloc(pkts[k : k+1])
				pkts[k].Flags = 0
				n := min(1792, len(frame)-off)
				pool.Append(&pkts[k], n)
				copy(pool.Data(&pkts[k]), frame[off:off+n])
				if off+n < len(frame) {
					pkts[k].Flags |= pmd.PktMore
				}
				k++
			}
			n1.pod.Tx(pkts[:k])
			n1.eng.Poll()
			n2.eng.Poll()
			c.Free(pkts[:n2.pod.Rx(pkts[:])])
		})
		if allocs != 0 {
			t.Fatalf("%s: %v allocs per jumbo frame through two routers", et, allocs)
		}
		if n2.eng.ifaces[1].Stats().TxPackets == 0 {
			t.Fatal("nothing forwarded")
		}
	}
}

// naiveSum is RFC 1071 the slow way, for checking the ICMP messages.
func naiveSum(b []byte) uint16 {
	var s uint32
	for i := 0; i < len(b); i += 2 {
		w := uint32(b[i]) << 8
		if i+1 < len(b) {
			w |= uint32(b[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// TestTooBigICMP: a pod's DF packet too big for the tunnel (uplink MTU 1500) is
// dropped and answered with ICMP "fragmentation needed" from the pod's gateway,
// naming the 1450-byte MTU VXLAN leaves and quoting the packet; without DF it is
// only dropped.
func TestTooBigICMP(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer ul1.Close()
	defer ul2.Close()
	c := pool.NewCache(0)
	defer c.Flush()
	n1 := newNodeMTU(t, pool, 1, "vxlan", ul1, 1500)
	p1 := n1.cfg.Interfaces[0]
	frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, strings.Repeat("x", 3000))
	frame[14+6] = 0x40 // DF
	binary.BigEndian.PutUint16(frame[24:], 0)
	binary.BigEndian.PutUint16(frame[24:], ipv4Checksum(frame[14:34]))
	sendChain(t, pool, c, n1.pod, frame, 1500)
	pump(n1)
	got, _ := recvChains(pool, c, n1.pod)
	if len(got) != 1 {
		t.Fatalf("pod got %d frames, want the ICMP error; too_big %d encap %d icmp %d tx %d", len(got), dropped(n1, 1, DropTooBig), dropped(n1, 1, DropEncap), n1.eng.ifaces[1].Stats().ICMPSent, n1.eng.ifaces[1].Stats().TxPackets)
	}
	r := got[0]
	if [6]byte(r[0:6]) != [6]byte(p1.HW) || [6]byte(r[6:12]) != routerMAC || binary.BigEndian.Uint16(r[12:]) != etherIPv4 {
		t.Fatalf("Ethernet header %x", r[:14])
	}
	ip := r[14:34]
	if naiveSum(ip) != 0xffff || ip[9] != 1 || netip.AddrFrom4([4]byte(ip[12:16])) != p1.Gateways[0] ||
		netip.AddrFrom4([4]byte(ip[16:20])) != p1.Addrs[0] || int(binary.BigEndian.Uint16(ip[2:])) != len(r)-14 {
		t.Fatalf("IPv4 header %x", ip)
	}
	m := r[34:]
	if m[0] != 3 || m[1] != 4 || binary.BigEndian.Uint16(m[6:]) != 1450 || naiveSum(m) != 0xffff {
		t.Fatalf("ICMP type %d code %d MTU %d", m[0], m[1], binary.BigEndian.Uint16(m[6:]))
	}
	if !bytes.Equal(m[8+20:8+28], frame[34:42]) || !bytes.Equal(m[8+12:8+20], frame[26:34]) {
		t.Fatal("the quote is not the packet's header and first bytes")
	}
	if dropped(n1, 1, DropTooBig) != 1 || n1.eng.ifaces[1].Stats().ICMPSent != 1 {
		t.Fatal("counters")
	}

	// Without DF: fragmented (TestFragment4), no ICMP.
	frame[14+6] = 0
	binary.BigEndian.PutUint16(frame[24:], 0)
	binary.BigEndian.PutUint16(frame[24:], ipv4Checksum(frame[14:34]))
	sendChain(t, pool, c, n1.pod, frame, 1500)
	pump(n1)
	if got, _ := recvChains(pool, c, n1.pod); len(got) != 0 || dropped(n1, 1, DropTooBig) != 1 ||
		n1.eng.ifaces[1].Stats().Fragmented != 1 {
		t.Fatalf("no-DF packet: %d frames back, %d drops", len(got), dropped(n1, 1, DropTooBig))
	}

	// More packets that get no answer than the rate limit's burst do not use it up:
	// the next DF packet is still answered. ICMP errors get none (RFC 1122 §3.2.2).
	icmpErr := append([]byte(nil), frame...)
	icmpErr[14+6], icmpErr[14+9], icmpErr[34] = 0x40, 1, 3
	binary.BigEndian.PutUint16(icmpErr[24:], 0)
	binary.BigEndian.PutUint16(icmpErr[24:], ipv4Checksum(icmpErr[14:34]))
	for i := 0; i < 2*icmpBurst; i++ {
		sendChain(t, pool, c, n1.pod, icmpErr, 1500)
		pump(n1)
	}
	if got, _ := recvChains(pool, c, n1.pod); len(got) != 0 || dropped(n1, 1, DropTooBig) != 1+2*icmpBurst {
		t.Fatalf("ICMP errors too big: %d frames back, %d drops", len(got), dropped(n1, 1, DropTooBig))
	}
	frame[14+6] = 0x40
	binary.BigEndian.PutUint16(frame[24:], 0)
	binary.BigEndian.PutUint16(frame[24:], ipv4Checksum(frame[14:34]))
	sendChain(t, pool, c, n1.pod, frame, 1500)
	pump(n1)
	if got, _ := recvChains(pool, c, n1.pod); len(got) != 1 || n1.eng.ifaces[1].Stats().ICMPSent != 2 {
		t.Fatalf("after %d unanswered packets: %d frames back", 2*icmpBurst, len(got))
	}
}

// TestTooBig6: the ICMPv6 "packet too big" message is well formed: addresses,
// lengths, the MTU, the quote capped at the 1280-byte minimum MTU, and a checksum
// over the pseudo-header; none is sent about an ICMPv6 error.
func TestTooBig6(t *testing.T) {
	pkt := make([]byte, 3000)
	binary.BigEndian.PutUint32(pkt, 6<<28)
	binary.BigEndian.PutUint16(pkt[4:], 3000-40)
	pkt[6], pkt[7] = 17, 63
	src, gw := netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("fd00:1::1")
	copy(pkt[8:], src.AsSlice())
	copy(pkt[24:], netip.MustParseAddr("fd00:2::2").AsSlice())
	g := gw.As16()
	out := make([]byte, 2048)
	n := tooBig6(out, pkt, [6]byte{2, 1}, routerMAC, &g, 1450)
	if n != 14+1280 {
		t.Fatalf("message of %d bytes, want 1280 after Ethernet", n)
	}
	ip := out[14:54]
	if binary.BigEndian.Uint16(ip[4:]) != 1240 || ip[6] != 58 || netip.AddrFrom16([16]byte(ip[8:24])) != gw || netip.AddrFrom16([16]byte(ip[24:40])) != src {
		t.Fatalf("IPv6 header %x", ip)
	}
	m := out[54:n]
	ps := append(append(append([]byte(nil), ip[8:40]...), 0, 0, byte(len(m)>>8), byte(len(m))), 0, 0, 0, 58)
	if m[0] != 2 || binary.BigEndian.Uint32(m[4:]) != 1450 || naiveSum(append(ps, m...)) != 0xffff || !bytes.Equal(m[8:], pkt[:1232]) {
		t.Fatalf("ICMPv6 type %d MTU %d", m[0], binary.BigEndian.Uint32(m[4:]))
	}
	pkt[6], pkt[40] = 58, 1 // an ICMPv6 error
	if tooBig6(out, pkt, [6]byte{2, 1}, routerMAC, &g, 1450) != 0 {
		t.Fatal("an ICMPv6 error was answered")
	}
}

// FuzzTooBig: the ICMP builders take any bytes a pod sent without panicking, and
// what they build has valid checksums and fits the buffer.
func FuzzTooBig(f *testing.F) {
	f.Add(udp4([6]byte{2}, routerMAC, netip.MustParseAddr("10.1.1.2"), netip.MustParseAddr("10.1.2.2"), 64, "hello")[14:], uint16(1450), uint16(600))
	f.Fuzz(func(t *testing.T, ip []byte, mtu, room uint16) {
		out := make([]byte, int(room)%2048)
		gw := [16]byte{0xfd, 0, 15: 1}
		if n := tooBig4(out, ip, [6]byte{2}, routerMAC, 0x0a010101, int(mtu)); n > 0 {
			if n > len(out) || naiveSum(out[14:34]) != 0xffff || naiveSum(out[34:n]) != 0xffff {
				t.Fatalf("ICMP message of %d bytes, bad checksum or too long", n)
			}
		}
		if n := tooBig6(out, ip, [6]byte{2}, routerMAC, &gw, int(mtu)); n > len(out) {
			t.Fatalf("ICMPv6 message of %d bytes in %d", n, len(out))
		}
	})
}

// TestHostTap: with a NIC uplink, frames that are not tunnel traffic for the node go
// to the host's TAP unchanged, and what the host sends goes out of the uplink
// unchanged; tunnel traffic still reaches the pods.
func TestHostTap(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "vxlan")
	hostA, hostB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	t.Cleanup(func() { hostA.Close(); hostB.Close() })
	// Node 2 again, with a host TAP on its uplink.
	ul := n2.eng.ifaces[0].Queues[0]
	n2.eng.Close()
	ifaces := []*Iface{{Name: "ul", Kind: Uplink, Queues: []pmd.Port{ul}}, n2.eng.ifaces[1], n2.eng.ifaces[2],
		{Name: "vhost0", Kind: Host, Queues: []pmd.Port{hostA}}}
	e := New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC,
		Decap: encap.DecapOptions{Local: []netip.Addr{n2.cfg.Node.Addr}}})
	e.Publish(n2.eng.tables.Load())
	t.Cleanup(e.Close)
	n2.eng = e
	// An ARP request for node 2's underlay address, as node 1's kernel would send it.
	arp := make([]byte, 42)
	copy(arp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0x50, 1, 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1})
	copy(arp[28:], []byte{192, 168, 50, 1})
	copy(arp[38:], []byte{192, 168, 50, 2})
	// Node 1's uplink end is the test's: it sends to node 2's uplink.
	send(t, pool, c, n1.eng.ifaces[0].Queues[0], arp)
	for i := 0; i < 2*exceptionEvery; i++ {
		n2.eng.Poll()
	}
	if got := recv(pool, c, hostB); len(got) != 1 || !bytes.Equal(got[0], arp) {
		t.Fatalf("host TAP got %d frames, want the ARP request unchanged", len(got))
	}
	// So does an IPv4 fragment addressed to the node (the host's own large UDP),
	// which is not the vRouter's to reassemble.
	fr := udp4([6]byte{2, 0, 0, 0, 0x50, 1}, [6]byte{2, 0, 0, 0, 0x50, 2}, netip.MustParseAddr("192.168.50.1"),
		netip.MustParseAddr("192.168.50.2"), 64, "fragment of the host's")
	fr[14+6] = 0x20 // MF
	binary.BigEndian.PutUint16(fr[24:], 0)
	binary.BigEndian.PutUint16(fr[24:], ipv4Checksum(fr[14:34]))
	send(t, pool, c, n1.eng.ifaces[0].Queues[0], fr)
	n2.eng.Poll()
	if got := recv(pool, c, hostB); len(got) != 1 || !bytes.Equal(got[0], fr) {
		t.Fatalf("host TAP got %d frames, want the fragment unchanged", len(got))
	}
	// The host's reply goes out of the uplink as it is.
	reply := append([]byte(nil), arp...)
	reply[21] = 2
	send(t, pool, c, hostB, reply)
	for i := 0; i < 2*exceptionEvery; i++ {
		n2.eng.Poll()
	}
	if got := recv(pool, c, n1.eng.ifaces[0].Queues[0]); len(got) != 1 || !bytes.Equal(got[0], reply) {
		t.Fatalf("uplink sent %d frames, want the host's reply unchanged", len(got))
	}
	// Tunnel traffic still goes to the pod, not to the host.
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	send(t, pool, c, n1.pod, udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "tunnelled"))
	pump(n1, n2)
	if got := recv(pool, c, n2.pod); len(got) != 1 || !bytes.HasSuffix(got[0], []byte("tunnelled")) {
		t.Fatalf("pod got %d frames", len(got))
	}
	if got := recv(pool, c, hostB); len(got) != 0 {
		t.Fatalf("host TAP got %d tunnel frames", len(got))
	}
	if s := e.ifaces[0].Stats(); s.Drops[DropDecap] != 0 || e.ifaces[3].Stats().TxPackets != 2 {
		t.Fatalf("decap drops %d, host TAP sent %d", s.Drops[DropDecap], e.ifaces[3].Stats().TxPackets)
	}
}

// TestRouterMAC: toward a remote with a router_mac, VXLAN's inner frames carry it as
// their destination (EVPN's Router's MAC); other remotes get the shared router MAC.
func TestRouterMAC(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "vxlan")
	yaml := strings.Replace(fmt.Sprintf(nodeYAML, 1, 2, "vxlan"), "encap: vxlan}", `encap: vxlan, router_mac: "02:00:00:00:61:01"}`, 1)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	tabs, err := Build(cfg, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, mac := range []struct {
		tabs *Tables
		want [6]byte
	}{{tabs, [6]byte{2, 0, 0, 0, 0x61, 1}}, {n1.eng.tables.Load(), routerMAC}} {
		n1.eng.Publish(mac.tabs)
		p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
		send(t, pool, c, n1.pod, udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "evpn"))
		n1.eng.Poll()
		got := recv(pool, c, n2.eng.ifaces[0].Queues[0]) // what node 1 sent on the underlay
		if len(got) != 1 || len(got[0]) < 50+14 {
			t.Fatalf("underlay got %d frames", len(got))
		}
		if inner := got[0][50:]; [6]byte(inner[0:6]) != mac.want || [6]byte(inner[6:12]) != routerMAC {
			t.Fatalf("inner MACs %x -> %x, want %x -> %x", inner[6:12], inner[0:6], routerMAC, mac.want)
		}
	}
	bad := strings.Replace(fmt.Sprintf(nodeYAML, 1, 2, "mplsoudp"), "encap: mplsoudp}", `encap: mplsoudp, router_mac: "02:00:00:00:61:01"}`, 1)
	if _, err := config.Parse([]byte(bad)); err == nil || !strings.Contains(err.Error(), "router_mac") {
		t.Fatalf("router_mac with MPLS: %v", err)
	}
}

// arpRequest is a broadcast ARP request from mac and sender address sip for tip.
func arpRequest(mac [6]byte, sip, tip netip.Addr) []byte {
	arp := make([]byte, 42)
	copy(arp, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(arp[6:], mac[:])
	binary.BigEndian.PutUint16(arp[12:], etherARP)
	copy(arp[14:], []byte{0, 1, 8, 0, 6, 4, 0, 1})
	copy(arp[22:], mac[:])
	copy(arp[28:], sip.AsSlice())
	copy(arp[38:], tip.AsSlice())
	return arp
}

// TestTimeExceeded: a pod's packet whose TTL (hop limit) runs out at the vRouter is
// dropped and answered from the pod's gateway with ICMP "time exceeded" (ICMPv6
// "hop limit exceeded"), quoting the packet as it arrived, as a router does and
// traceroute expects; an ICMP error whose TTL runs out is dropped unanswered.
func TestTimeExceeded(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	pods := e.ifaces[1]

	f4 := udp4(mac, routerMAC, in.Addrs[0], netip.MustParseAddr("10.1.2.2"), 1, "trace")
	send(t, pool, c, pod, f4)
	e.Poll()
	got := recv(pool, c, pod)
	if len(got) != 1 {
		t.Fatalf("IPv4: pod got %d frames, want the ICMP error (ttl_expired %d)", len(got), pods.Stats().Drops[DropTTLExpired])
	}
	r := got[0]
	ip := r[14:34]
	if [6]byte(r[0:6]) != mac || [6]byte(r[6:12]) != routerMAC || naiveSum(ip) != 0xffff || ip[9] != 1 ||
		netip.AddrFrom4([4]byte(ip[12:16])) != in.Gateways[0] || netip.AddrFrom4([4]byte(ip[16:20])) != in.Addrs[0] {
		t.Fatalf("IPv4 frame %x", r[:34])
	}
	m := r[34:]
	if m[0] != 11 || m[1] != 0 || naiveSum(m) != 0xffff || !bytes.Equal(m[8:], f4[14:]) {
		t.Fatalf("ICMP type %d code %d, quote %x", m[0], m[1], m[8:])
	}

	f6 := udp6(mac, routerMAC, in.Addrs[1], netip.MustParseAddr("fd00:2::2"), 1, "trace6")
	send(t, pool, c, pod, f6)
	e.Poll()
	got = recv(pool, c, pod)
	if len(got) != 1 {
		t.Fatalf("IPv6: pod got %d frames, want the ICMPv6 error", len(got))
	}
	r = got[0]
	ip6 := r[14:54]
	m = r[54:]
	ps := append(append(append([]byte(nil), ip6[8:40]...), 0, 0, byte(len(m)>>8), byte(len(m))), 0, 0, 0, 58)
	if binary.BigEndian.Uint16(r[12:]) != etherIPv6 || ip6[6] != 58 || netip.AddrFrom16([16]byte(ip6[8:24])) != in.Gateways[1] ||
		netip.AddrFrom16([16]byte(ip6[24:40])) != in.Addrs[1] || m[0] != 3 || m[1] != 0 ||
		naiveSum(append(ps, m...)) != 0xffff || !bytes.Equal(m[8:], f6[14:]) {
		t.Fatalf("ICMPv6 frame %x", r)
	}

	// An ICMP error (destination unreachable) with TTL 1 gets no answer.
	icmpErr := append([]byte(nil), f4...)
	icmpErr[14+9], icmpErr[34] = 1, 3
	binary.BigEndian.PutUint16(icmpErr[24:], 0)
	binary.BigEndian.PutUint16(icmpErr[24:], ipv4Checksum(icmpErr[14:34]))
	send(t, pool, c, pod, icmpErr)
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 0 {
		t.Fatalf("an ICMP error was answered: %x", got[0])
	}
	if s := pods.Stats(); s.Drops[DropTTLExpired] != 3 || s.ICMPSent != 2 {
		t.Fatalf("ttl_expired %d, ICMP sent %d; want 3, 2", s.Drops[DropTTLExpired], s.ICMPSent)
	}
}

// TestExceptionOtherVRF: the exception TAP is the first VRF's: what the host sends
// into it is routed in that VRF. A pod of another VRF must not reach the host
// through it (its gateway, an exception route, unknown destinations), or the host's
// answers, routed in the first VRF, go to whichever pod there has the address:
// another tenant's, as VRFs may overlap. Such packets are dropped as
// no_exception_path; the first VRF's pods still reach the host.
func TestExceptionOtherVRF(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte(`
node: {name: n1, underlay_ip: 192.168.50.1}
uplink: {interface: ul}
exception: {tap: t, unknown: exception}
vrfs:
  - {name: red, vni: 100, label: 100}
  - name: blue
    vni: 200
    label: 200
    routes: [{prefix: 10.8.0.0/16, action: exception}]
interfaces:
  - {name: red1, type: veth, vrf: red, ips: [10.1.1.2], mac: "02:00:00:00:01:02", gateway: [10.1.1.1], veth: {interface: v1}}
  - {name: blue1, type: veth, vrf: blue, ips: [10.1.1.2], mac: "02:00:00:00:02:02", gateway: [10.1.1.1], veth: {interface: v2}}
`))
	if err != nil {
		t.Fatal(err)
	}
	var far []pmd.Port
	port := func() pmd.Port {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		far = append(far, a, b)
		return a
	}
	ifaces := []*Iface{{Name: "ul", Kind: Uplink, Queues: []pmd.Port{port()}}}
	for i, in := range c.Interfaces {
		ifaces = append(ifaces, &Iface{Name: in.Name, Kind: Pod, Queues: []pmd.Port{port()}, VRF: VRFID(i), MAC: [6]byte(in.HW),
			IP4: []uint32{IP4(in.Addrs[0])}, Gw4: []uint32{IP4(in.Gateways[0])}})
	}
	ifaces = append(ifaces, &Iface{Name: "t", Kind: Exception, Queues: []pmd.Port{port()}, VRF: VRFID(0), MAC: [6]byte{2, 0xee, 0, 0, 0, 1}})
	red, blue, host := far[3], far[5], far[7]
	e := New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC, Decap: encap.DecapOptions{Local: []netip.Addr{c.Node.Addr}}})
	tabs, err := Build(c, map[string]int{"red1": 1, "blue1": 2}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	e.Publish(tabs)
	cache := pool.NewCache(64)
	t.Cleanup(func() {
		e.Close()
		for _, p := range far {
			p.Close()
		}
		cache.Flush()
		pool.Close()
	})
	r1, b1 := c.Interfaces[0], c.Interfaces[1]
	for _, dst := range []string{"10.1.1.1", "10.8.0.1", "172.16.0.1"} { // gateway, exception route, unknown
		send(t, pool, cache, blue, udp4([6]byte(b1.HW), routerMAC, b1.Addrs[0], netip.MustParseAddr(dst), 64, "blue"))
		e.Poll()
		if got := recv(pool, cache, host); len(got) != 0 {
			t.Fatalf("blue's packet to %s reached the host, whose answer would go to red's 10.1.1.2", dst)
		}
	}
	if n := e.ifaces[2].Stats().Drops[DropNoException]; n != 3 {
		t.Errorf("blue: %d no_exception_path drops, want 3", n)
	}
	send(t, pool, cache, red, udp4([6]byte(r1.HW), routerMAC, r1.Addrs[0], r1.Gateways[0], 64, "red"))
	send(t, pool, cache, red, udp4([6]byte(r1.HW), routerMAC, r1.Addrs[0], netip.MustParseAddr("172.16.0.1"), 64, "red"))
	e.Poll()
	if got := recv(pool, cache, host); len(got) != 2 {
		t.Fatalf("red's packets to the host: %d arrived, want 2", len(got))
	}
	// Blue gets no proxy ARP answer for what its VRF routes to the host, which it
	// cannot reach; red does.
	send(t, pool, cache, blue, arpRequest([6]byte(b1.HW), b1.Addrs[0], netip.MustParseAddr("10.8.0.1")))
	e.Poll()
	if got := recv(pool, cache, blue); len(got) != 0 {
		t.Fatalf("blue's ARP for 10.8.0.1, routed to the unreachable host, was answered")
	}
	send(t, pool, cache, red, arpRequest([6]byte(r1.HW), r1.Addrs[0], netip.MustParseAddr("172.16.0.1")))
	e.Poll()
	if got := recv(pool, cache, red); len(got) != 0 {
		t.Fatalf("red's ARP for an unrouted address was answered")
	}
}

// TestTunnelledARP: an ARP frame inside VXLAN (a kernel VTEP floods them) is counted
// as ARP not answered, not as malformed: the vRouter routes, and answers ARP only on
// its pods' ports.
func TestTunnelledARP(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "vxlan")
	p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
	send(t, pool, c, n1.pod, udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "x"))
	n1.eng.Poll()
	got := recv(pool, c, n2.eng.ifaces[0].Queues[0]) // what node 1 sent on the underlay
	if len(got) != 1 || len(got[0]) < 50 {
		t.Fatalf("underlay got %d frames", len(got))
	}
	f := append(got[0][:50:50], arpRequest([6]byte(p1.HW), p1.Addrs[0], p2.Addrs[0])...)
	binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
	binary.BigEndian.PutUint16(f[24:], 0)
	binary.BigEndian.PutUint16(f[24:], ipv4Checksum(f[14:34]))
	binary.BigEndian.PutUint16(f[38:], uint16(len(f)-34))
	send(t, pool, c, n1.eng.ifaces[0].Queues[0], f)
	n2.eng.Poll()
	if got := recv(pool, c, n2.pod); len(got) != 0 {
		t.Fatalf("pod got %d frames", len(got))
	}
	if a, m := dropped(n2, 0, DropARP), dropped(n2, 0, DropMalformed); a != 1 || m != 0 {
		t.Fatalf("arp drops %d, malformed %d; want 1, 0", a, m)
	}
}

// TestTunnelledMulticast: broadcast and multicast inside VXLAN (a kernel VTEP floods
// them: DHCP, mDNS, IGMP, neighbour solicitations) are control traffic the vRouter
// does not route, as when a pod sends them: counted as control_ignored, not as
// ttl_expired or no_route, and never routed (here: to the host, as unknown).
func TestTunnelledMulticast(t *testing.T) {
	pool, c, n1, n2 := twoNodes(t, "vxlan")
	n2.eng.tables.Load().UnknownToHost = true
	p1 := n1.cfg.Interfaces[0]
	outer := tunnelOuter(t, pool, c, n1, n2)
	mac1 := [6]byte(p1.HW)
	inner := [][]byte{
		udp4(mac1, [6]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, p1.Addrs[0], netip.MustParseAddr("255.255.255.255"), 64, "dhcp"),
		udp4(mac1, [6]byte{1, 0, 0x5e, 0, 0, 0xfb}, p1.Addrs[0], netip.MustParseAddr("224.0.0.251"), 255, "mdns"),
		udp4(mac1, [6]byte{1, 0, 0x5e, 0, 0, 0x16}, p1.Addrs[0], netip.MustParseAddr("224.0.0.22"), 1, "igmp"),
		udp6(mac1, [6]byte{0x33, 0x33, 0, 0, 0, 0xfb}, netip.MustParseAddr("fd00:1::2"), netip.MustParseAddr("ff02::fb"), 255, "mdns6"),
	}
	for _, in := range inner {
		f := append(outer, in...)
		binary.BigEndian.PutUint16(f[16:], uint16(len(f)-14))
		binary.BigEndian.PutUint16(f[24:], 0)
		binary.BigEndian.PutUint16(f[24:], ipv4Checksum(f[14:34]))
		binary.BigEndian.PutUint16(f[38:], uint16(len(f)-34))
		send(t, pool, c, n1.eng.ifaces[0].Queues[0], f)
	}
	for i := 0; i < 2*exceptionEvery; i++ {
		n2.eng.Poll()
	}
	if got := recv(pool, c, n2.host); len(got) != 0 {
		t.Fatalf("host got %d tunnelled multicast frames", len(got))
	}
	if got := recv(pool, c, n2.pod); len(got) != 0 {
		t.Fatalf("pod got %d tunnelled multicast frames", len(got))
	}
	if a, ttl, nr := dropped(n2, 0, DropARP), dropped(n2, 0, DropTTLExpired), dropped(n2, 0, DropNoRoute); a != 4 || ttl != 0 || nr != 0 {
		t.Fatalf("control_ignored %d, ttl_expired %d, no_route %d; want 4, 0, 0", a, ttl, nr)
	}
}

// TestTimeExceededICMPErrorChain: an ICMP error whose TTL runs out gets no answer
// also when it arrives as a chain whose first segment ends with the IP header (a
// guest may split its packets so), where its ICMP type is not in the first segment:
// an ICMP error about it would be one about an ICMP error (RFC 1122 §3.2.2).
func TestTimeExceededICMPErrorChain(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	in := cfg.Interfaces[0]
	f := udp4([6]byte(in.HW), routerMAC, in.Addrs[0], netip.MustParseAddr("10.1.2.2"), 1, "unreachable")
	f[14+9], f[34] = 1, 3 // ICMP destination unreachable
	binary.BigEndian.PutUint16(f[24:], 0)
	binary.BigEndian.PutUint16(f[24:], ipv4Checksum(f[14:34]))
	sendChain(t, pool, c, pod, f, 34)
	e.Poll()
	if got, _ := recvChains(pool, c, pod); len(got) != 0 {
		t.Fatalf("an ICMP error split after its IP header was answered: %x", got[0])
	}
	if s := e.ifaces[1].Stats(); s.Drops[DropTTLExpired] != 1 || s.ICMPSent != 0 {
		t.Fatalf("ttl_expired %d, ICMP sent %d; want 1, 0", s.Drops[DropTTLExpired], s.ICMPSent)
	}
}

// TestTrailingBytes: bytes after the IP packet in its frame (Ethernet padding, a
// trailer) are not part of it: a padded minimum frame crosses an L3 tunnel without its
// padding, and a small DF packet in a frame longer than the tunnel's MTU, in one
// frame or a chain, is forwarded, not answered as too big.
func TestTrailingBytes(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp"} {
		t.Run(et, func(t *testing.T) {
			pool, c, n1, n2, drain := linkedNodes(t, et, 1500)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			small := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, "x")
			padded := append(append([]byte(nil), small...), make([]byte, 60-len(small))...)
			df := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, strings.Repeat("d", 100))
			df[14+6] = 0x40
			binary.BigEndian.PutUint16(df[24:], 0)
			binary.BigEndian.PutUint16(df[24:], ipv4Checksum(df[14:34]))
			long := append(append([]byte(nil), df...), make([]byte, 1600-len(df))...)
			df2 := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, strings.Repeat("e", 700))
			long2 := append(append([]byte(nil), df2...), make([]byte, 1600-len(df2))...)
			send(t, pool, c, n1.pod, padded)
			send(t, pool, c, n1.pod, long)
			sendChain(t, pool, c, n1.pod, long, 500)  // cut to one segment
			sendChain(t, pool, c, n1.pod, long2, 500) // cut to two
			sendChain(t, pool, c, n1.pod, long2, 371) // the packet ends with the second segment
			pump(n1, n2)
			got, segs := recvChains(pool, c, n2.pod)
			if len(got) != 5 || len(got[0]) != len(small) || !bytes.Equal(got[1], got[2]) || len(got[1]) != len(df) ||
				len(got[3]) != len(df2) || !bytes.Equal(got[3], got[4]) || !bytes.HasSuffix(got[4], []byte("eee")) {
				t.Fatalf("pod 2 got %d frames, want 5 of %d, %d, %d, %d, %d bytes; drops %v", len(got), len(small), len(df), len(df),
					len(df2), len(df2), n1.eng.ifaces[1].Stats().Drops)
			}
			if segs != 7 {
				t.Fatalf("pod 2 got %d segments, want 7", segs)
			}
			if back, _ := recvChains(pool, c, n1.pod); len(back) != 0 {
				t.Fatalf("pod 1 got %d frames back (ICMP too big for a small packet)", len(back))
			}
			drain()
		})
	}
}

// TestTimeExceededICMPNoHeader: an IPv4 packet that says it is ICMP but ends with its
// IP header (total length 20) has no ICMP type to tell whether it is an error; the
// byte after it in the frame is padding, not its type, and gets it no answer.
func TestTimeExceededICMPNoHeader(t *testing.T) {
	ip := make([]byte, 60-14) // a minimum frame's worth, zero padded
	ip[0], ip[8], ip[9] = 0x45, 1, 1
	binary.BigEndian.PutUint16(ip[2:], 20)
	copy(ip[12:], []byte{10, 1, 1, 2, 10, 1, 2, 2})
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	out := make([]byte, 1024)
	if n := timeExceeded4(out, ip, [6]byte{2, 1}, routerMAC, 0x0a010101); n != 0 {
		t.Fatalf("answered with %d bytes: the padding read as an ICMP type", n)
	}
}
