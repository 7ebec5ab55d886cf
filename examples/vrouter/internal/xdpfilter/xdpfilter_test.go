package xdpfilter

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/dpkit/dpkit/internal/testenv"
)

func frame(ethertype uint16, l3 []byte) []byte {
	f := make([]byte, 14, 14+len(l3))
	binary.BigEndian.PutUint16(f[12:], ethertype)
	return append(f, l3...)
}

// The node's underlay addresses the test programs are built for: the last byte's
// high bit set, which a sign-extended 32-bit comparison would get wrong.
var (
	local4 = netip.MustParseAddr("192.168.50.129")
	local6 = netip.MustParseAddr("fd00:50::81")
)

func ipv4(proto byte, frag uint16, l4 []byte) []byte {
	return ipv4To(local4, proto, frag, l4)
}

func ipv4To(dst netip.Addr, proto byte, frag uint16, l4 []byte) []byte {
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 64
	h[9] = proto
	copy(h[16:], dst.AsSlice())
	return append(h, l4...)
}

func ipv6(next byte, l4 []byte) []byte {
	return ipv6To(local6, next, l4)
}

func ipv6To(dst netip.Addr, next byte, l4 []byte) []byte {
	h := make([]byte, 40, 40+len(l4))
	h[0] = 0x60
	h[6] = next
	copy(h[24:], dst.AsSlice())
	return append(h, l4...)
}

func udp(dport uint16) []byte {
	u := make([]byte, 16)
	binary.BigEndian.PutUint16(u[0:], 50000)
	binary.BigEndian.PutUint16(u[2:], dport)
	return u
}

// The classification runs in the kernel's verifier and interpreter/JIT through
// BPF_PROG_TEST_RUN: overlay frames reach the redirect (whose fallback the test sets to
// DROP, as no socket is in the map), everything else passes.
func TestClassify(t *testing.T) {
	testenv.NeedRoot(t)
	xsks, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	if err != nil {
		testenv.Unavailable(t, "XSKMAP: "+err.Error())
	}
	defer xsks.Close()
	prog, err := ebpf.NewProgram(Spec(xsks, XDPDrop, local4))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer prog.Close()
	prog6, err := ebpf.NewProgram(Spec(xsks, XDPDrop, local6))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer prog6.Close()
	vlan := func(inner uint16, l3 []byte) []byte {
		f := make([]byte, 18)
		binary.BigEndian.PutUint16(f[12:], 0x8100)
		binary.BigEndian.PutUint16(f[16:], inner)
		return append(f, l3...)
	}
	opts := ipv4(17, 0, udp(4789))
	opts[0] = 0x46 // IHL 6: 4 bytes of options before UDP
	opts = append(opts[:20], append([]byte{1, 1, 1, 1}, opts[20:]...)...)
	cases := []struct {
		name string
		pkt  []byte
		want uint32
		v6   bool // run through the program of an IPv6 underlay
	}{
		{"vxlan4", frame(0x0800, ipv4(17, 0, udp(4789))), XDPDrop, false},
		{"mplsoudp4", frame(0x0800, ipv4(17, 0, udp(6635))), XDPDrop, false},
		{"gre4", frame(0x0800, ipv4(47, 0, make([]byte, 8))), XDPDrop, false},
		{"vxlan6", frame(0x86dd, ipv6(17, udp(4789))), XDPDrop, true},
		{"gre6", frame(0x86dd, ipv6(47, make([]byte, 8))), XDPDrop, true},
		// Tunnels to the host's other addresses, or of the other family, are the
		// kernel's: the vRouter would only drop them.
		{"vxlan4-other-dst", frame(0x0800, ipv4To(netip.MustParseAddr("192.168.50.1"), 17, 0, udp(4789))), XDPPass, false},
		{"gre4-other-dst", frame(0x0800, ipv4To(netip.MustParseAddr("10.0.0.129"), 47, 0, make([]byte, 8))), XDPPass, false},
		{"vxlan6-other-dst", frame(0x86dd, ipv6To(netip.MustParseAddr("fd00:50::1"), 17, udp(4789))), XDPPass, true},
		{"gre6-other-dst", frame(0x86dd, ipv6To(netip.MustParseAddr("fd01:50::81"), 47, make([]byte, 8))), XDPPass, true},
		{"vxlan6-on-ipv4-underlay", frame(0x86dd, ipv6(17, udp(4789))), XDPPass, false},
		{"vxlan4-on-ipv6-underlay", frame(0x0800, ipv4(17, 0, udp(4789))), XDPPass, true},
		{"vlan-vxlan4", vlan(0x0800, ipv4(17, 0, udp(4789))), XDPDrop, false},
		{"ipv4-options-vxlan", frame(0x0800, opts), XDPDrop, false},
		{"dns", frame(0x0800, ipv4(17, 0, udp(53))), XDPPass, false},
		{"tcp", frame(0x0800, ipv4(6, 0, make([]byte, 20))), XDPPass, false},
		{"fragment", frame(0x0800, ipv4(17, 0x2000, udp(4789))), XDPPass, false},
		{"arp", frame(0x0806, make([]byte, 28)), XDPPass, false},
		{"truncated-udp", frame(0x0800, ipv4(17, 0, udp(4789)[:4])), XDPPass, false},
		{"truncated-ip", frame(0x0800, make([]byte, 10)), XDPPass, false},
		{"ipv6-hop-by-hop", frame(0x86dd, ipv6(0, udp(4789))), XDPPass, true},
	}
	for _, c := range cases {
		p := prog
		if c.v6 {
			p = prog6
		}
		ret, err := p.Run(&ebpf.RunOptions{Data: c.pkt})
		if err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		if ret != c.want {
			t.Errorf("%s: action %d, want %d", c.name, ret, c.want)
		}
	}
}
