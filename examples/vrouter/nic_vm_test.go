package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/vfio"
	"github.com/dpkit/dpkit/internal/vmtest"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

// The NIC uplink test: a QEMU guest runs the vRouter with its uplink on a virtio-net
// NIC driven by dpkit's VFIO driver (two queue pairs, two workers) and the host TAP
// vhost0 holding the node's underlay address; the NIC's backend is a TAP in a host
// namespace where the Linux kernel plays the remote node: a vxlan device, whose MAC
// the vRouter sends its inner frames to (the remote's router_mac).
//
//	guest: pod (dpkit front-end) ─vhost-user─ vRouter ─VFIO─ NIC ══╗
//	       guest kernel ─ vhost0 (192.168.60.2) ─┘                 ║ TAP
//	host namespace: ta (192.168.60.1) ─ vxlan0 (VNI 100, 10.1.2.2) ═╝
const (
	nicGuestUnderlay = "192.168.60.2"
	nicHostUnderlay  = "192.168.60.1"
	nicHostMAC       = "02:00:00:00:60:01"
	nicHostPodIP     = "10.1.2.2"
	nicPodIP         = "10.1.1.2"
	nicPodMAC        = "02:00:00:01:01:02"
	nicHostVxlanMAC  = "02:00:00:00:61:01"
)

// TestVRouterNICVM runs TestGuestVRouterNIC in a guest whose NIC is a host TAP
// connected to a kernel VXLAN endpoint.
func TestVRouterNICVM(t *testing.T) {
	vmtest.Need(t)
	ns := nettest.NewNS(t)
	ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	ta := nettest.Name("tap")
	for _, c := range [][]string{
		{"ip", "tuntap", "add", "dev", ta, "mode", "tap", "multi_queue"},
		{"ip", "link", "set", ta, "address", nicHostMAC, "mtu", "9000", "up"},
		{"ip", "addr", "add", nicHostUnderlay + "/24", "dev", ta},
		{"ip", "link", "add", "vxlan0", "address", nicHostVxlanMAC, "type", "vxlan", "id", "100",
			"local", nicHostUnderlay, "remote", nicGuestUnderlay, "dstport", "4789", "dev", ta},
		{"ip", "link", "set", "vxlan0", "mtu", "1450", "up"},
		{"ip", "addr", "add", nicHostPodIP + "/24", "dev", "vxlan0"},
		{"ip", "route", "add", "10.1.1.0/24", "dev", "vxlan0"},
		// The pod is reached through its vRouter's router MAC.
		{"ip", "neigh", "add", nicPodIP, "lladdr", "00:00:5e:00:01:00", "dev", "vxlan0"},
	} {
		ns.MustExec(t, c...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, c := range [][]string{{"ip", "-s", "link"}, {"ip", "neigh"}, {"bridge", "fdb", "show", "dev", "vxlan0"}} {
				out, _ := ns.Exec(c...)
				t.Log(strings.Join(c, " "), "\n", out)
			}
		}
	})
	vmtest.Run(t, vmtest.Config{Run: "^TestGuestVRouterNIC$", Netns: ns.Name, CPUs: 2, MemoryMB: 1024,
		Timeout: 200 * time.Second, NICs: []vmtest.NIC{{Tap: ta, Queues: 2}}})
}

func TestGuestVRouterNIC(t *testing.T) {
	vmtest.NeedGuest(t)
	devs, err := vfio.Find(0x1af4, 0x1041)
	if err != nil || len(devs) != 1 {
		t.Fatalf("virtio-net devices %v: %v", devs, err)
	}
	bdf := devs[0]
	dir := t.TempDir()
	cfgText := fmt.Sprintf(`node: {name: n1, underlay_ip: %s}
uplink: {pci: "%s", queues: 2, host_tap: vhost0, mtu: 9000}
forwarding_cpus: "0-1"
metrics: 127.0.0.1:9470
vrfs:
  - name: red
    vni: 100
    label: 100
    routes:
      - {prefix: 10.1.2.0/24, remote: host}
interfaces:
  - name: pod
    type: vhost
    vrf: red
    ips: [%s]
    mac: %s
    gateway: [10.1.1.1]
    vhost: {socket: %s, role: server}
remotes:
  - {name: host, underlay_ip: %s, mac: "%s", encap: vxlan, router_mac: "%s"}
`, nicGuestUnderlay, bdf, nicPodIP, nicPodMAC, filepath.Join(dir, "pod.sock"), nicHostUnderlay, nicHostMAC, nicHostVxlanMAC)
	path := filepath.Join(dir, "n1.yaml")
	os.WriteFile(path, []byte(cfgText), 0o644)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	// Before the NIC is bound to vfio-pci the vRouter refuses it, naming the fix.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, cfg, path, 4096, nil, log); err == nil || !strings.Contains(err.Error(), "vfio-pci") {
		t.Fatalf("unbound NIC: %v", err)
	}
	if err := pmd.BindVFIO(bdf); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if drv, err := pmd.UnbindVFIO(bdf); err != nil || drv != "virtio-pci" {
			t.Errorf("unbind %s: %q %v", bdf, drv, err)
		}
	}()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, path, 4096, nil, log) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("vrouter: %v", err)
			}
		}
	}
	defer stop()

	// The host kernel's side: the underlay address on vhost0, which the vRouter made
	// with the NIC's MAC.
	var link netlink.Link
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if link, err = netlink.LinkByName("vhost0"); err == nil && link.Attrs().OperState == netlink.OperUp ||
			err == nil && link.Attrs().Flags&net.FlagUp != 0 {
			break
		}
		select {
		case err := <-done:
			stopped = true
			t.Fatalf("vrouter stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no vhost0: %v", err)
		}
	}
	addr, _ := netlink.ParseAddr(nicGuestUnderlay + "/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}

	// The pod: a dpkit front-end on the vRouter's socket.
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Shared: true, Huge: pmd.HugeNever, Name: "pod"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	dctx, dcancel := context.WithTimeout(ctx, 30*time.Second)
	var fe *vhost.Frontend
	for fe == nil {
		if fe, err = vhost.Dial(dctx, vhost.FrontendOptions{Path: filepath.Join(dir, "pod.sock"), Pool: pool}); err != nil {
			if dctx.Err() != nil {
				t.Fatalf("pod attach: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	dcancel()
	defer fe.Close()
	port := fe.Port(0)
	cache := pool.NewCache(0)
	defer cache.Flush()

	// Pings from the pod to the host's address behind its vxlan device: each crosses
	// the vRouter, the NIC (VXLAN) and the kernel, and the reply comes back. The first
	// ones also make the host resolve the vRouter's underlay address, which only the
	// guest kernel answers, on vhost0.
	podMAC, _ := net.ParseMAC(nicPodMAC)
	// A reply counts whenever it comes: under TCG on a loaded machine one may miss its
	// own 250 ms window and arrive during the next.
	replies := 0
	var seen [40]bool
	for seq := 0; seq < 40 && replies < 10; seq++ {
		var pk [1]pmd.Pkt
		if cache.Alloc(pk[:]) != 1 {
			t.Fatal("alloc")
		}
		req := icmpEcho([6]byte(podMAC), routerMAC, netip.MustParseAddr(nicPodIP), netip.MustParseAddr(nicHostPodIP), uint16(seq))
		pool.Append(&pk[0], len(req))
		copy(pool.Data(&pk[0]), req)
		if port.Tx(pk[:]) != 1 {
			cache.Free(pk[:])
		}
		for deadline := time.Now().Add(250 * time.Millisecond); time.Now().Before(deadline); {
			var in [8]pmd.Pkt
			n := port.Rx(in[:])
			for i := range in[:n] {
				d := pool.Data(&in[i])
				if len(d) >= 42 && binary.BigEndian.Uint16(d[12:]) == 0x0800 && d[23] == 1 && d[34] == 0 &&
					bytes.Equal(d[26:30], netip.MustParseAddr(nicHostPodIP).AsSlice()) {
					if r := binary.BigEndian.Uint16(d[40:]); int(r) <= seq && !seen[r] {
						seen[r] = true
						replies++
					}
				}
			}
			cache.Free(in[:n])
			if n == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	if replies < 10 {
		t.Errorf("%d echo replies from the host's VXLAN endpoint, want 10", replies)
		if r, err := http.Get("http://127.0.0.1:9470/metrics"); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			t.Log(nonZero(string(b)))
		}
	}
	// The guest kernel reached the host through vhost0 and the NIC: it knows the
	// host's underlay MAC from an ARP reply the vRouter passed up.
	if c, err := net.DialTimeout("udp", nicHostUnderlay+":9", time.Second); err == nil {
		c.Write([]byte("hello"))
		c.Close()
	}
	resolved := false
	for deadline := time.Now().Add(15 * time.Second); !resolved && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		neigh, _ := netlink.NeighList(link.Attrs().Index, netlink.FAMILY_V4)
		for _, n := range neigh {
			if n.IP.String() == nicHostUnderlay && n.HardwareAddr.String() == nicHostMAC && n.State&netlink.NUD_REACHABLE != 0 {
				resolved = true
			}
		}
	}
	if !resolved {
		t.Error("the guest kernel did not resolve the host's underlay address through vhost0")
	}
	// Jumbo frames through the NIC: 6000-byte pings from the guest kernel to the host,
	// larger than a 4096-byte frame both ways (vhost0 → vRouter → NIC as a chain, and
	// the reply over several mergeable buffers → a chain → vhost0).
	if got := jumboPings(t, nicHostUnderlay, 6000, 10); got < 5 {
		t.Errorf("%d of 10 jumbo pings answered, want 5 or more", got)
	}
	stop()
}

// jumboPings sends n ICMP echo requests of size payload bytes to dst from the guest
// kernel, unfragmented, and returns how many full-size replies came back.
func jumboPings(t *testing.T, dst string, size, n int) int {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200000})
	to := &unix.SockaddrInet4{Addr: netip.MustParseAddr(dst).As4()}
	replies := 0
	buf := make([]byte, 16384)
	for seq := 0; seq < n; seq++ {
		m := make([]byte, 8+size)
		m[0] = 8
		binary.BigEndian.PutUint16(m[4:], 0x4a55)
		binary.BigEndian.PutUint16(m[6:], uint16(seq))
		for i := 8; i < len(m); i++ {
			m[i] = byte(i * 7)
		}
		binary.BigEndian.PutUint16(m[2:], ^sum16(m))
		if err := unix.Sendto(fd, m, 0, to); err != nil {
			t.Logf("jumbo ping %d: %v", seq, err)
			continue
		}
		for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
			k, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			ip := buf[:k]
			if k < 28 || int(ip[0]&0xf)*4 != 20 {
				continue
			}
			r := ip[20:]
			if r[0] == 0 && binary.BigEndian.Uint16(r[4:]) == 0x4a55 && binary.BigEndian.Uint16(r[6:]) == uint16(seq) {
				if bytes.Equal(r[8:], m[8:]) {
					replies++
				}
				break
			}
		}
	}
	return replies
}

// icmpEcho is an ICMP echo request frame with identifier 0x4450 and sequence seq.
func icmpEcho(src, dst [6]byte, sip, dip netip.Addr, seq uint16) []byte {
	f := make([]byte, 14+20+8+32)
	copy(f, dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	copy(ip[12:], sip.AsSlice())
	copy(ip[16:], dip.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ^sum16(ip[:20]))
	m := ip[20:]
	m[0] = 8
	binary.BigEndian.PutUint16(m[4:], 0x4450)
	binary.BigEndian.PutUint16(m[6:], seq)
	for i := 8; i < len(m); i++ {
		m[i] = byte(i)
	}
	binary.BigEndian.PutUint16(m[2:], ^sum16(m))
	return f
}

// sum16 is the ones'-complement sum of b (RFC 1071), folded.
func sum16(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
