package xdpfilter

import (
	"encoding/binary"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/dpkit/dpkit/internal/testenv"
)

func frame(ethertype uint16, l3 []byte) []byte {
	f := make([]byte, 14, 14+len(l3))
	binary.BigEndian.PutUint16(f[12:], ethertype)
	return append(f, l3...)
}

func ipv4(proto byte, frag uint16, l4 []byte) []byte {
	h := make([]byte, 20, 20+len(l4))
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[6:], frag)
	h[8] = 64
	h[9] = proto
	return append(h, l4...)
}

func ipv6(next byte, l4 []byte) []byte {
	h := make([]byte, 40, 40+len(l4))
	h[0] = 0x60
	h[6] = next
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
	prog, err := ebpf.NewProgram(Spec(xsks, XDPDrop))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer prog.Close()
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
	}{
		{"vxlan4", frame(0x0800, ipv4(17, 0, udp(4789))), XDPDrop},
		{"mplsoudp4", frame(0x0800, ipv4(17, 0, udp(6635))), XDPDrop},
		{"gre4", frame(0x0800, ipv4(47, 0, make([]byte, 8))), XDPDrop},
		{"vxlan6", frame(0x86dd, ipv6(17, udp(4789))), XDPDrop},
		{"gre6", frame(0x86dd, ipv6(47, make([]byte, 8))), XDPDrop},
		{"vlan-vxlan4", vlan(0x0800, ipv4(17, 0, udp(4789))), XDPDrop},
		{"ipv4-options-vxlan", frame(0x0800, opts), XDPDrop},
		{"dns", frame(0x0800, ipv4(17, 0, udp(53))), XDPPass},
		{"tcp", frame(0x0800, ipv4(6, 0, make([]byte, 20))), XDPPass},
		{"fragment", frame(0x0800, ipv4(17, 0x2000, udp(4789))), XDPPass},
		{"arp", frame(0x0806, make([]byte, 28)), XDPPass},
		{"truncated-udp", frame(0x0800, ipv4(17, 0, udp(4789)[:4])), XDPPass},
		{"truncated-ip", frame(0x0800, make([]byte, 10)), XDPPass},
		{"ipv6-hop-by-hop", frame(0x86dd, ipv6(0, udp(4789))), XDPPass},
	}
	for _, c := range cases {
		ret, err := prog.Run(&ebpf.RunOptions{Data: c.pkt})
		if err != nil {
			t.Fatalf("%s: run: %v", c.name, err)
		}
		if ret != c.want {
			t.Errorf("%s: action %d, want %d", c.name, ret, c.want)
		}
	}
}
