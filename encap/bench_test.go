package encap

import (
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/dpkit/dpkit/pmd"
)

// The benchmarks encapsulate and decapsulate bursts of 32 packets held in a pmd pool,
// in place, and report ns and Mpps per packet; each has a gopacket sibling doing the
// same work per packet in the same run (serializing the headers in front of the
// payload; decoding the outer layers down to the inner payload).

const burst = 32

var benchTypes = []struct {
	name string
	opts Options
}{
	{"vxlan", Options{Type: VXLAN, VNI: 100}},
	{"mplsoudp", Options{Type: MPLSoUDP, Labels: []Label{{Label: 100}}}},
	{"mplsogre", Options{Type: MPLSoGRE, Labels: []Label{{Label: 100}}}},
	{"gre", Options{Type: GRE}},
}

// benchFamilies: outer IPv4, outer IPv6 with the checksum summed in full, and outer
// IPv6 with the checksum derived from the inner packet's (UDP types only).
var benchFamilies = []string{"outer4", "outer6", "outer6inner"}

func benchOptions(base Options, fam string) (Options, bool) {
	o := base
	o.SrcMAC, o.DstMAC, o.Src, o.Dst, o.DSCP = macA, macB, v4A, v4B, -1
	switch fam {
	case "outer6":
		o.Src, o.Dst = v6A, v6B
	case "outer6inner":
		if o.Type != VXLAN && o.Type != MPLSoUDP {
			return o, false
		}
		o.Src, o.Dst, o.UDP6Checksum = v6A, v6B, Csum6Inner
	}
	return o, true
}

// benchPayload is an inner frame of size bytes: Ethernet+IPv4+UDP for VXLAN, IPv4+UDP
// otherwise, with valid checksums.
func benchPayload(typ Type, size int) []byte {
	if typ == VXLAN {
		return innerEth(false, size, 0)
	}
	return mkInnerIP(false, size, 64, 0)
}

func benchSizes() []int { return []int{64, 1400} }

func sizeName(n int) string {
	if n == 64 {
		return "64B"
	}
	return "1400B"
}

func perPacket(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// loadBurst fills a burst of packets from a pool with payload.
func loadBurst(b testing.TB, payload []byte) (*pmd.Pool, *[burst]pmd.Pkt) {
	pool := newPool(b)
	c := pool.NewCache(2 * burst)
	var pkts [burst]pmd.Pkt
	for i := range pkts {
		pkts[i] = load(b, pool, c, payload)
	}
	b.Cleanup(func() { c.Free(pkts[:]); c.Flush() })
	return pool, &pkts
}

// encapCells calls fn with each cell of BenchmarkEncap: its name (type/family/size),
// tunnel options and inner payload.
func encapCells(fn func(name string, o Options, payload []byte)) {
	for _, bt := range benchTypes {
		for _, fam := range benchFamilies {
			o, ok := benchOptions(bt.opts, fam)
			if !ok {
				continue
			}
			for _, size := range benchSizes() {
				fn(bt.name+"/"+fam+"/"+sizeName(size), o, benchPayload(o.Type, size))
			}
		}
	}
}

func BenchmarkEncap(b *testing.B) {
	encapCells(func(name string, o Options, payload []byte) {
		b.Run(name+"/dpkit", func(b *testing.B) { benchEncap(b, o, payload) })
		b.Run(name+"/gopacket", func(b *testing.B) { benchGopacketEncap(b, o, payload) })
	})
}

// benchEncap: EncapBatch over a burst, the flow hash computed every time (the packets
// carry none, as from a veth or vhost port), the burst's start restored between rounds.
func benchEncap(b *testing.B, o Options, payload []byte) {
	tun, err := NewTunnel(o)
	if err != nil {
		b.Fatal(err)
	}
	pool, pkts := loadBurst(b, payload)
	off, n := pkts[0].Off, pkts[0].Len
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		for j := range pkts {
			pkts[j].Off, pkts[j].Len, pkts[j].Flags = off, n, 0
		}
		if _, err := tun.EncapBatch(pool, pkts[:]); err != nil {
			b.Fatal(err)
		}
	}
	perPacket(b)
}

// BenchmarkEncapHashGiven is benchEncap for packets that arrive with a flow hash (from
// a NIC's RSS or an earlier stage), which Encap then does not compute.
func BenchmarkEncapHashGiven(b *testing.B) {
	for _, bt := range benchTypes[:2] {
		o, _ := benchOptions(bt.opts, "outer4")
		payload := benchPayload(o.Type, 64)
		b.Run(bt.name+"/outer4/64B", func(b *testing.B) {
			tun := mustTunnel(b, o)
			pool, pkts := loadBurst(b, payload)
			off, n := pkts[0].Off, pkts[0].Len
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				for j := range pkts {
					pkts[j].Off, pkts[j].Len, pkts[j].Flags, pkts[j].Hash = off, n, pmd.PktHashValid, uint32(j)*0x9e3779b9
				}
				if _, err := tun.EncapBatch(pool, pkts[:]); err != nil {
					b.Fatal(err)
				}
			}
			perPacket(b)
		})
	}
}

// gopacketLayers returns gopacket layers that serialize to the same outer headers.
func gopacketLayers(o Options) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: o.SrcMAC[:], DstMAC: o.DstMAC[:], EthernetType: layers.EthernetTypeIPv4}
	var ip gopacket.NetworkLayer
	var ipl gopacket.SerializableLayer
	proto := layers.IPProtocolGRE
	if o.Type == VXLAN || o.Type == MPLSoUDP {
		proto = layers.IPProtocolUDP
	}
	if o.Src.Is4() {
		v4 := &layers.IPv4{Version: 4, TTL: 64, SrcIP: o.Src.AsSlice(), DstIP: o.Dst.AsSlice(),
			Flags: layers.IPv4DontFragment, Protocol: proto}
		ip, ipl = v4, v4
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: o.Src.AsSlice(), DstIP: o.Dst.AsSlice(), NextHeader: proto}
		ip, ipl = v6, v6
	}
	ls := []gopacket.SerializableLayer{eth, ipl}
	switch o.Type {
	case VXLAN:
		u := &layers.UDP{SrcPort: 50000, DstPort: PortVXLAN}
		u.SetNetworkLayerForChecksum(ip)
		ls = append(ls, u, &layers.VXLAN{ValidIDFlag: true, VNI: o.VNI})
	case MPLSoUDP:
		u := &layers.UDP{SrcPort: 50000, DstPort: PortMPLSoUDP}
		u.SetNetworkLayerForChecksum(ip)
		ls = append(ls, u, &layers.MPLS{Label: 100, StackBottom: true, TTL: 64})
	case MPLSoGRE:
		ls = append(ls, &layers.GRE{Protocol: layers.EthernetTypeMPLSUnicast}, &layers.MPLS{Label: 100, StackBottom: true, TTL: 64})
	case GRE:
		ls = append(ls, &layers.GRE{Protocol: layers.EthernetTypeIPv4})
	}
	return ls
}

// benchGopacketEncap: gopacketEncap (gopacket.SerializeLayers' loop) into a reused
// buffer, lengths fixed and the checksums computed that EncapBatch computes.
func benchGopacketEncap(b *testing.B, o Options, payload []byte) {
	ls := append(gopacketLayers(o), gopacket.Payload(payload))
	buf := gopacket.NewSerializeBuffer()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := gopacketEncap(buf, o, ls); err != nil {
			b.Fatal(err)
		}
	}
	perPacket(b)
}

// gopacketEncap serializes ls (gopacketLayers plus the payload) into buf, as
// gopacket.SerializeLayers does, with lengths fixed and checksums computed, except
// the UDP checksum under an outer IPv4 header, left zero as EncapBatch leaves it:
// the layers above the IP header are serialized without ComputeChecksums.
func gopacketEncap(buf gopacket.SerializeBuffer, o Options, ls []gopacket.SerializableLayer) error {
	sum := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	upper := sum
	if o.Src.Is4() {
		upper.ComputeChecksums = false
	}
	if err := buf.Clear(); err != nil {
		return err
	}
	for i := len(ls) - 1; i >= 0; i-- {
		opts := sum
		if i >= 2 { // above Ethernet and IP
			opts = upper
		}
		if err := ls[i].SerializeTo(buf, opts); err != nil {
			return err
		}
		buf.PushLayer(ls[i].LayerType())
	}
	return nil
}

func BenchmarkDecap(b *testing.B) {
	for _, bt := range benchTypes {
		for _, fam := range benchFamilies[:2] {
			o, _ := benchOptions(bt.opts, fam)
			for _, size := range benchSizes() {
				payload := benchPayload(o.Type, size)
				name := bt.name + "/" + fam + "/" + sizeName(size)
				b.Run(name+"/dpkit", func(b *testing.B) { benchDecap(b, o, payload) })
				b.Run(name+"/gopacket", func(b *testing.B) { benchGopacketDecap(b, o, payload) })
				b.Run(name+"/gopacket-packet", func(b *testing.B) { benchGopacketPacket(b, o, payload) })
			}
		}
	}
}

// benchDecap: DecapBatch over a burst of tunnel frames with the zero DecapOptions
// (IPv4 header checksums verified, UDP checksums left to the NIC), the burst's start
// restored between rounds.
func benchDecap(b *testing.B, o Options, payload []byte) {
	tun, err := NewTunnel(o)
	if err != nil {
		b.Fatal(err)
	}
	pool, pkts := loadBurst(b, payload)
	if _, err := tun.EncapBatch(pool, pkts[:]); err != nil {
		b.Fatal(err)
	}
	off, n := pkts[0].Off, pkts[0].Len
	d := NewDecapper(DecapOptions{})
	var res [burst]Result
	drop := func(pk *pmd.Pkt, why Reason) { b.Fatal(why) }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		for j := range pkts {
			pkts[j].Off, pkts[j].Len = off, n
		}
		d.DecapBatch(pool, pkts[:], res[:], drop)
	}
	perPacket(b)
}

// benchGopacketDecap decodes with gopacket's fastest path, each layer's DecodeFromBytes
// on a reused struct (what DecodingLayerParser does, without its dispatch), down to
// the inner payload. gopacket has no DecodeFromBytes for MPLS; its label stack is
// decoded lazily by a Packet, stopping at the MPLS layer.
func benchGopacketDecap(b *testing.B, o Options, payload []byte) {
	pool := newPool(b)
	c := pool.NewCache(8)
	frame := build(b, pool, c, variant{opts: o, inner: payload})
	c.Flush()
	var (
		eth  layers.Ethernet
		ip4  layers.IPv4
		ip6  layers.IPv6
		udp  layers.UDP
		gre  layers.GRE
		vx   layers.VXLAN
		df   = gopacket.NilDecodeFeedback
		lazy = gopacket.DecodeOptions{Lazy: true, NoCopy: true}
	)
	v4 := o.Src.Is4()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := eth.DecodeFromBytes(frame, df); err != nil {
			b.Fatal(err)
		}
		var l4 []byte
		if v4 {
			if err := ip4.DecodeFromBytes(eth.Payload, df); err != nil {
				b.Fatal(err)
			}
			l4 = ip4.Payload
		} else {
			if err := ip6.DecodeFromBytes(eth.Payload, df); err != nil {
				b.Fatal(err)
			}
			l4 = ip6.Payload
		}
		var inner []byte
		switch o.Type {
		case VXLAN, MPLSoUDP:
			if err := udp.DecodeFromBytes(l4, df); err != nil {
				b.Fatal(err)
			}
			if o.Type == VXLAN {
				if err := vx.DecodeFromBytes(udp.Payload, df); err != nil || vx.VNI != o.VNI {
					b.Fatal(err)
				}
				inner = vx.Payload
			} else {
				inner = gopacketMPLS(b, udp.Payload, lazy)
			}
		case MPLSoGRE, GRE:
			if err := gre.DecodeFromBytes(l4, df); err != nil {
				b.Fatal(err)
			}
			inner = gre.Payload
			if o.Type == MPLSoGRE {
				inner = gopacketMPLS(b, gre.Payload, lazy)
			}
		}
		if len(inner) != len(payload) {
			b.Fatalf("inner %d bytes, want %d", len(inner), len(payload))
		}
	}
	perPacket(b)
}

// benchGopacketPacket decodes with gopacket's general API, gopacket.NewPacket (NoCopy),
// which most gopacket code uses; it decodes the inner frame too.
func benchGopacketPacket(b *testing.B, o Options, payload []byte) {
	pool := newPool(b)
	c := pool.NewCache(8)
	frame := build(b, pool, c, variant{opts: o, inner: payload})
	c.Flush()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.NoCopy)
		if o.Type == MPLSoUDP { // gopacket maps no UDP port to MPLS
			u, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if u == nil {
				b.Fatal("no UDP")
			}
			p = gopacket.NewPacket(u.Payload, layers.LayerTypeMPLS, gopacket.NoCopy)
		}
		if p.ErrorLayer() != nil {
			b.Fatal(p.ErrorLayer().Error())
		}
	}
	perPacket(b)
}

func gopacketMPLS(b *testing.B, data []byte, opts gopacket.DecodeOptions) []byte {
	p := gopacket.NewPacket(data, layers.LayerTypeMPLS, opts)
	m, ok := p.Layer(layers.LayerTypeMPLS).(*layers.MPLS)
	if !ok || !m.StackBottom {
		b.Fatal("no MPLS")
	}
	return m.Payload
}

// BenchmarkFlowHash hashes an inner IPv4 UDP packet.
func BenchmarkFlowHash(b *testing.B) {
	for _, sym := range []bool{false, true} {
		name := "asymmetric"
		if sym {
			name = "symmetric"
		}
		b.Run(name, func(b *testing.B) {
			p := innerEth(false, 64, 0)
			o := HashOptions{Symmetric: sym}
			var h uint32
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				h += FlowHash(p, true, o)
			}
			_ = h
		})
	}
}

// TestGopacketEncapSameFrame checks that the gopacket sibling of BenchmarkEncap builds
// the very frame EncapBatch does (given the flow-hash-derived fields dpkit picks), so
// the two do the same work: same headers, same checksums, including a zero UDP
// checksum under IPv4.
func TestGopacketEncapSameFrame(t *testing.T) {
	encapCells(func(name string, o Options, payload []byte) {
		pool, pkts := loadBurst(t, payload)
		if _, err := mustTunnel(t, o).EncapBatch(pool, pkts[:1]); err != nil {
			t.Fatal(err)
		}
		want := pool.Data(&pkts[0])
		ls := append(gopacketLayers(o), gopacket.Payload(payload))
		// Copy what dpkit derives from the flow hash or the inner header (DSCP -1
		// copies the inner one, and the TTL too).
		switch ip := ls[1].(type) {
		case *layers.IPv4:
			ip.TOS, ip.TTL = want[15], want[22]
			ip.Id = uint16(want[18])<<8 | uint16(want[19])
		case *layers.IPv6:
			ip.TrafficClass, ip.HopLimit = want[14]<<4|want[15]>>4, want[21]
			ip.FlowLabel = uint32(want[15]&0xf)<<16 | uint32(want[16])<<8 | uint32(want[17])
		}
		if u, ok := ls[2].(*layers.UDP); ok {
			l4 := 14 + 20
			if !o.Src.Is4() {
				l4 = 14 + 40
			}
			u.SrcPort = layers.UDPPort(uint16(want[l4])<<8 | uint16(want[l4+1]))
		}
		buf := gopacket.NewSerializeBuffer()
		if err := gopacketEncap(buf, o, ls); err != nil {
			t.Fatal(err)
		}
		if got := buf.Bytes(); string(got) != string(want) {
			for i := range min(len(got), len(want)) {
				if got[i] != want[i] {
					t.Errorf("%s: gopacket frame differs from dpkit's at byte %d (%#x, dpkit %#x); lengths %d, %d",
						name, i, got[i], want[i], len(got), len(want))
					break
				}
			}
			if len(got) != len(want) {
				t.Errorf("%s: gopacket frame %d bytes, dpkit %d", name, len(got), len(want))
			}
		}
	})
}
