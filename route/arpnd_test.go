package route

import (
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	gwMAC   = MAC{0x02, 0, 0, 0, 0, 1}
	podMAC  = net.HardwareAddr{0x02, 0xaa, 0, 0, 0, 2}
	gw4     = netip.MustParseAddr("10.0.0.1")
	gw6     = netip.MustParseAddr("fd00::1")
	pod6    = netip.MustParseAddr("fd00::2")
	podAddr = netip.MustParseAddr("10.0.0.2")
)

func serialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

func arpRequest(t testing.TB, target netip.Addr) []byte {
	return serialize(t,
		&layers.Ethernet{SrcMAC: podMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
			ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: podMAC,
			SourceProtAddress: podAddr.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()})
}

func nsRequest(t testing.TB, src, dst, target netip.Addr, slla bool) []byte {
	ip := &layers.IPv6{Version: 6, NextHeader: layers.IPProtocolICMPv6, HopLimit: 255,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeNeighborSolicitation, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: target.AsSlice()}
	if slla {
		ns.Options = layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: podMAC}}
	}
	return serialize(t, &layers.Ethernet{SrcMAC: podMAC, DstMAC: net.HardwareAddr{0x33, 0x33, 0xff, 0, 0, 1},
		EthernetType: layers.EthernetTypeIPv6}, ip, icmp, ns)
}

func newResponder(t testing.TB) *Responder {
	var r Responder
	if err := r.Add(gw4, gwMAC); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(gw6, gwMAC); err != nil {
		t.Fatal(err)
	}
	return &r
}

func TestAnswerARP(t *testing.T) {
	r := newResponder(t)
	f := arpRequest(t, gw4)
	if err := r.AnswerARP(f); err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	eth, _ := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if arp == nil || eth == nil {
		t.Fatal("reply does not decode")
	}
	if arp.Operation != layers.ARPReply || MAC(arp.SourceHwAddress) != gwMAC ||
		netip.AddrFrom4([4]byte(arp.SourceProtAddress)) != gw4 ||
		netip.AddrFrom4([4]byte(arp.DstProtAddress)) != podAddr ||
		net.HardwareAddr(arp.DstHwAddress).String() != podMAC.String() ||
		eth.DstMAC.String() != podMAC.String() || MAC(eth.SrcMAC) != gwMAC {
		t.Fatalf("bad reply %+v %+v", eth, arp)
	}
	if err := r.AnswerARP(arpRequest(t, netip.MustParseAddr("10.0.0.9"))); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("unowned: %v", err)
	}
	if err := r.AnswerARP(f); !errors.Is(err, ErrNotARPRequest) {
		t.Fatalf("reply answered again: %v", err)
	}
	if err := r.AnswerARP(f[:30]); !errors.Is(err, ErrShortFrame) {
		t.Fatalf("short: %v", err)
	}
}

func TestAnswerNS(t *testing.T) {
	r := newResponder(t)
	for _, c := range []struct {
		name      string
		src, dst  netip.Addr
		slla      bool
		wantDst   netip.Addr
		wantSolic bool
	}{
		{"unicast", pod6, gw6, false, pod6, true},
		{"multicast-slla", pod6, netip.MustParseAddr("ff02::1:ff00:1"), true, pod6, true},
		{"dad", netip.IPv6Unspecified(), netip.MustParseAddr("ff02::1:ff00:1"), false, netip.IPv6LinkLocalAllNodes(), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := nsRequest(t, c.src, c.dst, gw6, c.slla)
			buf := make([]byte, len(f), 2048)
			copy(buf, f)
			out, err := r.AnswerNS(buf)
			if err != nil {
				t.Fatal(err)
			}
			p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
			ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			icmp, _ := p.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6)
			na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
			if ip == nil || icmp == nil || na == nil {
				t.Fatalf("reply does not decode: %v", p)
			}
			if got, _ := netip.AddrFromSlice(ip.DstIP); got != c.wantDst || ip.HopLimit != 255 {
				t.Fatalf("reply to %v hop %d", got, ip.HopLimit)
			}
			if got, _ := netip.AddrFromSlice(na.TargetAddress); got != gw6 || na.Solicited() != c.wantSolic || !na.Router() || !na.Override() {
				t.Fatalf("bad NA %+v", na)
			}
			if len(na.Options) != 1 || na.Options[0].Type != layers.ICMPv6OptTargetAddress || MAC(na.Options[0].Data) != gwMAC {
				t.Fatalf("bad options %+v", na.Options)
			}
			// checksum must verify over the pseudo-header
			if icmp6Checksum(out[14+8:14+40], out[14+40:]) != 0 {
				t.Fatal("bad checksum")
			}
		})
	}
	f := nsRequest(t, pod6, gw6, gw6, false)
	f[14+40+2] ^= 1 // corrupt checksum
	if _, err := r.AnswerNS(append([]byte(nil), f...)); !errors.Is(err, ErrNotSolicit) {
		t.Fatalf("bad checksum accepted: %v", err)
	}
	f = nsRequest(t, pod6, gw6, netip.MustParseAddr("fd00::99"), false)
	if _, err := r.AnswerNS(append(make([]byte, 0, 200), f...)); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("unowned: %v", err)
	}
	f = nsRequest(t, pod6, gw6, gw6, false)
	if _, err := r.AnswerNS(f[:len(f):len(f)]); !errors.Is(err, ErrShortBuffer) {
		t.Fatalf("short buffer: %v", err)
	}
	f = nsRequest(t, netip.IPv6Unspecified(), gw6, gw6, false) // DAD to unicast: invalid
	if _, err := r.AnswerNS(append(make([]byte, 0, 200), f...)); !errors.Is(err, ErrNotSolicit) {
		t.Fatalf("DAD to unicast accepted: %v", err)
	}
}

func TestAnswerAllocs(t *testing.T) {
	r := newResponder(t)
	a := arpRequest(t, gw4)
	ns := nsRequest(t, pod6, gw6, gw6, true)
	buf := make([]byte, 2048)
	n := testing.AllocsPerRun(100, func() {
		copy(buf, a)
		if r.AnswerARP(buf[:len(a)]) != nil {
			panic("arp")
		}
		copy(buf, ns)
		if _, err := r.AnswerNS(buf[:len(ns)]); err != nil {
			panic(err)
		}
	})
	if n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func FuzzAnswerARP(f *testing.F) {
	f.Add(arpRequest(f, gw4))
	f.Add(arpRequest(f, podAddr))
	r := newResponder(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := string(b)
		err := r.AnswerARP(b)
		if err != nil {
			if string(b) != orig {
				t.Fatal("frame changed on error")
			}
			return
		}
		off, _, _ := l2(b)
		if len(b) != len(orig) || b[off+6] != 0 || b[off+7] != 2 || MAC(b[6:12]) != gwMAC {
			t.Fatalf("bad reply %x", b)
		}
	})
}

func FuzzAnswerNS(f *testing.F) {
	f.Add(nsRequest(f, pod6, gw6, gw6, false))
	f.Add(nsRequest(f, pod6, gw6, gw6, true))
	f.Add(nsRequest(f, netip.IPv6Unspecified(), netip.MustParseAddr("ff02::1:ff00:1"), gw6, false))
	r := newResponder(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := string(b)
		buf := make([]byte, len(b), len(b)+128)
		copy(buf, b)
		out, err := r.AnswerNS(buf)
		if err != nil {
			if string(buf) != orig {
				t.Fatal("frame changed on error")
			}
			return
		}
		off, _, _ := l2(out)
		if icmp6Checksum(out[off+8:off+40], out[off+40:]) != 0 || out[off+40] != icmp6NA {
			t.Fatalf("bad reply %x", out)
		}
	})
}

// TestAnswerNSDADDestination: a DAD probe (unspecified source) is valid
// only towards a solicited-node address, ff02::1:ffXX:XXXX, all of whose
// other bytes are fixed (RFC 4291 §2.7.1, RFC 4861 §7.1.1).
func TestAnswerNSDADDestination(t *testing.T) {
	r := newResponder(t)
	for _, dst := range []string{"ff02::101:ff00:1", "ff02:1::1:ff00:1", "ff02::8000:0:1:ff00:1"} {
		f := nsRequest(t, netip.IPv6Unspecified(), netip.MustParseAddr(dst), gw6, false)
		if _, err := r.AnswerNS(append(make([]byte, 0, 200), f...)); !errors.Is(err, ErrNotSolicit) {
			t.Errorf("DAD probe to %s: %v, want ErrNotSolicit", dst, err)
		}
	}
	f := nsRequest(t, netip.IPv6Unspecified(), netip.MustParseAddr("ff02::1:ff00:1"), gw6, false)
	if _, err := r.AnswerNS(append(make([]byte, 0, 200), f...)); err != nil {
		t.Fatalf("DAD probe to the solicited-node address: %v", err)
	}
}

// TestResponderAddMapped: an IPv4-mapped address is owned as the IPv4
// address it maps, so it is refused for the same reasons.
func TestResponderAddMapped(t *testing.T) {
	var r Responder
	for _, a := range []string{"0.0.0.0", "::ffff:0.0.0.0", "224.0.0.1", "::ffff:224.0.0.1", "::"} {
		if err := r.Add(netip.MustParseAddr(a), gwMAC); !errors.Is(err, ErrBadPrefix) {
			t.Errorf("Add(%s) = %v, want ErrBadPrefix", a, err)
		}
	}
	f := arpRequest(t, netip.IPv4Unspecified())
	if err := r.AnswerARP(f); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("ARP request for 0.0.0.0 answered: %v", err)
	}
	if err := r.Add(netip.MustParseAddr("::ffff:10.0.0.1"), gwMAC); err != nil {
		t.Fatal(err)
	}
	if err := r.AnswerARP(arpRequest(t, gw4)); err != nil {
		t.Fatalf("mapped address not owned as IPv4: %v", err)
	}
}

// TestAnswerProxy: for a target it does not own, the responder answers with what
// the proxy returns, and not when the proxy declines; an owned target is answered
// without asking; a proxied neighbour advertisement has Override clear (RFC 4861
// §7.2.8), an owned one set. Proxied answers allocate nothing.
func TestAnswerProxy(t *testing.T) {
	r := newResponder(t)
	remote4, remote6 := netip.MustParseAddr("10.0.5.7"), netip.MustParseAddr("fd00::5:7")
	proxyMAC := MAC{0x02, 0, 0x5e, 0, 1, 0}
	asked := 0
	proxy := Proxy(func(a netip.Addr) (MAC, bool) {
		asked++
		return proxyMAC, a == remote4 || a == remote6
	})
	f := arpRequest(t, remote4)
	if err := r.AnswerARPProxy(f, proxy); err != nil {
		t.Fatal(err)
	}
	arp, _ := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default).Layer(layers.LayerTypeARP).(*layers.ARP)
	if arp == nil || arp.Operation != layers.ARPReply || MAC(arp.SourceHwAddress) != proxyMAC ||
		netip.AddrFrom4([4]byte(arp.SourceProtAddress)) != remote4 {
		t.Fatalf("proxied ARP reply %+v", arp)
	}
	if err := r.AnswerARPProxy(arpRequest(t, netip.MustParseAddr("10.0.5.8")), proxy); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("declined target: %v", err)
	}
	asked = 0
	if err := r.AnswerARPProxy(arpRequest(t, gw4), proxy); err != nil || asked != 0 {
		t.Fatalf("owned target: %v, proxy asked %d times", err, asked)
	}
	for _, c := range []struct {
		target   netip.Addr
		mac      MAC
		override bool
	}{{remote6, proxyMAC, false}, {gw6, gwMAC, true}} {
		out, err := r.AnswerNSProxy(append(make([]byte, 0, 2048), nsRequest(t, pod6, c.target, c.target, true)...), proxy)
		if err != nil {
			t.Fatalf("%v: %v", c.target, err)
		}
		p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.Default)
		na, _ := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
		if na == nil || len(na.Options) != 1 || MAC(na.Options[0].Data) != c.mac || na.Override() != c.override || !na.Router() || !na.Solicited() {
			t.Fatalf("%v: NA %+v", c.target, na)
		}
		if icmp6Checksum(out[14+8:14+40], out[14+40:]) != 0 {
			t.Fatalf("%v: bad checksum", c.target)
		}
	}
	if _, err := r.AnswerNSProxy(append(make([]byte, 0, 2048), nsRequest(t, pod6, pod6, netip.MustParseAddr("fd00::5:8"), true)...), proxy); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("declined NS target: %v", err)
	}
	a, ns := arpRequest(t, remote4), nsRequest(t, pod6, remote6, remote6, true)
	buf := make([]byte, 2048)
	if n := testing.AllocsPerRun(100, func() {
		copy(buf, a)
		r.AnswerARPProxy(buf[:len(a)], proxy)
		copy(buf, ns)
		r.AnswerNSProxy(buf[:len(ns)], proxy)
	}); n != 0 {
		t.Fatalf("%v allocs per proxied answer pair", n)
	}
}
