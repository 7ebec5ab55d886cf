package encap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dpkit/dpkit/pmd"
)

var (
	macA = [6]byte{2, 0, 0, 0, 0, 0xa}
	macB = [6]byte{2, 0, 0, 0, 0, 0xb}
	v4A  = netip.MustParseAddr("192.0.2.1")
	v4B  = netip.MustParseAddr("192.0.2.2")
	v6A  = netip.MustParseAddr("2001:db8::1")
	v6B  = netip.MustParseAddr("2001:db8::2")
)

func newPool(t testing.TB) *pmd.Pool {
	t.Helper()
	p, err := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// mkInnerIP builds an IPv4 or IPv6 UDP packet of total length n (at least 48).
func mkInnerIP(v6 bool, n int, ttl byte, tos byte) []byte {
	b := make([]byte, n)
	if v6 {
		binary.BigEndian.PutUint32(b, 6<<28|uint32(tos)<<20)
		binary.BigEndian.PutUint16(b[4:], uint16(n-40))
		b[6], b[7] = 17, ttl
		copy(b[8:], netip.MustParseAddr("fd00::1:2").AsSlice())
		copy(b[24:], netip.MustParseAddr("fd00::2:2").AsSlice())
		binary.BigEndian.PutUint16(b[40:], 1234)
		binary.BigEndian.PutUint16(b[42:], 5678)
		binary.BigEndian.PutUint16(b[44:], uint16(n-40))
		for i := 48; i < n; i++ {
			b[i] = byte(i)
		}
		// UDP over IPv6 must carry a checksum (RFC 8200 §8.1).
		c := ^fold(sum(sum(17+uint64(n-40), b[8:40]), b[40:]))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(b[46:], c)
		return b
	}
	b[0], b[1] = 0x45, tos
	binary.BigEndian.PutUint16(b[2:], uint16(n))
	b[6] = 0x40 // DF
	b[8], b[9] = ttl, 17
	copy(b[12:], []byte{10, 1, 1, 2, 10, 1, 2, 2})
	binary.BigEndian.PutUint16(b[10:], checksum(b[:20]))
	binary.BigEndian.PutUint16(b[20:], 1234)
	binary.BigEndian.PutUint16(b[22:], 5678)
	binary.BigEndian.PutUint16(b[24:], uint16(n-20))
	for i := 28; i < n; i++ {
		b[i] = byte(i)
	}
	c := ^fold(sum(sum(17+uint64(n-20), b[12:20]), b[20:]))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[26:], c)
	return b
}

func innerEth(v6 bool, n int, vlan uint16) []byte {
	ip := mkInnerIP(v6, n-14, 33, 0xb8)
	e := make([]byte, 14, n+4)
	copy(e, []byte{2, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2})
	et := uint16(EtherIPv4)
	if v6 {
		et = EtherIPv6
	}
	binary.BigEndian.PutUint16(e[12:], et)
	return append(e, ip...)
}

func load(t testing.TB, pool *pmd.Pool, c *pmd.Cache, b []byte) pmd.Pkt {
	t.Helper()
	var pk [1]pmd.Pkt
	if c.Alloc(pk[:]) != 1 || !pool.Append(&pk[0], len(b)) {
		t.Fatal("alloc")
	}
	copy(pool.Data(&pk[0]), b)
	return pk[0]
}

func findVariant(t testing.TB, name string) variant {
	for _, v := range variants() {
		if v.name == name {
			return v
		}
	}
	t.Fatalf("no variant %s", name)
	return variant{}
}

type variant struct {
	name  string
	opts  Options
	inner []byte
}

// variants lists every encapsulation × outer family × label/VLAN shape.
func variants() []variant {
	var vs []variant
	for _, v6 := range []bool{false, true} {
		src, dst, fam := v4A, v4B, "4"
		if v6 {
			src, dst, fam = v6A, v6B, "6"
		}
		base := Options{SrcMAC: macA, DstMAC: macB, Src: src, Dst: dst, DSCP: -1}
		add := func(name string, o Options, inner []byte) {
			vs = append(vs, variant{name + "/outer" + fam, o, inner})
		}
		o := base
		o.Type, o.VNI = VXLAN, 0xabcdef
		add("vxlan", o, innerEth(false, 200, 0))
		o.InnerVLAN = 100
		add("vxlan-vlan", o, innerEth(true, 300, 0))
		o.InnerVLAN, o.OuterVLAN = 0, 7
		add("vxlan-outervlan", o, innerEth(false, 64, 0))
		for _, typ := range []Type{MPLSoUDP, MPLSoGRE} {
			o := base
			o.Type = typ
			o.Labels = []Label{{Label: 100, TC: 5}}
			add(typ.String()+"-1label", o, mkInnerIP(false, 100, 40, 0x28))
			o.Labels = []Label{{Label: 16, TTL: 9}, {Label: 0xfffff, TC: 1, TTL: 0}}
			add(typ.String()+"-2labels", o, mkInnerIP(true, 120, 41, 0x48))
			o.Labels = []Label{{Label: 300}, {Label: 301}, {Label: 302}}
			o.InnerEthernet = true
			add(typ.String()+"-3labels-l2", o, innerEth(false, 90, 0))
		}
		o = base
		o.Type = GRE
		add("gre-ip4", o, mkInnerIP(false, 80, 20, 0))
		add("gre-ip6", o, mkInnerIP(true, 80, 20, 0))
		// Outer TTL, DSCP and DF set rather than copied.
		o = base
		o.Type, o.VNI, o.TTL, o.DSCP, o.DF = VXLAN, 7, 17, 46, DFClear
		add("vxlan-policy", o, innerEth(false, 120, 0))
		o = base
		o.Type, o.Labels, o.DF = MPLSoUDP, []Label{{Label: 55}}, DFCopy
		add("mplsoudp-dfcopy", o, mkInnerIP(false, 64, 9, 0x03))
		o.SrcPortMin, o.SrcPortMax = 60000, 60000
		add("mplsoudp-fixedport", o, mkInnerIP(false, 64, 9, 0x03))
		if v6 {
			// The IPv6 UDP checksum derived from the inner packet's, and left zero.
			o = base
			o.Type, o.VNI, o.UDP6Checksum = VXLAN, 99, Csum6Inner
			add("vxlan-csuminner", o, innerEth(false, 333, 0))
			add("vxlan-csuminner-ip6", o, innerEth(true, 200, 0))
			o.InnerVLAN = 12
			add("vxlan-csuminner-vlan", o, innerEth(false, 100, 0))
			o = base
			o.Type, o.Labels, o.UDP6Checksum = MPLSoUDP, []Label{{Label: 77}, {Label: 78}}, Csum6Inner
			add("mplsoudp-csuminner", o, mkInnerIP(true, 150, 5, 0))
			o.UDP6Checksum = Csum6Zero
			add("mplsoudp-csumzero", o, mkInnerIP(false, 150, 5, 0))
		}
	}
	return vs
}

func TestRoundTrip(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	for _, v := range variants() {
		t.Run(v.name, func(t *testing.T) {
			tun, err := NewTunnel(v.opts)
			if err != nil {
				t.Fatal(err)
			}
			pk := load(t, pool, c, v.inner)
			defer c.Free([]pmd.Pkt{pk})
			off0 := pk.Off
			if err := tun.Encap(pool, &pk); err != nil {
				t.Fatal(err)
			}
			frame := append([]byte(nil), pool.Data(&pk)...)
			checkGopacket(t, v, frame)

			d := NewDecapper(DecapOptions{Local: []netip.Addr{v.opts.Dst}, VerifyUDPChecksum: true, MPLSPayloadEthernet: v.opts.InnerEthernet})
			var r Result
			if why := d.Decap(pool, &pk, &r); why != OK {
				t.Fatalf("decap: %v", why)
			}
			if r.Type != v.opts.Type || r.Src != v.opts.Src {
				t.Fatalf("result %+v", r)
			}
			want := v.inner
			if v.opts.InnerVLAN != 0 {
				want = append(append(append([]byte(nil), v.inner[:12]...), 0x81, 0, byte(v.opts.InnerVLAN>>8), byte(v.opts.InnerVLAN)), v.inner[12:]...)
			}
			if !bytes.Equal(pool.Data(&pk), want) {
				t.Fatalf("inner differs after round trip")
			}
			if v.opts.InnerVLAN == 0 && pk.Off != off0 {
				t.Fatalf("offset %d, was %d", pk.Off, off0)
			}
			switch v.opts.Type {
			case VXLAN:
				if r.VNI != v.opts.VNI {
					t.Fatalf("VNI %x", r.VNI)
				}
			case MPLSoUDP, MPLSoGRE:
				if r.NLabels != len(v.opts.Labels) || r.Label() != v.opts.Labels[len(v.opts.Labels)-1].Label {
					t.Fatalf("labels %+v", r.Labels[:r.NLabels])
				}
				for i, l := range v.opts.Labels {
					if r.Labels[i].Label != l.Label || r.Labels[i].TC != l.TC {
						t.Fatalf("label %d: %+v want %+v", i, r.Labels[i], l)
					}
					if l.TTL != 0 && r.Labels[i].TTL != l.TTL {
						t.Fatalf("label %d TTL %d want %d", i, r.Labels[i].TTL, l.TTL)
					}
				}
			}
			d.Flush()
			if st := d.Stats(); st.Decapsulated != 1 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// checkGopacket decodes the frame with gopacket, an independent decoder, and compares
// every field dpkit wrote.
func checkGopacket(t *testing.T, v variant, frame []byte) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	// gopacket guesses an MPLS payload's type from its first nibble, so it cannot
	// decode an Ethernet payload (an L2 VPN); checkLabels looks at that payload itself.
	if el := p.ErrorLayer(); el != nil && !(v.opts.InnerEthernet && v.opts.Type != VXLAN) {
		t.Fatalf("gopacket: %v", el.Error())
	}
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.SrcMAC, v.opts.SrcMAC[:]) || !bytes.Equal(eth.DstMAC, v.opts.DstMAC[:]) {
		t.Fatalf("MACs %v %v", eth.SrcMAC, eth.DstMAC)
	}
	if v.opts.OuterVLAN != 0 {
		d := p.Layer(layers.LayerTypeDot1Q)
		if d == nil || d.(*layers.Dot1Q).VLANIdentifier != v.opts.OuterVLAN {
			t.Fatalf("outer VLAN: %v", d)
		}
	}
	innerLen := len(v.inner)
	if v.opts.InnerVLAN != 0 {
		innerLen += 4
	}
	var ttl uint8
	if v.opts.Src.Is4() {
		ip := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.SrcIP.String() != v.opts.Src.String() || ip.DstIP.String() != v.opts.Dst.String() {
			t.Fatalf("outer IPs %v %v", ip.SrcIP, ip.DstIP)
		}
		if int(ip.Length) != len(ip.Contents)+len(ip.Payload) {
			t.Fatalf("IPv4 length %d", ip.Length)
		}
		hdr := append([]byte(nil), ip.Contents...)
		hdr[10], hdr[11] = 0, 0
		if checksum(hdr) != ip.Checksum {
			t.Fatalf("IPv4 checksum %#x, want %#x", ip.Checksum, checksum(hdr))
		}
		wantDF := v.opts.DF != DFClear
		if v.opts.DF == DFCopy && innerVer(v) == 4 {
			wantDF = v.inner[innerOff(v)+6]&0x40 != 0
		}
		if (ip.Flags&layers.IPv4DontFragment != 0) != wantDF || ip.FragOffset != 0 || ip.Flags&layers.IPv4MoreFragments != 0 {
			t.Fatalf("flags %v, want DF %v", ip.Flags, wantDF)
		}
		ttl = ip.TTL
		checkTOS(t, v, ip.TOS)
	} else {
		ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip.SrcIP.String() != v.opts.Src.String() || ip.DstIP.String() != v.opts.Dst.String() {
			t.Fatalf("outer IPs %v %v", ip.SrcIP, ip.DstIP)
		}
		if int(ip.Length) != len(ip.Payload) {
			t.Fatalf("IPv6 payload length %d vs %d", ip.Length, len(ip.Payload))
		}
		ttl = ip.HopLimit
		checkTOS(t, v, ip.TrafficClass)
	}
	wantTTL := v.opts.TTL
	if wantTTL == 0 {
		wantTTL = innerTTL(v)
	}
	if ttl != wantTTL {
		t.Fatalf("outer TTL %d, want %d", ttl, wantTTL)
	}
	switch v.opts.Type {
	case VXLAN, MPLSoUDP:
		u := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
		wantPort := layers.UDPPort(PortVXLAN)
		if v.opts.Type == MPLSoUDP {
			wantPort = PortMPLSoUDP
		}
		lo, hi := v.opts.portRange()
		if u.DstPort != wantPort || u.SrcPort < layers.UDPPort(lo) || u.SrcPort > layers.UDPPort(hi) {
			t.Fatalf("UDP ports %d -> %d", u.SrcPort, u.DstPort)
		}
		if int(u.Length) != 8+len(u.Payload) {
			t.Fatalf("UDP length %d", u.Length)
		}
		if v.opts.Src.Is6() && v.opts.UDP6Checksum == Csum6Zero {
			if u.Checksum != 0 {
				t.Fatalf("IPv6 UDP checksum %#x, want zero", u.Checksum)
			}
		} else if v.opts.Src.Is6() {
			if u.Checksum == 0 {
				t.Fatal("IPv6 UDP checksum is zero")
			}
			ip := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
			u2 := *u
			u2.SetNetworkLayerForChecksum(ip)
			buf := gopacket.NewSerializeBuffer()
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true}, &u2, gopacket.Payload(u.Payload)); err != nil {
				t.Fatal(err)
			}
			if want := binary.BigEndian.Uint16(buf.Bytes()[6:]); want != u.Checksum {
				t.Fatalf("UDP checksum %#x, gopacket computes %#x", u.Checksum, want)
			}
		} else if u.Checksum != 0 {
			t.Fatalf("IPv4 UDP checksum %#x, want 0", u.Checksum)
		}
		if v.opts.Type == VXLAN {
			vx := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
			if !vx.ValidIDFlag || vx.VNI != v.opts.VNI || len(vx.Payload) != innerLen {
				t.Fatalf("VXLAN %+v", vx)
			}
			return
		}
		checkLabels(t, v, u.Payload, innerLen)
	case MPLSoGRE, GRE:
		g := p.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if g.ChecksumPresent || g.KeyPresent || g.SeqPresent || g.Version != 0 {
			t.Fatalf("GRE flags %+v", g)
		}
		if v.opts.Type == GRE {
			want := layers.EthernetTypeIPv4
			if v.inner[0]>>4 == 6 {
				want = layers.EthernetTypeIPv6
			}
			if g.Protocol != want || !bytes.Equal(g.Payload, v.inner) {
				t.Fatalf("GRE protocol %v", g.Protocol)
			}
			return
		}
		if g.Protocol != layers.EthernetTypeMPLSUnicast {
			t.Fatalf("GRE protocol %v", g.Protocol)
		}
		checkLabels(t, v, g.Payload, innerLen)
	}
}

// innerVer and innerOff locate the inner IP header of a variant's payload (before an
// inner VLAN tag is inserted).
func innerVer(v variant) int {
	ver, _ := innerIP(v.inner, v.opts.Type == VXLAN || v.opts.InnerEthernet)
	return ver
}

func innerOff(v variant) int {
	_, off := innerIP(v.inner, v.opts.Type == VXLAN || v.opts.InnerEthernet)
	return off
}

func innerTTL(v variant) uint8 {
	switch off := innerOff(v); innerVer(v) {
	case 4:
		return v.inner[off+8]
	case 6:
		return v.inner[off+7]
	}
	return DefaultTTL
}

// checkTOS: the outer DSCP is the tunnel's or the inner one, the ECN bits always the
// inner ones (RFC 6040 normal mode).
func checkTOS(t *testing.T, v variant, tos uint8) {
	t.Helper()
	var inner uint8
	switch off := innerOff(v); innerVer(v) {
	case 4:
		inner = v.inner[off+1]
	case 6:
		inner = uint8(binary.BigEndian.Uint16(v.inner[off:]) >> 4)
	}
	want := inner
	if v.opts.DSCP >= 0 {
		want = uint8(v.opts.DSCP)<<2 | inner&3
	}
	if tos != want {
		t.Fatalf("outer TOS %#x, want %#x (inner %#x)", tos, want, inner)
	}
}

func checkLabels(t *testing.T, v variant, b []byte, innerLen int) {
	t.Helper()
	p := gopacket.NewPacket(b, layers.LayerTypeMPLS, gopacket.DecodeOptions{DecodeStreamsAsDatagrams: true})
	var got []*layers.MPLS
	for _, l := range p.Layers() {
		if m, ok := l.(*layers.MPLS); ok {
			got = append(got, m)
		}
	}
	if len(got) != len(v.opts.Labels) {
		t.Fatalf("gopacket found %d labels, want %d", len(got), len(v.opts.Labels))
	}
	innerTTL := v.inner[8]
	if v.inner[0]>>4 == 6 {
		innerTTL = v.inner[7]
	}
	if v.opts.InnerEthernet {
		innerTTL = v.inner[14+8]
	}
	for i, m := range got {
		l := v.opts.Labels[i]
		wantTTL := l.TTL
		if wantTTL == 0 {
			wantTTL = innerTTL
		}
		if m.Label != l.Label || m.TrafficClass != l.TC || m.TTL != wantTTL || m.StackBottom != (i == len(got)-1) {
			t.Fatalf("label %d: gopacket %+v, want %+v ttl %d", i, m, l, wantTTL)
		}
	}
	if n := len(got[len(got)-1].Payload); n != innerLen {
		t.Fatalf("payload after labels %d, want %d", n, innerLen)
	}
}

func TestOptionsValidate(t *testing.T) {
	good := Options{Type: VXLAN, Src: v4A, Dst: v4B, DSCP: -1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for i, mut := range []func(*Options){
		func(o *Options) { o.Type = 0 },
		func(o *Options) { o.VNI = 1 << 24 },
		func(o *Options) { o.Dst = v6B },
		func(o *Options) { o.Src = netip.Addr{} },
		func(o *Options) { o.Type = MPLSoUDP },
		func(o *Options) { o.Type, o.Labels = MPLSoGRE, []Label{{Label: 1 << 20}} },
		func(o *Options) { o.Type, o.Labels = MPLSoGRE, make([]Label, MaxLabels+1) },
		func(o *Options) { o.Labels = []Label{{Label: 5}} },
		func(o *Options) { o.Type, o.InnerEthernet = GRE, true },
		func(o *Options) { o.InnerVLAN = 4095 },
		func(o *Options) { o.DSCP = 64 },
		func(o *Options) { o.SrcPortMin, o.SrcPortMax = 6000, 5000 },
		func(o *Options) { o.Src = netip.MustParseAddr("::ffff:1.2.3.4"); o.Dst = o.Src },
	} {
		o := good
		mut(&o)
		if _, err := NewTunnel(o); !errors.Is(err, ErrOptions) {
			t.Errorf("mutation %d accepted: %v", i, err)
		}
	}
}

func TestEncapErrors(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8, Headroom: 128, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := pool.NewCache(4)
	defer c.Flush()
	tun, _ := NewTunnel(Options{Type: MPLSoUDP, Src: v6A, Dst: v6B, Labels: make([]Label, 8), DSCP: -1})
	pk := load(t, pool, c, mkInnerIP(false, 60, 1, 0))
	pk.Adj(0)
	pk.Off = 20 // not enough headroom for 14+40+8+32
	before := pk
	if err := tun.Encap(pool, &pk); !errors.Is(err, ErrNoHeadroom) || pk != before {
		t.Fatalf("err %v, pkt %+v", err, pk)
	}
	c.Free([]pmd.Pkt{pk})
}

func TestSourcePortFromHash(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun, _ := NewTunnel(Options{Type: VXLAN, Src: v4A, Dst: v4B, DSCP: -1, SrcPortMin: 50000, SrcPortMax: 50009})
	seen := map[uint16]bool{}
	for i := 0; i < 200; i++ {
		inner := innerEth(false, 100, 0)
		inner[14+12+3] = byte(i) // vary the inner source address
		pk := load(t, pool, c, inner)
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		sp := binary.BigEndian.Uint16(pool.Data(&pk)[14+20:])
		if sp < 50000 || sp > 50009 {
			t.Fatalf("source port %d outside range", sp)
		}
		seen[sp] = true
		c.Free([]pmd.Pkt{pk})
	}
	if len(seen) < 8 {
		t.Fatalf("only %d distinct source ports over 200 flows", len(seen))
	}
}

func TestFlowHashSymmetric(t *testing.T) {
	a := mkInnerIP(false, 60, 64, 0)
	b := append([]byte(nil), a...)
	copy(b[12:16], a[16:20])
	copy(b[16:20], a[12:16])
	copy(b[20:22], a[22:24])
	copy(b[22:24], a[20:22])
	if FlowHash(a, false, HashOptions{}) == FlowHash(b, false, HashOptions{}) {
		t.Error("asymmetric hash equal for both directions (unlikely)")
	}
	if FlowHash(a, false, HashOptions{Symmetric: true}) != FlowHash(b, false, HashOptions{Symmetric: true}) {
		t.Error("symmetric hash differs between directions")
	}
	a6 := mkInnerIP(true, 60, 64, 0)
	if FlowHash(a6, false, HashOptions{}) == FlowHash(a6, false, HashOptions{Seed: 1}) {
		t.Error("seed changes nothing")
	}
}

// FlowHash takes an IPv6 packet's ports whatever its addresses: flows between two
// hosts that differ only in their ports hash apart, even to a destination whose
// interface identifier's low 32 bits are all ones (a port bit OR-ed into an address
// bit that is set is lost).
func TestFlowHashIPv6Ports(t *testing.T) {
	p := mkInnerIP(true, 60, 64, 0)
	copy(p[24:], netip.MustParseAddr("fd00::ffff:ffff").AsSlice())
	for _, sym := range []bool{false, true} {
		seen := map[uint32]bool{}
		for sp := range 64 {
			binary.BigEndian.PutUint16(p[40:], 40000+uint16(sp))
			seen[FlowHash(p, false, HashOptions{Symmetric: sym})] = true
		}
		if len(seen) < 60 {
			t.Errorf("symmetric %v: %d distinct hashes over 64 source ports", sym, len(seen))
		}
	}
}

// A flow of non-IP Ethernet frames (one pair of MAC addresses, one ethertype: here
// ARP-sized and jumbo PPPoE session frames) keeps one VXLAN source port whatever its
// packets' lengths, and frames of other hosts spread. FlowHash hashed unparsable
// packets on their length, so one such flow's packets took as many underlay ECMP paths
// as it had sizes (and were reordered), and a chain's first segment hashed unlike the
// whole packet.
func TestFlowHashNonIPIgnoresLength(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun := mustTunnel(t, Options{Type: VXLAN, VNI: 5, Src: v4A, Dst: v4B, DSCP: -1})
	frame := func(mac byte, n int) []byte {
		f := make([]byte, n)
		copy(f, []byte{2, 0, 0, 0, 0, mac, 2, 0, 0, 0, 0, 0xee, 0x88, 0x64}) // PPPoE session
		for i := 14; i < n; i++ {
			f[i] = byte(i * 7)
		}
		if n > 14 {
			f[14] = 0x11 // PPPoE version and type (RFC 2516)
		}
		return f
	}
	srcPort := func(f []byte) uint16 {
		pk := load(t, pool, c, f)
		defer c.Free([]pmd.Pkt{pk})
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		return binary.BigEndian.Uint16(pool.Data(&pk)[34:])
	}
	want := srcPort(frame(1, 60))
	for _, n := range []int{14, 61, 100, 1514} {
		if got := srcPort(frame(1, n)); got != want {
			t.Errorf("a %d-byte frame of the flow leaves from port %d, a 60-byte one from %d", n, got, want)
		}
	}
	seen := map[uint16]bool{}
	for mac := range 64 {
		seen[srcPort(frame(byte(mac), 60))] = true
	}
	if len(seen) < 32 {
		t.Errorf("64 hosts' flows share %d source ports", len(seen))
	}
	for _, sym := range []bool{false, true} {
		a, b := frame(1, 80), frame(1, 80)
		copy(b[0:6], a[6:12])
		copy(b[6:12], a[0:6])
		if eq := FlowHash(a, true, HashOptions{Symmetric: sym}) == FlowHash(b, true, HashOptions{Symmetric: sym}); eq != sym {
			t.Errorf("symmetric %v: both directions hash alike: %v", sym, eq)
		}
	}
}

func ExampleTunnel_Encap() {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	defer pool.Close()
	tun, _ := NewTunnel(Options{Type: MPLSoUDP, SrcMAC: macA, DstMAC: macB,
		Src: v4A, Dst: v4B, Labels: []Label{{Label: 100}}, DSCP: -1})
	c := pool.NewCache(8)
	var pk [1]pmd.Pkt
	c.Alloc(pk[:])
	pool.Append(&pk[0], 60)
	copy(pool.Data(&pk[0]), mkInnerIP(false, 60, 64, 0))
	tun.Encap(pool, &pk[0])
	fmt.Println(len(pool.Data(&pk[0])), "bytes on the wire")

	d := NewDecapper(DecapOptions{})
	var r Result
	fmt.Println(d.Decap(pool, &pk[0], &r), r.Type, r.Label(), len(pool.Data(&pk[0])))
	c.Free(pk[:])
	c.Flush()
	// Output:
	// 106 bytes on the wire
	// ok mplsoudp 100 60
}

// A packet whose transport checksum a virtio driver left partial is finished before
// the tunnel hides it from the device.
func TestEncapFinishesPartialChecksum(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	for _, v6 := range []bool{false, true} {
		want := mkTransport(v6, 6, []byte("partial checksum payload"), 0)
		p := append([]byte(nil), want...)
		hl := 20
		var pseudo uint64
		if v6 {
			hl = 40
			pseudo = sum(6+uint64(len(p)-40), p[8:40])
		} else {
			pseudo = sum(6+uint64(len(p)-20), p[12:20])
		}
		binary.BigEndian.PutUint16(p[hl+16:], fold(pseudo))
		tun := mustTunnel(t, Options{Type: MPLSoUDP, Src: v6A, Dst: v6B, Labels: []Label{{Label: 9}}, DSCP: -1, UDP6Checksum: Csum6Inner})
		pk := load(t, pool, c, p)
		pk.Flags |= pmd.PktCsumPartial
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		if pk.Flags&pmd.PktCsumPartial != 0 {
			t.Fatal("flag still set")
		}
		d := NewDecapper(DecapOptions{VerifyUDPChecksum: true})
		var r Result
		if why := d.Decap(pool, &pk, &r); why != OK || !bytes.Equal(pool.Data(&pk), want) {
			t.Fatalf("%v: inner differs from the finished packet", why)
		}
		c.Free([]pmd.Pkt{pk})
	}
	// One it cannot finish is refused, unchanged.
	tun := mustTunnel(t, Options{Type: GRE, Src: v4A, Dst: v4B, DSCP: -1})
	pk := load(t, pool, c, mkTransport(false, 1, []byte("icmp"), 0))
	pk.Flags |= pmd.PktCsumPartial
	before := pk
	if err := tun.Encap(pool, &pk); err != ErrPartialCsum || pk != before {
		t.Fatalf("err %v", err)
	}
	c.Free([]pmd.Pkt{pk})
}

// A partial checksum in an Ethernet payload without an IP header Encap can find is
// refused like any other it cannot finish, the frame untouched. Each frame here starts
// with bytes that read as an IPv4 UDP header (destination MAC 45:00:00:..., protocol
// 17 in the source MAC), which finishing from the payload's start would have taken.
func TestEncapPartialChecksumNotIP(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	frame := func(n, total int, types ...uint16) []byte {
		f := make([]byte, n)
		for i := range f {
			f[i] = byte(i)
		}
		copy(f, []byte{0x45, 0, byte(total >> 8), byte(total), 0, 1, 2, 0, 0, 17, 0, 2})
		for i, et := range types {
			binary.BigEndian.PutUint16(f[12+4*i:], et)
		}
		return f
	}
	cases := []struct {
		name  string
		inner []byte
	}{
		{"not-ip", frame(100, 64, 0x88b5)}, // IEEE 802 local experimental ethertype
		{"three-tags", frame(100, 64, EtherVLAN, EtherVLAN, EtherVLAN, EtherIPv4)},
		{"truncated-ip4", frame(30, 28, EtherIPv4)},
	}
	for _, cs := range cases {
		for _, typ := range []Type{VXLAN, MPLSoUDP} {
			o := Options{Type: typ, SrcMAC: macA, DstMAC: macB, Src: v4A, Dst: v4B}
			if typ == VXLAN {
				o.VNI = 1
			} else {
				o.Labels, o.InnerEthernet = []Label{{Label: 3}}, true
			}
			tun := mustTunnel(t, o)
			pk := load(t, pool, c, cs.inner)
			pk.Flags |= pmd.PktCsumPartial
			before := pk
			err := tun.Encap(pool, &pk)
			if err != ErrPartialCsum || pk != before {
				t.Errorf("%s in %v: %v, want %v", cs.name, typ, err, ErrPartialCsum)
			}
			if !bytes.Equal(pool.Data(&before), cs.inner) {
				t.Errorf("%s in %v: payload changed", cs.name, typ)
			}
			c.Free([]pmd.Pkt{pk})
		}
	}
}

func TestEncapInnerVLANShort(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun := mustTunnel(t, Options{Type: VXLAN, Src: v4A, Dst: v4B, DSCP: -1, InnerVLAN: 5})
	pk := load(t, pool, c, make([]byte, 10))
	before := pk
	if err := tun.Encap(pool, &pk); !errors.Is(err, ErrNotTaggable) || pk != before {
		t.Fatalf("err %v", err)
	}
	c.Free([]pmd.Pkt{pk})
}

// DFClear gives each datagram its own identification (RFC 6864 §4.1).
func TestDFClearIDs(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun := mustTunnel(t, Options{Type: GRE, Src: v4A, Dst: v4B, DSCP: -1, DF: DFClear})
	seen := map[uint16]bool{}
	for i := 0; i < 10; i++ {
		pk := load(t, pool, c, mkInnerIP(false, 60, 3, 0))
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		ip := pool.Data(&pk)[14:]
		if ip[6]&0x40 != 0 || checksum(ip[:20]) != 0 {
			t.Fatal("DF set or bad checksum")
		}
		seen[binary.BigEndian.Uint16(ip[4:])] = true
		c.Free([]pmd.Pkt{pk})
	}
	if len(seen) != 10 {
		t.Fatalf("%d distinct ids in 10 datagrams", len(seen))
	}
}

// RFC 6040 §4.1: the outer ECN field is the inner one whatever the DSCP, TTL and DF
// policies, on the fast and the general path alike; a non-IP payload gets Not-ECT.
func TestEncapCopiesECN(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	// An ARP request in the VXLAN payload: no IP header to copy from.
	arp := append(append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 1, 1, 1, 1, 1, 8, 6}, make([]byte, 28)...), make([]byte, 18)...)
	for _, v6 := range []bool{false, true} {
		src, dst := v4A, v4B
		if v6 {
			src, dst = v6A, v6B
		}
		for _, dscp := range []int8{0, 46, -1} {
			for _, ecn := range []uint8{0, 1, 2, 3} {
				vx := Options{Type: VXLAN, VNI: 7, TTL: 17, DSCP: dscp, DF: DFClear}
				l3 := Options{Type: MPLSoUDP, Labels: []Label{{Label: 5, TTL: 9}}, TTL: 200, DSCP: dscp, UDP6Checksum: Csum6Zero}
				cases := []struct {
					name    string
					o       Options
					inner   []byte
					innerTC uint8 // the inner TOS or traffic class
				}{
					{"vxlan-ip4", vx, innerEth(false, 120, 0), 0xb8 | ecn},
					{"vxlan-ip6", vx, innerEth(true, 120, 0), 0x48 | ecn},
					{"mplsoudp-ip4", l3, mkInnerIP(false, 100, 9, 0x28|ecn), 0x28 | ecn},
					{"mplsoudp-ip6", l3, mkInnerIP(true, 100, 9, 0x28|ecn), 0x28 | ecn},
					{"vxlan-arp", vx, arp, 0},
				}
				for _, cs := range cases {
					cs.o.SrcMAC, cs.o.DstMAC, cs.o.Src, cs.o.Dst = macA, macB, src, dst
					switch cs.name {
					case "vxlan-ip4":
						ip := cs.inner[14:34]
						ip[1] = cs.innerTC
						binary.BigEndian.PutUint16(ip[10:], 0)
						binary.BigEndian.PutUint16(ip[10:], checksum(ip))
					case "vxlan-ip6":
						binary.BigEndian.PutUint16(cs.inner[14:], 0x6000|uint16(cs.innerTC)<<4)
					}
					want := cs.innerTC
					if dscp >= 0 {
						want = uint8(dscp)<<2 | cs.innerTC&3
					}
					tun := mustTunnel(t, cs.o)
					for _, general := range []bool{false, true} {
						pk := load(t, pool, c, cs.inner)
						var err error
						if general {
							err = tun.encapSlow(pool.Bytes(pk.Frame), &pk, nil)
						} else {
							err = tun.Encap(pool, &pk)
						}
						if err != nil {
							t.Fatal(err)
						}
						ip := pool.Data(&pk)[14:]
						got := ip[1]
						if v6 {
							got = uint8(binary.BigEndian.Uint16(ip) >> 4)
						}
						if got != want {
							t.Errorf("%s, IPv6 outer %v, DSCP %d, ECN %d, general path %v: outer TOS %#x, want %#x",
								cs.name, v6, dscp, ecn, general, got, want)
						}
						c.Free([]pmd.Pkt{pk})
					}
				}
			}
		}
	}
}

// Options.MTU bounds the outer IP datagram; the packet is left for a PTB reply.
func TestEncapMTU(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun := mustTunnel(t, Options{Type: VXLAN, Src: v4A, Dst: v4B, DSCP: -1, MTU: 1500})
	// 1500 = 20 IP + 8 UDP + 8 VXLAN + 1464 inner frame.
	for _, n := range []int{1464, 1465} {
		pk := load(t, pool, c, innerEth(false, n, 0))
		before := pk
		err := tun.Encap(pool, &pk)
		if n == 1464 && (err != nil || pk.Len != 14+1500) {
			t.Fatalf("%d: %v, %d bytes", n, err, pk.Len)
		}
		if n == 1465 && (err != ErrMTU || pk != before) {
			t.Fatalf("%d: %v", n, err)
		}
		c.Free([]pmd.Pkt{pk})
	}
	if _, err := NewTunnel(Options{Type: GRE, Src: v4A, Dst: v4B, MTU: 10}); !errors.Is(err, ErrOptions) {
		t.Fatal("MTU 10 accepted")
	}
}

// FuzzEncapPaths checks that Encap's fast path (encapFastRun)
// writes exactly what the general path writes, for any tunnel and payload: the same
// error, the same packet bytes and the same Pkt fields.
func FuzzEncapPaths(f *testing.F) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	c := pool.NewCache(8)
	f.Add(uint8(0), uint32(100), uint8(0), uint16(0), uint8(0), uint8(0), uint64(0), innerEth(false, 100, 0))
	f.Add(uint8(1), uint32(7), uint8(1), uint16(0), uint8(2), uint8(1), uint64(9), mkInnerIP(false, 64, 9, 0x21))
	f.Add(uint8(2), uint32(7), uint8(0x81), uint16(0), uint8(4), uint8(2), uint64(0), innerEth(false, 80, 0))
	f.Add(uint8(3), uint32(1), uint8(0), uint16(0x8005), uint8(9), uint8(4), uint64(3), mkInnerIP(false, 1400, 1, 0xff))
	f.Add(uint8(0), uint32(5), uint8(0), uint16(0), uint8(0), uint8(8), uint64(0), innerEth(false, 60, 0))
	f.Add(uint8(0), uint32(100), uint8(0), uint16(0), uint8(0), uint8(16), uint64(0), innerEth(false, 100, 0))
	f.Add(uint8(1), uint32(7), uint8(1), uint16(0), uint8(0x12), uint8(17), uint64(9), mkInnerIP(false, 64, 9, 0x21))
	f.Add(uint8(1), uint32(7), uint8(1), uint16(0), uint8(0x22), uint8(16), uint64(9), mkInnerIP(false, 300, 9, 0x21))
	f.Add(uint8(2), uint32(7), uint8(0x81), uint16(0), uint8(4), uint8(18), uint64(0), innerEth(false, 80, 0))
	f.Add(uint8(3), uint32(1), uint8(0), uint16(0x8005), uint8(9), uint8(20), uint64(3), mkInnerIP(false, 1400, 1, 0xff))
	// A fixed DSCP over an inner ECN codepoint: the fast path keeps it by mask.
	f.Add(uint8(0), uint32(46), uint8(0), uint16(0), uint8(3), uint8(0), uint64(0), innerEth(false, 100, 0))
	f.Add(uint8(1), uint32(46), uint8(1), uint16(0), uint8(3), uint8(16), uint64(0), mkInnerIP(false, 64, 9, 0xb9))
	f.Fuzz(func(t *testing.T, typ uint8, id uint32, nl uint8, vlan uint16, knobs, hk uint8, seed uint64, inner []byte) {
		encapPathsAgree(t, pool, c, typ, id, nl, vlan, knobs, hk, seed, inner)
	})
}

// TestEncapPathsRandom is FuzzEncapPaths over a fixed sequence of random tunnels and
// payloads (inner IP headers with any TOS and TTL, a few bytes overwritten), so that
// every test run compares the two paths on more than the seed corpus.
func TestEncapPathsRandom(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	rng := rand.New(rand.NewPCG(3, 5))
	for range 20000 {
		typ, v6, nl := uint8(rng.IntN(4)), rng.IntN(2) == 0, uint8(rng.IntN(256))
		n := 48 + rng.IntN(300)
		var inner []byte
		if typ == 0 || (typ == 1 || typ == 2) && nl&0x80 != 0 { // VXLAN, L2 MPLS
			inner = innerEth(rng.IntN(4) == 0, n+14, 0)
		} else {
			inner = mkInnerIP(rng.IntN(4) == 0, n, uint8(rng.Uint32()), uint8(rng.Uint32()))
		}
		for k := rng.IntN(4); k > 0; k-- {
			inner[rng.IntN(min(len(inner), 60))] = byte(rng.Uint32())
		}
		if rng.IntN(3) == 0 {
			inner = append(inner, byte(rng.Uint32()))
		}
		var vlan uint16
		if rng.IntN(4) == 0 {
			vlan = 0x8000 | uint16(rng.IntN(4095))
		}
		hk := uint8(rng.IntN(256)) &^ 0x10
		if v6 {
			hk |= 0x10
		}
		encapPathsAgree(t, pool, c, typ, rng.Uint32(), nl, vlan, uint8(rng.IntN(256)), hk, rng.Uint64(), inner)
	}
}

// encapPathsAgree encapsulates inner through Encap and through encapSlow alone with
// the tunnel fuzzOptions makes of the arguments and fails t where the two differ; hk
// asks for a symmetric hash (bit 0), a hash given with the packet (1), an MTU (2), a
// partial checksum (3) and an IPv6 outer header (4).
func encapPathsAgree(t *testing.T, pool *pmd.Pool, c *pmd.Cache, typ uint8, id uint32, nl uint8, vlan uint16, knobs, hk uint8, seed uint64, inner []byte) {
	t.Helper()
	o, inner, ok := fuzzOptions(typ, hk&16 != 0, id, nl, vlan, knobs, inner)
	if !ok {
		return
	}
	o.Hash = HashOptions{Symmetric: hk&1 != 0, Seed: seed}
	if hk&4 != 0 {
		o.MTU = max(68+int(id%1500), o.overhead()+1) // Validate wants room for a payload
	}
	fast, err1 := NewTunnel(o)
	slow, err2 := NewTunnel(o)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	pk1, pk2 := load(t, pool, c, inner), load(t, pool, c, inner)
	defer c.Free([]pmd.Pkt{pk1, pk2})
	for _, pk := range []*pmd.Pkt{&pk1, &pk2} {
		f := pool.Bytes(pk.Frame)
		clear(f[:pk.Off])                  // the headroom is compared too
		clear(f[int(pk.Off)+int(pk.Len):]) // and the tail
		if hk&2 != 0 {
			pk.Hash, pk.Flags = id, pmd.PktHashValid
		}
		if hk&8 != 0 {
			pk.Flags |= pmd.PktCsumPartial
		}
	}
	e1 := fast.Encap(pool, &pk1)
	e2 := slow.encapSlow(pool.Bytes(pk2.Frame), &pk2, nil)
	if e1 != e2 {
		t.Fatalf("%+v: fast path %v, general path %v", o, e1, e2)
	}
	if pk1.Off != pk2.Off || pk1.Len != pk2.Len || pk1.Hash != pk2.Hash || pk1.Flags != pk2.Flags {
		t.Fatalf("%+v: fast path %+v, general path %+v", o, pk1, pk2)
	}
	if a, b := pool.Data(&pk1), pool.Data(&pk2); !bytes.Equal(a, b) {
		t.Fatalf("%+v: fast path wrote\n% x\ngeneral path\n% x", o, a, b)
	}
	if !bytes.Equal(pool.Bytes(pk1.Frame), pool.Bytes(pk2.Frame)) {
		t.Fatalf("%+v: the fast and general paths left different bytes outside the packet", o)
	}
}

// TestEncapFastPathTaken checks that the benchmarks' packets take the fast path, so
// that FuzzEncapPaths compares something.
func TestEncapFastPathTaken(t *testing.T) {
	for _, bt := range benchTypes {
		for _, fam := range benchFamilies {
			o, ok := benchOptions(bt.opts, fam)
			if !ok {
				continue
			}
			tun := mustTunnel(t, o)
			pool, pkts := loadBurst(t, benchPayload(o.Type, 64))
			if !tun.fast || tun.encapFastRun(pool, pkts[:]) != len(pkts) {
				t.Errorf("%s/%s: the fast path refused the burst", bt.name, fam)
			}
		}
	}
}

// udpSurplus returns an IPv4 or IPv6 UDP packet whose UDP length stops short of the
// IP payload: surplus bytes follow the UDP datagram inside the IP datagram (RFC 768
// lets the IP length exceed the UDP length; UDP options use that area). The UDP
// checksum covers the UDP datagram only, with its own length in the pseudo-header.
func udpSurplus(v6 bool, pay, surplus int) []byte {
	ulen := 8 + pay
	var p []byte
	var ps uint64
	if v6 {
		p = make([]byte, 40+ulen+surplus)
		p[0] = 0x60
		binary.BigEndian.PutUint16(p[4:], uint16(ulen+surplus))
		p[6], p[7] = 17, 64
		copy(p[8:], v6A.AsSlice())
		copy(p[24:], v6B.AsSlice())
		ps = sum(17+uint64(ulen), p[8:40])
	} else {
		p = make([]byte, 20+ulen+surplus)
		p[0] = 0x45
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		p[8], p[9] = 64, 17
		copy(p[12:], v4A.AsSlice())
		copy(p[16:], v4B.AsSlice())
		binary.BigEndian.PutUint16(p[10:], checksum(p[:20]))
		ps = sum(17+uint64(ulen), p[12:20])
	}
	hl := len(p) - ulen - surplus
	u := p[hl:]
	binary.BigEndian.PutUint16(u, 40000)
	binary.BigEndian.PutUint16(u[2:], 53)
	binary.BigEndian.PutUint16(u[4:], uint16(ulen))
	for i := 8; i < len(u); i++ {
		u[i] = byte(i*13 + 7)
	}
	c := ^fold(sum(ps, u[:ulen]))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return p
}

// Csum6Inner derives the outer checksum from a UDP checksum that covers the UDP
// datagram alone; bytes of the IP payload after it (the surplus area) are not in that
// checksum, so the outer checksum must still come out as the full sum's.
func TestEncapCsumInnerUDPSurplus(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	for _, v6 := range []bool{false, true} {
		for _, surplus := range []int{1, 4, 9} {
			inner := udpSurplus(v6, 37, surplus)
			var sums [2]uint16
			for i, cs := range []Csum6{Csum6Full, Csum6Inner} {
				tun := mustTunnel(t, Options{Type: MPLSoUDP, Src: v6A, Dst: v6B, Labels: []Label{{Label: 9}}, DSCP: -1, UDP6Checksum: cs})
				pk := load(t, pool, c, inner)
				pk.Hash, pk.Flags = 77, pmd.PktHashValid
				if err := tun.Encap(pool, &pk); err != nil {
					t.Fatal(err)
				}
				f := pool.Data(&pk)
				sums[i] = binary.BigEndian.Uint16(f[14+40+6:])
				d := NewDecapper(DecapOptions{VerifyUDPChecksum: true})
				var r Result
				if why := d.Decap(pool, &pk, &r); why != OK {
					t.Errorf("v6 %v surplus %d csum6 %d: decap %v", v6, surplus, cs, why)
				}
				c.Free([]pmd.Pkt{pk})
			}
			if sums[0] != sums[1] {
				t.Errorf("v6 %v surplus %d: Csum6Inner checksum %#04x, the full sum gives %#04x", v6, surplus, sums[1], sums[0])
			}
		}
	}
}

// TestOptionsMTUBelowHeaders: an MTU that leaves no room for a payload under the
// tunnel's headers is refused by Validate, naming the headers' length. 68 (the
// floor) under MPLS over UDP with eight labels over IPv6 (80 bytes of headers from
// the IP header on) was accepted, and PayloadMTU came out -12.
func TestOptionsMTUBelowHeaders(t *testing.T) {
	vs := variants()
	o := Options{Type: MPLSoUDP, Src: v6A, Dst: v6B, Labels: make([]Label, MaxLabels)}
	vs = append(vs, variant{name: "mplsoudp-8labels/outer6", opts: o})
	for _, v := range vs {
		tun := mustTunnel(t, v.opts)
		l3 := 14
		if v.opts.OuterVLAN != 0 {
			l3 += 4
		}
		over := tun.HeaderLen() - l3
		if v.opts.InnerVLAN != 0 {
			over += 4
		}
		for _, mtu := range []int{68, over, over + 1, 1500} {
			o := v.opts
			o.MTU = mtu
			err := o.Validate()
			if mtu <= over {
				if !errors.Is(err, ErrOptions) || !strings.Contains(err.Error(), fmt.Sprint(over)) {
					t.Errorf("%s: MTU %d under %d bytes of headers: %v", v.name, mtu, over, err)
				}
				continue
			}
			if mtu < 68 {
				continue
			}
			if err != nil {
				t.Errorf("%s: MTU %d: %v", v.name, mtu, err)
				continue
			}
			if m := mustTunnel(t, o).PayloadMTU(); m != mtu-over || m < 1 {
				t.Errorf("%s: MTU %d, %d bytes of headers: PayloadMTU %d", v.name, mtu, over, m)
			}
		}
	}
}
