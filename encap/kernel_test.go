package encap

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

// icmpEcho builds an inner Ethernet+IPv4 ICMP echo request.
func icmpEcho(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, id uint16) []byte {
	f := make([]byte, 14+20+8+32)
	copy(f[0:], dstMAC)
	copy(f[6:], srcMAC)
	binary.BigEndian.PutUint16(f[12:], EtherIPv4)
	ip := f[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[8], ip[9] = 64, 1
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip[:20]))
	ic := ip[20:]
	ic[0] = 8 // echo request
	binary.BigEndian.PutUint16(ic[4:], id)
	binary.BigEndian.PutUint16(ic[6:], 1)
	for i := 8; i < len(ic); i++ {
		ic[i] = byte(i)
	}
	binary.BigEndian.PutUint16(ic[2:], checksum(ic))
	return f
}

// TestKernelVXLAN checks interop with the Linux kernel's vxlan device both ways: an
// ICMP echo request that dpkit encapsulates is accepted by the kernel's vxlan device
// and delivered to the inner destination, whose echo reply the kernel encapsulates and
// dpkit decapsulates with the right VNI and inner frame.
func TestKernelVXLAN(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "ethtool")
	t.Run("outer4", func(t *testing.T) { kernelVXLAN(t, false, Csum6Full) })
	// Linux verifies non-zero UDP checksums over IPv6 and, with udp6zerocsumrx,
	// accepts zero: each way dpkit makes the checksum meets an independent checker.
	t.Run("outer6", func(t *testing.T) { kernelVXLAN(t, true, Csum6Full) })
	t.Run("outer6-csuminner", func(t *testing.T) { kernelVXLAN(t, true, Csum6Inner) })
	t.Run("outer6-csumzero", func(t *testing.T) { kernelVXLAN(t, true, Csum6Zero) })
}

// udp6CsumErrors reads the namespace's Udp6InCsumErrors counter.
func udp6CsumErrors(t *testing.T, ns *nettest.NS) int {
	t.Helper()
	for _, l := range strings.Split(ns.MustExec(t, "cat", "/proc/net/snmp6"), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "Udp6InCsumErrors" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Udp6InCsumErrors in /proc/net/snmp6")
	return 0
}

func kernelVXLAN(t *testing.T, v6 bool, csum Csum6) {
	a, b := nettest.NewNS(t), nettest.NewNS(t)
	v := nettest.NewVeth(t, a, b, nettest.VethOptions{})
	outerA, outerB := netip.MustParseAddr("192.168.77.1"), netip.MustParseAddr("192.168.77.2")
	bits := 24
	if v6 {
		outerA, outerB, bits = netip.MustParseAddr("fd77::1"), netip.MustParseAddr("fd77::2"), 64
	}
	a.AddAddr(t, v.A, netip.PrefixFrom(outerA, bits)) // so B's kernel can resolve us
	b.AddAddr(t, v.B, netip.PrefixFrom(outerB, bits))
	// Frames read raw off a veth carry the partial checksums of TX offload unless it
	// is off on the sender.
	b.SetTxOffload(t, v.B, false)
	a.AddNeigh(t, v.A, outerB, v.MACB)
	b.AddNeigh(t, v.B, outerA, v.MACA)
	const vni = 4242
	b.MustExec(t, "ip", "link", "add", "vx0", "type", "vxlan", "id", "4242", "local", outerB.String(),
		"remote", outerA.String(), "dstport", "4789", "dev", v.B, "udp6zerocsumrx")
	b.MustExec(t, "ip", "addr", "add", "10.200.0.2/24", "dev", "vx0")
	b.MustExec(t, "ip", "link", "set", "vx0", "up")
	innerMAC := net.HardwareAddr{2, 0xaa, 0, 0, 0, 1}
	vxMAC := b.Link(t, "vx0").Attrs().HardwareAddr
	innerA, innerB := netip.MustParseAddr("10.200.0.1"), netip.MustParseAddr("10.200.0.2")
	b.AddNeigh(t, "vx0", innerA, innerMAC)

	pool := newPool(t)
	c := pool.NewCache(16)
	defer c.Flush()
	tun, err := NewTunnel(Options{Type: VXLAN, VNI: vni, SrcMAC: [6]byte(v.MACA), DstMAC: [6]byte(v.MACB),
		Src: outerA, Dst: outerB, DSCP: -1, UDP6Checksum: csum})
	if err != nil {
		t.Fatal(err)
	}
	raw := a.OpenRaw(t, v.A)
	dec := NewDecapper(DecapOptions{Local: []netip.Addr{outerA}, VerifyUDPChecksum: true})
	buf := make([]byte, 2048)
	for id := uint16(1); id <= 3; id++ {
		inner := icmpEcho(innerMAC, vxMAC, innerA, innerB, id)
		pk := load(t, pool, c, inner)
		if err := tun.Encap(pool, &pk); err != nil {
			t.Fatal(err)
		}
		if err := raw.Send(pool.Data(&pk)); err != nil {
			t.Fatal(err)
		}
		c.Free([]pmd.Pkt{pk})
		// Wait for the kernel's encapsulated echo reply.
		var r Result
		n, err := raw.Recv(buf, 3*time.Second, func(f []byte) bool {
			if dec.Classify(f, false, &r) != OK || len(f) < r.OuterLen+14+21 {
				return false
			}
			in := f[r.OuterLen:] // skip the kernel's own chatter (MLD, ND) in the tunnel
			return binary.BigEndian.Uint16(in[12:]) == EtherIPv4 && in[14+9] == 1 && in[14+20] == 0
		})
		if err != nil {
			out, _ := b.Exec("ip", "-s", "-d", "link", "show", "vx0")
			t.Fatalf("echo %d: no VXLAN frame back from the kernel: %v\n%s", id, err, out)
		}
		reply := load(t, pool, c, buf[:n])
		if why := dec.Decap(pool, &reply, &r); why != OK {
			t.Fatalf("decap: %v", why)
		}
		in := pool.Data(&reply)
		if r.VNI != vni || r.Src != outerB {
			t.Fatalf("VNI %d from %v", r.VNI, r.Src)
		}
		if len(in) < 14+20+8 || string(in[0:6]) != string(innerMAC) || binary.BigEndian.Uint16(in[12:]) != EtherIPv4 {
			t.Fatalf("inner frame: %x", in)
		}
		ip := in[14:]
		if ip[9] != 1 || ip[20] != 0 || binary.BigEndian.Uint16(ip[24:]) != id ||
			netip.AddrFrom4([4]byte(ip[12:16])) != innerB || netip.AddrFrom4([4]byte(ip[16:20])) != innerA {
			t.Fatalf("not our echo reply: %x", ip[:28])
		}
		c.Free([]pmd.Pkt{reply})
	}
	if !v6 || csum == Csum6Zero {
		return
	}
	// The control: a frame whose checksum is off by one bit is refused and counted,
	// so the kernel did check the ones above.
	before := udp6CsumErrors(t, b)
	pk := load(t, pool, c, icmpEcho(innerMAC, vxMAC, innerA, innerB, 99))
	if err := tun.Encap(pool, &pk); err != nil {
		t.Fatal(err)
	}
	f := pool.Data(&pk)
	f[len(f)-1] ^= 1
	if err := raw.Send(f); err != nil {
		t.Fatal(err)
	}
	c.Free([]pmd.Pkt{pk})
	deadline := time.Now().Add(3 * time.Second)
	for udp6CsumErrors(t, b) == before {
		if time.Now().After(deadline) {
			t.Fatal("the kernel did not count the corrupted frame as a checksum error")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
