package encap

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

// build returns the wire bytes of v's frame.
func build(t testing.TB, pool *pmd.Pool, c *pmd.Cache, v variant) []byte {
	t.Helper()
	tun, err := NewTunnel(v.opts)
	if err != nil {
		t.Fatal(err)
	}
	pk := load(t, pool, c, v.inner)
	if err := tun.Encap(pool, &pk); err != nil {
		t.Fatal(err)
	}
	out := append([]byte(nil), pool.Data(&pk)...)
	c.Free([]pmd.Pkt{pk})
	return out
}

func fixIPv4Checksum(f []byte, l3 int) {
	binary.BigEndian.PutUint16(f[l3+10:], 0)
	binary.BigEndian.PutUint16(f[l3+10:], checksum(f[l3:l3+20]))
}

// Each malformed frame is refused with its reason, counted, and left unchanged.
func TestDecapDrops(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	vx4, vx6 := findVariant(t, "vxlan/outer4"), findVariant(t, "vxlan/outer6")
	mu4, gre4 := findVariant(t, "mplsoudp-1label/outer4"), findVariant(t, "mplsogre-1label/outer4")
	ipgre4, ip6gre6 := findVariant(t, "gre-ip4/outer4"), findVariant(t, "gre-ip6/outer6")
	l3, l4 := 14, 34
	cases := []struct {
		name string
		v    variant
		mut  func(f []byte) []byte
		want Reason
	}{
		{"short", vx4, func(f []byte) []byte { return f[:10] }, DropTruncated},
		{"arp", vx4, func(f []byte) []byte { f[12], f[13] = 8, 6; return f }, DropBadEthertype},
		{"version", vx4, func(f []byte) []byte { f[l3] = 0x65; return f }, DropBadVersion},
		{"ihl", vx4, func(f []byte) []byte { f[l3] = 0x44; return f }, DropBadHeader},
		{"ip-truncated", vx4, func(f []byte) []byte { return f[:len(f)-1] }, DropTruncated},
		{"ip-checksum", vx4, func(f []byte) []byte { f[l3+10] ^= 1; return f }, DropBadChecksum},
		{"fragment", vx4, func(f []byte) []byte { f[l3+6] |= 0x20; fixIPv4Checksum(f, l3); return f }, DropFragment},
		{"ttl0", vx4, func(f []byte) []byte { f[l3+8] = 0; fixIPv4Checksum(f, l3); return f }, DropTTLExpired},
		{"not-local", vx4, func(f []byte) []byte { f[l3+19] = 99; fixIPv4Checksum(f, l3); return f }, DropNotLocal},
		{"tcp", vx4, func(f []byte) []byte { f[l3+9] = 6; fixIPv4Checksum(f, l3); return f }, DropUnknownProto},
		{"udp-port", vx4, func(f []byte) []byte { f[l4+3] = 53; return f }, DropUnknownPort},
		{"udp-length", vx4, func(f []byte) []byte { binary.BigEndian.PutUint16(f[l4+4:], 4); return f }, DropBadHeader},
		{"vxlan-flag", vx4, func(f []byte) []byte { f[l4+8] = 0; return f }, DropBadVXLAN},
		{"udp6-checksum", vx6, func(f []byte) []byte { f[len(f)-1] ^= 0xff; return f }, DropBadChecksum},
		{"hoplimit0", vx6, func(f []byte) []byte { f[l3+7] = 0; return f }, DropTTLExpired},
		{"ip6-fragment", vx6, func(f []byte) []byte { f[l3+6] = 44; return f }, DropFragment},
		{"ip6-hopbyhop", vx6, func(f []byte) []byte { f[l3+6] = 0; return f }, DropOptions},
		{"ip6-version", vx6, func(f []byte) []byte { f[l3] = 0x40; return f }, DropBadVersion},
		{"ip6-not-local", vx6, func(f []byte) []byte { f[l3+39] ^= 1; return f }, DropNotLocal},
		{"ip-options-bad-checksum", vx4, func(f []byte) []byte {
			// A 4-byte option (NOP padding): accepted by the parser, so it is the
			// checksum over 24 bytes that must catch the flipped bit.
			out := append(append(append([]byte(nil), f[:l3+20]...), 1, 1, 1, 0), f[l3+20:]...)
			out[l3] = 0x46
			binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
			binary.BigEndian.PutUint16(out[l3+10:], 0)
			binary.BigEndian.PutUint16(out[l3+10:], checksum(out[l3:l3+24]))
			out[l3+22] ^= 1
			return out
		}, DropBadChecksum},
		{"ip6-truncated", vx6, func(f []byte) []byte { return f[:60] }, DropTruncated},
		{"mpls-no-bos", mu4, func(f []byte) []byte {
			// Eight labels without bottom of stack.
			lab := make([]byte, 4*MaxLabels)
			for i := 0; i < MaxLabels; i++ {
				binary.BigEndian.PutUint32(lab[4*i:], 100<<12|64)
			}
			out := append(append(append([]byte(nil), f[:l4+8]...), lab...), f[l4+12:]...)
			binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
			binary.BigEndian.PutUint16(out[l4+4:], uint16(len(out)-l4))
			fixIPv4Checksum(out, l3)
			return out
		}, DropBadMPLS},
		{"mpls-ttl0", mu4, func(f []byte) []byte { f[l4+8+3] = 0; return f }, DropTTLExpired},
		{"mpls-truncated", mu4, func(f []byte) []byte {
			out := f[:l4+10]
			binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
			binary.BigEndian.PutUint16(out[l4+4:], 10)
			fixIPv4Checksum(out, l3)
			return out
		}, DropTruncated},
		{"gre-version", gre4, func(f []byte) []byte { f[l4+1] = 1; return f }, DropBadGRE},
		{"gre-routing", gre4, func(f []byte) []byte { f[l4] = 0x40; return f }, DropBadGRE},
		// RFC 1701's strict source route and recursion control, bits 4 and 5: RFC
		// 2784 §2.3 discards them with routing.
		{"gre-strict-route", gre4, func(f []byte) []byte { f[l4] = 0x08; return f }, DropBadGRE},
		{"gre-recursion", gre4, func(f []byte) []byte { f[l4] = 0x04; return f }, DropBadGRE},
		{"gre-proto", gre4, func(f []byte) []byte { f[l4+3] = 0x99; return f }, DropBadGRE},
		{"gre-checksum", gre4, func(f []byte) []byte {
			// C bit with a wrong checksum word.
			out := append(append(append([]byte(nil), f[:l4+4]...), 0, 0, 0, 0), f[l4+4:]...)
			out[l4] = 0x80
			binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
			fixIPv4Checksum(out, l3)
			out[l4+4] = 0xde
			return out
		}, DropBadChecksum},
		// RFC 2784 §2.4: a GRE protocol type of IPv4 or IPv6 is the payload's
		// ethertype, so its IP version must match, as the outer header's must.
		{"gre-ip4-version6", ipgre4, func(f []byte) []byte { f[l4+4] = 0x60 | f[l4+4]&0xf; return f }, DropBadVersion},
		{"gre-ip4-version5", ipgre4, func(f []byte) []byte { f[l4+4] = 0x55; return f }, DropBadVersion},
		{"gre-ip6-version4", ip6gre6, func(f []byte) []byte { f[54+4] = 0x45; return f }, DropBadVersion},
		{"gre-ip4-empty", ipgre4, func(f []byte) []byte {
			out := f[:l4+4]
			binary.BigEndian.PutUint16(out[l3+2:], uint16(len(out)-l3))
			fixIPv4Checksum(out, l3)
			return append(out, make([]byte, 30)...) // link padding: no payload
		}, DropTruncated},
	}
	for _, cs := range cases {
		f := cs.mut(build(t, pool, c, cs.v))
		d := NewDecapper(DecapOptions{Local: []netip.Addr{v4B, v6B}, VerifyUDPChecksum: true})
		pk := load(t, pool, c, f)
		before := pk
		var r Result
		if got := d.Decap(pool, &pk, &r); got != cs.want {
			t.Errorf("%s: reason %v, want %v", cs.name, got, cs.want)
		}
		if pk != before {
			t.Errorf("%s: packet changed on drop", cs.name)
		}
		d.Flush()
		if st := d.Stats(); st.Drops[cs.want] != 1 || st.Decapsulated != 0 {
			t.Errorf("%s: stats %+v", cs.name, st)
		}
		c.Free([]pmd.Pkt{pk})
	}
}

func TestDecapBatch(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	defer c.Flush()
	vs := variants()
	var pkts [6]pmd.Pkt
	for i := range pkts {
		f := build(t, pool, c, vs[i])
		if i%2 == 1 {
			f = f[:12] // truncated
		}
		pkts[i] = load(t, pool, c, f)
	}
	d := NewDecapper(DecapOptions{})
	var res [6]Result
	var dropped []Reason
	n := d.DecapBatch(pool, pkts[:], res[:], func(pk *pmd.Pkt, why Reason) {
		dropped = append(dropped, why)
		c.Free([]pmd.Pkt{*pk})
	})
	if n != 3 || len(dropped) != 3 || dropped[0] != DropTruncated {
		t.Fatalf("n %d dropped %v", n, dropped)
	}
	for i := 0; i < n; i++ {
		if res[i].Type != vs[2*i].opts.Type {
			t.Fatalf("result %d: %v want %v", i, res[i].Type, vs[2*i].opts.Type)
		}
	}
	c.Free(pkts[:n])
}

// tshark, an independent dissector, reads every frame dpkit builds without a malformed
// packet or an error-level expert note.
func TestTshark(t *testing.T) {
	testenv.NeedCommand(t, "tshark")
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	path := filepath.Join(t.TempDir(), "encap.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := pcapgo.NewWriter(f)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	vs := variants()
	for _, v := range vs {
		b := build(t, pool, c, v)
		w.WritePacket(gopacketCI(len(b)), b)
	}
	// A control: one frame with a payload byte flipped after its IPv6 UDP checksum
	// was computed, which tshark must flag.
	ctl := build(t, pool, c, findVariant(t, "vxlan/outer6"))
	ctl[len(ctl)-1] ^= 0x40
	w.WritePacket(gopacketCI(len(ctl)), ctl)
	f.Close()
	// MPLS over UDP has no well-known port in tshark; an Ethernet payload after the
	// bottom label (302 in the L2 variants) is a pseudowire without control word.
	// Checksum validation is off by default in tshark; turn it on so that it checks
	// every IPv4 header and UDP checksum dpkit computed.
	out, err := exec.Command("tshark", "-r", path, "-d", "udp.port==6635,mpls", "-d", "mpls.label==302,pwethnocw",
		"-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
		"-T", "fields", "-E", "separator=/t", "-E", "occurrence=a", "-E", "aggregator=|",
		"-e", "frame.number", "-e", "frame.protocols", "-e", "_ws.malformed",
		"-e", "_ws.expert.severity", "-e", "_ws.expert.message").Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != len(vs)+1 {
		t.Fatalf("tshark read %d frames, wrote %d", len(lines), len(vs)+1)
	}
	if l := lines[len(vs)]; !strings.Contains(l, "8388608") {
		t.Fatalf("tshark let a bad UDP checksum pass: %s", l)
	}
	lines = lines[:len(vs)]
	for i, l := range lines {
		fields := strings.Split(l, "\t")
		bad := strings.Contains(l, "malformed")
		if len(fields) > 4 {
			msgs := strings.Split(fields[4], "|")
			for j, sev := range strings.Split(fields[3], "|") {
				n, _ := strconv.Atoi(sev)
				if n < 8388608 { // PI_ERROR
					continue
				}
				// RFC 8200 makes a zero UDP checksum over IPv6 illegal, RFC 6935
				// allows it for tunnels; tshark knows only the former.
				zero := vs[i].opts.UDP6Checksum == Csum6Zero && j < len(msgs) && strings.Contains(msgs[j], "checksum") && strings.Contains(msgs[j], "0")
				if !zero {
					bad = true
				}
			}
		}
		if bad {
			t.Errorf("%s: tshark complains: %s", vs[i].name, l)
		}
		protos := fields[1]
		want := map[Type]string{VXLAN: "vxlan", MPLSoUDP: "udp:mpls", MPLSoGRE: "gre:mpls", GRE: "gre:ip"}[vs[i].opts.Type]
		if !strings.Contains(protos, want) {
			t.Errorf("%s: tshark sees %s, want %s", vs[i].name, protos, want)
		}
	}
}

func FuzzDecap(f *testing.F) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	c := pool.NewCache(8)
	for _, v := range variants() {
		f.Add(build(f, pool, c, v), uint8(0))
		if m := greOtherVersion(build(f, pool, c, v), v); m != nil {
			f.Add(m, uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, mode uint8) {
		if len(b) > pool.FrameSize()-pool.Headroom() {
			return
		}
		o := DecapOptions{VerifyUDPChecksum: mode&1 != 0, MPLSPayloadEthernet: mode&2 != 0, StripInnerVLAN: mode&4 != 0,
			ECN: mode&32 != 0, InnerFlowHash: mode&64 != 0}
		if mode&8 != 0 {
			o.Local = []netip.Addr{v4B, v6B}
		}
		d := NewDecapper(o)
		pk := load(t, pool, c, b)
		defer c.Free([]pmd.Pkt{pk})
		var r Result
		before := pk
		why := d.Decap(pool, &pk, &r)
		if why == OK {
			if r.OuterLen+r.InnerLen > len(b) || int(pk.Off) != int(before.Off)+r.OuterLen || int(pk.Len) != r.InnerLen {
				t.Fatalf("bad result %+v for %d bytes: pkt %+v", r, len(b), pk)
			}
			mpls := r.Type == MPLSoUDP || r.Type == MPLSoGRE
			if r.Type < VXLAN || r.Type > GRE || mpls != (r.NLabels > 0) ||
				(r.Type == GRE && r.InnerIPVersion != 4 && r.InnerIPVersion != 6) {
				t.Fatalf("result %+v", r)
			}
		} else if pk != before || why >= NumReasons {
			t.Fatalf("dropped packet changed, or reason %d", why)
		}
		// The classify and decap stages agree with Decap.
		var bt pmd.Batch
		bt.Push(load(t, pool, c, b))
		var got Reason
		d2 := NewDecapper(o)
		d2.ClassifyStage(pool, &bt, HashOptions{Symmetric: mode&16 != 0}, func(p *pmd.Pkt, w Reason) { got = w; c.Free([]pmd.Pkt{*p}) })
		if why == DropECN { // a decapsulation rule, which classifying does not apply
			why = OK
		}
		if got != why || (why == OK) != (bt.Len() == 1) {
			t.Fatalf("classify stage says %v, Decap %v", got, why)
		}
		c.Free(bt.Pkts())
	})
}

// fuzzOptions turns FuzzRoundTrip's and FuzzEncapPaths's arguments into tunnel
// options and the payload to carry; false skips the input.
func fuzzOptions(typ uint8, v6 bool, id uint32, nl uint8, vlan uint16, knobs uint8, inner []byte) (Options, []byte, bool) {
	o := Options{Type: Type(typ%4 + 1), SrcMAC: macA, DstMAC: macB, Src: v4A, Dst: v4B, DSCP: -1}
	if v6 {
		o.Src, o.Dst = v6A, v6B
		o.UDP6Checksum = Csum6(knobs >> 4 % 3)
	}
	if knobs&1 != 0 {
		o.DSCP = int8(id % 64)
	}
	if knobs&2 != 0 {
		o.TTL = uint8(id>>8) | 1
	}
	o.DF = DFPolicy(knobs >> 2 % 3)
	if vlan&0x8000 != 0 {
		o.OuterVLAN = vlan & 0xfff % 4095
	}
	switch o.Type {
	case VXLAN:
		o.VNI = id & 0xffffff
		if vlan%4095 != 0 && len(inner) >= 14 {
			o.InnerVLAN = vlan % 4095
		}
	case MPLSoUDP, MPLSoGRE:
		for i := 0; i < int(nl%MaxLabels)+1; i++ {
			o.Labels = append(o.Labels, Label{Label: (id + uint32(i)) & 0xfffff, TC: uint8(i) & 7, TTL: uint8(i)})
		}
		o.InnerEthernet = nl&0x80 != 0
	case GRE:
		if len(inner) == 0 {
			return o, nil, false
		}
		inner[0] = inner[0]&0x0f | 0x40
	}
	if len(inner) > 1500 {
		inner = inner[:1500]
	}
	return o, inner, true
}

func FuzzRoundTrip(f *testing.F) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	c := pool.NewCache(8)
	f.Add(uint8(1), true, uint32(100), uint8(2), uint16(0), uint8(0), []byte("0123456789abcdef0123456789abcdef0123456789abcdef"))
	f.Add(uint8(0), true, uint32(7), uint8(0), uint16(0), uint8(0x10), innerEth(false, 100, 0))
	f.Add(uint8(1), true, uint32(7), uint8(0), uint16(0), uint8(0x10), mkInnerIP(true, 100, 9, 0))
	f.Fuzz(func(t *testing.T, typ uint8, v6 bool, id uint32, nl uint8, vlan uint16, knobs uint8, inner []byte) {
		o, inner, ok := fuzzOptions(typ, v6, id, nl, vlan, knobs, inner)
		if !ok {
			return
		}
		tun, err := NewTunnel(o)
		if err != nil {
			t.Fatal(err)
		}
		pk := load(t, pool, c, inner)
		defer c.Free([]pmd.Pkt{pk})
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		if o.Src.Is4() && checksum(pool.Data(&pk)[tun.l3:][:20]) != 0 {
			t.Fatal("outer IPv4 header checksum")
		}
		d := NewDecapper(DecapOptions{Local: []netip.Addr{o.Dst}, VerifyUDPChecksum: true, MPLSPayloadEthernet: o.InnerEthernet})
		var r Result
		if why := d.Decap(pool, &pk, &r); why != OK {
			switch {
			case why == DropTTLExpired && (o.Type == MPLSoUDP || o.Type == MPLSoGRE || o.TTL == 0):
				// A TTL copied from a payload whose TTL byte is 0 is expired on
				// arrival: a legitimate refusal.
			case why == DropTruncated && (o.Type == VXLAN || o.InnerEthernet) && len(inner) < 14:
				// An Ethernet payload without its header: refused on arrival.
			case why == DropBadChecksum && o.UDP6Checksum == Csum6Inner:
				// Derived from inner checksums that are wrong: the receiver drops
				// it, as it must. Check that they are wrong.
				payload := pool.Data(&pk)[tun.n:]
				_, off := innerIP(payload, o.Type == VXLAN || o.InnerEthernet)
				ps, ok := innerSum(payload[off:])
				if !ok || onesEqual(fold(ps), naiveSum(payload[off:])) {
					t.Fatalf("checksum refused though the inner checksums are right (%+v)", o)
				}
			default:
				t.Fatalf("decap of our own frame: %v (%+v)", why, o)
			}
			return
		}
		got := pool.Data(&pk)
		if o.InnerVLAN != 0 {
			if len(got) != len(inner)+4 || string(got[:12]) != string(inner[:12]) || string(got[16:]) != string(inner[12:]) {
				t.Fatal("VLAN-tagged inner differs")
			}
			return
		}
		if string(got) != string(inner) || r.Type != o.Type || r.VNI != o.VNI {
			t.Fatalf("round trip differs: %+v", r)
		}
	})
}

// IPv4 options are allowed: checksummed over the whole header and skipped.
func TestDecapIPv4Options(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	v := findVariant(t, "vxlan/outer4")
	f := build(t, pool, c, v)
	out := append(append(append([]byte(nil), f[:34]...), 1, 1, 1, 0), f[34:]...)
	out[14] = 0x46
	binary.BigEndian.PutUint16(out[16:], uint16(len(out)-14))
	fixIPv4Checksum24(out)
	pk := load(t, pool, c, out)
	d := NewDecapper(DecapOptions{})
	var r Result
	if why := d.Decap(pool, &pk, &r); why != OK || r.VNI != v.opts.VNI || !bytes.Equal(pool.Data(&pk), v.inner) {
		t.Fatalf("%v %+v", why, r)
	}
	c.Free([]pmd.Pkt{pk})
}

func fixIPv4Checksum24(f []byte) {
	binary.BigEndian.PutUint16(f[24:], 0)
	binary.BigEndian.PutUint16(f[24:], checksum(f[14:38]))
}

// Link padding after the outer datagram is not part of the inner packet.
func TestDecapPadding(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	inner := make([]byte, 20) // a bare IPv4 header, protocol 253 (RFC 3692)
	inner[0], inner[3], inner[8], inner[9] = 0x45, 20, 5, 253
	binary.BigEndian.PutUint16(inner[10:], checksum(inner))
	tun := mustTunnel(t, Options{Type: GRE, Src: v4A, Dst: v4B, DSCP: -1})
	pk := load(t, pool, c, inner)
	if err := tun.Encap(pool, &pk); err != nil {
		t.Fatal(err)
	}
	if pk.Len != 58 {
		t.Fatalf("frame %d bytes", pk.Len)
	}
	pool.Append(&pk, 2) // padded to the Ethernet minimum
	d := NewDecapper(DecapOptions{})
	var r Result
	if why := d.Decap(pool, &pk, &r); why != OK || pk.Len != 20 || r.InnerLen != 20 || r.InnerIPVersion != 4 {
		t.Fatalf("%v: inner %d bytes, result %+v", why, pk.Len, r)
	}
	c.Free([]pmd.Pkt{pk})
	// The same for UDP: the UDP length, not the frame, ends the inner frame.
	v := findVariant(t, "vxlan/outer4")
	f := append(build(t, pool, c, v), 0xee, 0xee, 0xee)
	pk = load(t, pool, c, f)
	if why := d.Decap(pool, &pk, &r); why != OK || !bytes.Equal(pool.Data(&pk), v.inner) {
		t.Fatalf("%v: inner %d bytes", why, pk.Len)
	}
	c.Free([]pmd.Pkt{pk})
}

// The inner VLAN of a VXLAN frame is reported and, if asked, removed; the outer TOS
// is reported.
func TestDecapInnerVLAN(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	v := findVariant(t, "vxlan-vlan/outer4")
	for _, strip := range []bool{false, true} {
		pk := load(t, pool, c, build(t, pool, c, v))
		tos := pool.Data(&pk)[15]
		d := NewDecapper(DecapOptions{StripInnerVLAN: strip})
		var r Result
		if why := d.Decap(pool, &pk, &r); why != OK || r.InnerVLAN != v.opts.InnerVLAN || r.TOS != tos {
			t.Fatalf("%v %+v", why, r)
		}
		got := pool.Data(&pk)
		if strip && !bytes.Equal(got, v.inner) {
			t.Fatal("tag not stripped")
		}
		if !strip && (len(got) != len(v.inner)+4 || binary.BigEndian.Uint16(got[12:]) != EtherVLAN) {
			t.Fatal("tag stripped")
		}
		c.Free([]pmd.Pkt{pk})
	}
}

// RFC 2784 §2.3: bits 6-12 of the GRE header are reserved and ignored on receipt, by
// the fast and the general path (the fast path hands any flag to the general one).
func TestDecapGREReservedBitsIgnored(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	for _, name := range []string{"gre-ip4/outer4", "mplsogre-1label/outer4", "gre-ip6/outer6"} {
		v := findVariant(t, name)
		l4 := 14 + 20
		if v.opts.Src.Is6() {
			l4 = 14 + 40
		}
		for bit := 6; bit <= 12; bit++ {
			f := build(t, pool, c, v)
			binary.BigEndian.PutUint16(f[l4:], 0x8000>>bit)
			d := NewDecapper(DecapOptions{})
			pk := load(t, pool, c, f)
			var r Result
			if why := d.Decap(pool, &pk, &r); why != OK || r.Type != v.opts.Type || !bytes.Equal(pool.Data(&pk), v.inner) {
				t.Errorf("%s, GRE flags %#04x: %v, %v", name, 0x8000>>bit, why, r.Type)
			}
			c.Free([]pmd.Pkt{pk})
		}
	}
}

// RFC 6040 §4.2: congestion marks on the outer header reach the inner one.
func TestDecapECN(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	cases := []struct {
		outer, inner, want uint8
		why                Reason
	}{
		{3, 2, 3, OK},      // CE over ECT(0): CE
		{3, 1, 3, OK},      // CE over ECT(1): CE
		{3, 0, 0, DropECN}, // CE over not-ECT: dropped
		{1, 2, 1, OK},      // ECT(1) over ECT(0): ECT(1)
		{2, 1, 1, OK},      // ECT(0) over ECT(1): unchanged
		{0, 3, 3, OK},      // not-ECT over CE: unchanged
	}
	for _, v6 := range []bool{false, true} {
		for _, cs := range cases {
			o := Options{Type: VXLAN, VNI: 5, Src: v4A, Dst: v4B, DSCP: 10}
			inner := innerEth(v6, 120, 0)
			ip := inner[14:]
			if v6 {
				ip[1] = ip[1]&^0x30 | cs.inner<<4
			} else {
				ip[1] = 0xb8 | cs.inner
				binary.BigEndian.PutUint16(ip[10:], 0)
				binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20]))
			}
			f := build(t, pool, c, variant{opts: o, inner: inner})
			f[15] = f[15]&^3 | cs.outer // outer ECN, set by the path
			fixIPv4Checksum(f, 14)
			for _, on := range []bool{false, true} {
				pk := load(t, pool, c, f)
				d := NewDecapper(DecapOptions{ECN: on})
				var r Result
				why := d.Decap(pool, &pk, &r)
				want, wantWhy := cs.inner, OK
				if on {
					want, wantWhy = cs.want, cs.why
				}
				if why != wantWhy {
					t.Fatalf("v6 %v %+v ECN %v: %v", v6, cs, on, why)
				}
				if why == OK {
					got := pool.Data(&pk)[14:]
					ecn := got[1] & 3
					if v6 {
						ecn = got[1] >> 4 & 3
					} else if checksum(got[:20]) != 0 {
						t.Fatalf("%+v: inner IPv4 checksum broken", cs)
					}
					if ecn != want {
						t.Fatalf("v6 %v %+v ECN %v: inner ECN %d", v6, cs, on, ecn)
					}
				}
				c.Free([]pmd.Pkt{pk})
			}
		}
	}
}

// FuzzDecapPaths checks that Decap's fast path (decapFastRun)
// does exactly what the general path does, for any frame and options: the same
// reason, result, packet fields, bytes and counts.
func FuzzDecapPaths(f *testing.F) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	c := pool.NewCache(8)
	for _, v := range variants() {
		f.Add(build(f, pool, c, v), uint8(0), uint8(0))
		if m := greOtherVersion(build(f, pool, c, v), v); m != nil {
			f.Add(m, uint8(0), uint8(0))
		}
	}
	f.Fuzz(func(t *testing.T, b []byte, mode, flags uint8) {
		decapPathsAgree(t, pool, c, b, mode, flags)
	})
}

// greOtherVersion returns f, v's frame, with the IP version of its plain GRE payload
// swapped (4 for 6 and back), which Decap refuses; nil if v is not plain GRE.
func greOtherVersion(f []byte, v variant) []byte {
	if v.opts.Type != GRE {
		return nil
	}
	p := 14 + 20 + 4 // untagged Ethernet, IPv4, GRE
	if v.opts.Src.Is6() {
		p += 20
	}
	f[p] ^= (4 ^ 6) << 4
	return f
}

// TestDecapPathsRandom is FuzzDecapPaths over a fixed sequence of the variants' frames
// with a few bytes overwritten, cut short or lengthened (the outer IPv4 checksum
// fixed half the time, so that the changes reach the headers after it).
func TestDecapPathsRandom(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	var frames [][]byte
	for _, v := range variants() {
		frames = append(frames, build(t, pool, c, v))
	}
	rng := rand.New(rand.NewPCG(3, 5))
	for range 30000 {
		f := append([]byte(nil), frames[rng.IntN(len(frames))]...)
		for k := rng.IntN(3); k > 0; k-- {
			f[rng.IntN(min(len(f), 80))] = byte(rng.Uint32())
		}
		if rng.IntN(3) == 0 {
			f = f[:rng.IntN(len(f)+1)]
		}
		if rng.IntN(3) == 0 {
			f = append(f, 0, 1, 2)
		}
		if len(f) >= 34 && f[12] == 8 && f[13] == 0 && rng.IntN(2) == 0 {
			fixIPv4Checksum(f, 14)
		}
		decapPathsAgree(t, pool, c, f, uint8(rng.IntN(256)), 0)
	}
}

// decapPathsAgree decapsulates b through Decap and through decapSlow alone with the
// options mode's bits select and the packet flags in flags, and fails t where the two
// differ.
func decapPathsAgree(t *testing.T, pool *pmd.Pool, c *pmd.Cache, b []byte, mode, flags uint8) {
	t.Helper()
	if len(b) > pool.FrameSize()-pool.Headroom() {
		return
	}
	o := DecapOptions{VerifyUDPChecksum: mode&1 != 0, MPLSPayloadEthernet: mode&2 != 0, StripInnerVLAN: mode&4 != 0,
		ECN: mode&32 != 0, InnerFlowHash: mode&64 != 0, Hash: HashOptions{Symmetric: mode&16 != 0}}
	if mode&8 != 0 {
		o.Local = []netip.Addr{v4B, v6B}
	}
	fast, slow := NewDecapper(o), NewDecapper(o)
	pk1, pk2 := load(t, pool, c, b), load(t, pool, c, b)
	defer c.Free([]pmd.Pkt{pk1, pk2})
	pk1.Flags = pmd.PktFlags(flags) &^ pmd.PktMore
	pk1.Hash = 77
	pk2.Flags, pk2.Hash = pk1.Flags, pk1.Hash
	var r1, r2 Result
	w1, w2 := fast.Decap(pool, &pk1, &r1), slow.decapSlow(pool, &pk2, &r2)
	if w1 != w2 || r1 != r2 {
		t.Fatalf("fast path %v %+v, general path %v %+v\n% x", w1, r1, w2, r2, b)
	}
	if pk1.Off != pk2.Off || pk1.Len != pk2.Len || pk1.Hash != pk2.Hash || pk1.Flags != pk2.Flags {
		t.Fatalf("fast path %+v, general path %+v\n% x", pk1, pk2, b)
	}
	if !bytes.Equal(pool.Data(&pk1), pool.Data(&pk2)) {
		t.Fatalf("fast and general paths left different bytes\n% x", b)
	}
	fast.Flush()
	slow.Flush()
	if fast.Stats() != slow.Stats() {
		t.Fatalf("counts differ: %+v and %+v\n% x", fast.Stats(), slow.Stats(), b)
	}
}

// TestDecapFastPathTaken checks that the benchmarks' frames take the fast path, so
// that FuzzDecapPaths compares something.
func TestDecapFastPathTaken(t *testing.T) {
	for _, bt := range benchTypes {
		for _, fam := range benchFamilies[:2] {
			testDecapFastPathTaken(t, bt.name+"/"+fam, bt.opts, fam)
		}
	}
}

func testDecapFastPathTaken(t *testing.T, name string, base Options, fam string) {
	{
		o, _ := benchOptions(base, fam)
		tun := mustTunnel(t, o)
		pool, pkts := loadBurst(t, benchPayload(o.Type, 64))
		if _, err := tun.EncapBatch(pool, pkts[:]); err != nil {
			t.Fatal(err)
		}
		var res [burst]Result
		d := NewDecapper(DecapOptions{})
		if n, i := d.decapFastRun(pool, pkts[:], res[:], 0, 0); n != burst || i != burst {
			t.Errorf("%s: the fast path took %d of %d", name, n, burst)
		}
	}
}

// A priority-tagged inner frame (an 802.1Q tag with VLAN id 0, IEEE 802.1Q §9.6)
// carries no VLAN but still has a tag: StripInnerVLAN removes it like any other, and
// InnerVLAN reports 0.
func TestDecapStripPriorityTag(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	untagged := innerEth(false, 120, 0)
	tagged := append(append(append([]byte(nil), untagged[:12]...), 0x81, 0, 5<<5, 0), untagged[12:]...)
	tun := mustTunnel(t, Options{Type: VXLAN, VNI: 5, Src: v4A, Dst: v4B, DSCP: -1})
	pk := load(t, pool, c, tagged)
	defer c.Free([]pmd.Pkt{pk})
	if err := tun.Encap(pool, &pk); err != nil {
		t.Fatal(err)
	}
	d := NewDecapper(DecapOptions{StripInnerVLAN: true})
	var r Result
	if why := d.Decap(pool, &pk, &r); why != OK || r.InnerVLAN != 0 {
		t.Fatalf("%v %+v", why, r)
	}
	if got := pool.Data(&pk); !bytes.Equal(got, untagged) {
		t.Errorf("priority tag left in place: ethertype %#04x, %d bytes, want %d",
			binary.BigEndian.Uint16(got[12:]), len(got), len(untagged))
	}
}

// TestDecapClearsCsumValid: a device's DATA_VALID (pmd.PktCsumValid) vouches for
// the outer checksum only, so every decap path takes it off the inner packet.
func TestDecapClearsCsumValid(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	defer c.Flush()
	for _, v := range variants() {
		frame := build(t, pool, c, v)
		for _, path := range []string{"Decap", "DecapBatch", "DecapChain", "DecapStage"} {
			pk := load(t, pool, c, frame)
			pk.Flags |= pmd.PktCsumValid
			d := NewDecapper(DecapOptions{})
			var r Result
			ok := false
			switch path {
			case "Decap":
				ok = d.Decap(pool, &pk, &r) == OK
			case "DecapBatch":
				var res [1]Result
				ps := []pmd.Pkt{pk}
				ok = d.DecapBatch(pool, ps, res[:], func(*pmd.Pkt, Reason) {}) == 1
				pk = ps[0]
			case "DecapChain":
				ch := []pmd.Pkt{pk}
				ok = d.DecapChain(pool, ch, &r) == OK
				pk = ch[0]
			case "DecapStage":
				var b pmd.Batch
				b.Room()[0] = pk
				b.Grow(1)
				d.DecapStage(pool, &b, func(*pmd.Pkt, Reason) {})
				if ok = b.Len() == 1; ok {
					pk = b.Pkts()[0]
				}
			}
			if !ok {
				t.Fatalf("%s/%s: not decapsulated", v.name, path)
			}
			if pk.Flags&pmd.PktCsumValid != 0 {
				t.Errorf("%s/%s: inner packet still marked checksum-valid", v.name, path)
			}
			c.Free([]pmd.Pkt{pk})
		}
	}
}

// TestDecapShortEthernet: a VXLAN frame (RFC 7348 §5) or an L2 VPN's MPLS payload
// (RFC 4448) carries an Ethernet frame, whose header is not optional; Linux
// drops a payload shorter than ETH_HLEN (__iptunnel_pull_header). Decap refuses it
// as truncated rather than hand on a "frame" without a header.
func TestDecapShortEthernet(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	for _, name := range []string{"vxlan/outer4", "vxlan/outer6", "mplsoudp-3labels-l2/outer4", "mplsogre-3labels-l2/outer6"} {
		v := findVariant(t, name)
		for n := 0; n <= 14; n++ {
			f := build(t, pool, c, variant{opts: v.opts, inner: v.inner[:n]})
			want := DropTruncated
			if n == 14 {
				want = OK
			}
			for _, path := range []string{"Decap", "DecapChain"} {
				d := NewDecapper(DecapOptions{VerifyUDPChecksum: true, MPLSPayloadEthernet: v.opts.InnerEthernet})
				pk := load(t, pool, c, f)
				var r Result
				var why Reason
				if path == "Decap" {
					why = d.Decap(pool, &pk, &r)
				} else {
					why = d.DecapChain(pool, one(&pk), &r)
				}
				if why != want {
					t.Errorf("%s, %d-byte payload, %s: %v, want %v", name, n, path, why, want)
				}
				c.Free([]pmd.Pkt{pk})
			}
		}
	}
}
