package pmd

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/vfio"
	"github.com/dpkit/dpkit/internal/vmtest"
	"golang.org/x/sys/unix"
)

// TestVirtioNetVM runs the virtio-net guest tests in a QEMU guest with an Intel IOMMU:
// NIC 0 (split ring) and NIC 1 (packed ring) share a QEMU hub, so each can be driven
// by dpkit while the guest kernel's virtio_net drives the other.
func TestVirtioNetVM(t *testing.T) {
	vmtest.Run(t, vmtest.Config{Run: "^TestGuestVirtioNet(Errors)?$", NICs: []vmtest.NIC{{Hub: 0}, {Hub: 0, Packed: true}}, MemoryMB: 768, Timeout: 100 * time.Second})
}

const testEtherType = 0x88b5 // IEEE local experimental: nothing else in the guest sends it

// kernelPeer is the guest kernel's side: an AF_PACKET socket on a virtio_net interface.
type kernelPeer struct {
	fd  int
	ifi *net.Interface
}

func openKernelPeer(t *testing.T, bdf string) *kernelPeer {
	t.Helper()
	var name string
	deadline := time.Now().Add(10 * time.Second)
	for name == "" {
		m, _ := filepath.Glob(filepath.Join("/sys/bus/pci/devices", bdf, "virtio*", "net", "*"))
		if len(m) == 1 {
			name = filepath.Base(m[0])
		} else if time.Now().After(deadline) {
			t.Fatalf("no kernel interface for %s", bdf)
		} else {
			time.Sleep(50 * time.Millisecond)
		}
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(testEtherType)))
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(testEtherType), Ifindex: ifi.Index}); err != nil {
		t.Fatal(err)
	}
	// Bring the link up.
	s, _ := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	req, _ := unix.NewIfreq(name)
	unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, req)
	req.SetUint16(req.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, req); err != nil {
		t.Fatal(err)
	}
	unix.Close(s)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 3})
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	for deadline := time.Now().Add(10 * time.Second); ; {
		st, _ := os.ReadFile("/sys/class/net/" + name + "/operstate")
		if string(bytes.TrimSpace(st)) == "up" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s operstate %q", name, st)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &kernelPeer{fd: fd, ifi: ifi}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func testFrame(dst, src net.HardwareAddr, seq, size int) []byte {
	b := make([]byte, size)
	copy(b, dst)
	copy(b[6:], src)
	b[12], b[13] = testEtherType>>8, testEtherType&0xff
	b[14], b[15], b[16], b[17] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	for i := 18; i < size; i++ {
		b[i] = byte(i + seq)
	}
	return b
}

func (k *kernelPeer) send(t *testing.T, frame []byte) {
	// The kernel's queue is busy (EAGAIN) while the device drains it, and down
	// (ENETDOWN) for a moment after the link comes up: retry for a while, never block.
	for deadline := time.Now().Add(5 * time.Second); ; {
		err := unix.Sendto(k.fd, frame, unix.MSG_DONTWAIT, nil)
		if err == nil {
			return
		}
		if (err != unix.EAGAIN && err != unix.ENETDOWN && err != unix.ENOBUFS) || time.Now().After(deadline) {
			t.Fatalf("kernel send: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// recvAll reads test frames until the socket stays quiet.
func (k *kernelPeer) recvAll(max int) [][]byte {
	var out [][]byte
	buf := make([]byte, 16384)
	for len(out) < max {
		n, err := unix.Read(k.fd, buf)
		if err != nil {
			break
		}
		out = append(out, append([]byte(nil), buf[:n]...))
	}
	return out
}

func guestVirtioNICs(t *testing.T) []string {
	devs, err := vfio.Find(0x1af4, 0x1041)
	if err != nil || len(devs) != 2 {
		t.Fatalf("virtio-net devices %v: %v", devs, err)
	}
	return devs
}

func TestGuestVirtioNet(t *testing.T) {
	vmtest.NeedGuest(t)
	devs := guestVirtioNICs(t)
	for i, packed := range []bool{false, true} {
		t.Run(fmt.Sprintf("packed=%v", packed), func(t *testing.T) {
			testVirtioNetPair(t, devs[i], devs[1-i], packed)
		})
	}
}

func testVirtioNetPair(t *testing.T, ours, theirs string, packed bool) {
	peer := openKernelPeer(t, theirs)
	pool, err := NewPool(PoolOptions{Frames: 1024, Huge: HugeNever, Name: "virtio-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	}()
	if err := BindVFIO(ours); err != nil {
		t.Fatal(err)
	}
	v, err := OpenVirtioNet(VirtioNetOptions{PCI: ours, Pool: pool, Packed: packed, QueueSize: 128})
	if err != nil {
		UnbindVFIO(ours)
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			v.Close()
			UnbindVFIO(ours)
		}
	}()
	if v.Features()&virtioFAccessPlat == 0 || (v.Features()&virtioFRingPacked != 0) != packed {
		t.Fatalf("features %#x", v.Features())
	}
	mac := v.MAC()
	if mac == ([6]byte{}) {
		t.Fatal("no MAC")
	}
	ourMAC := net.HardwareAddr(mac[:])
	var txPhase, rxPhase func(t *testing.T, n int)
	rxPhase = func(t *testing.T, n int) {
		pkts := make([]Pkt, 32)
		// kernel → dpkit, in rounds of 32.
		rcv, sentTo := 0, 0
		deadline := time.Now().Add(20 * time.Second)
		for rcv < n && time.Now().Before(deadline) {
			if rcv == sentTo {
				for ; sentTo < min(rcv+32, n); sentTo++ {
					peer.send(t, testFrame(ourMAC, peer.ifi.HardwareAddr, sentTo, 60+sentTo%1400))
				}
			}
			k := v.Rx(pkts)
			for i := 0; i < k; i++ {
				d := pool.Data(&pkts[i])
				if len(d) < 18 || d[12] != testEtherType>>8 || d[13] != testEtherType&0xff {
					pool.Put([]Frame{pkts[i].Frame}) // other traffic (IPv6 ND from the kernel)
					continue
				}
				if want := testFrame(ourMAC, peer.ifi.HardwareAddr, rcv, 60+rcv%1400); !bytes.Equal(d, want) {
					t.Fatalf("rx frame %d differs", rcv)
				}
				pool.Put([]Frame{pkts[i].Frame})
				rcv++
			}
		}
		if rcv != n {
			t.Fatalf("dpkit received %d of %d frames (err %v, stats %+v, used %+v, rx inflight %d, status %#x, kernel tx %s)", rcv, n, v.Err(), v.Stats(), v.qps[0].rx.used[:4], v.qps[0].rx.q.InFlight(), v.common.Read8(0x14), func() []byte {
				b, _ := os.ReadFile("/sys/class/net/" + peer.ifi.Name + "/statistics/tx_packets")
				return b
			}())
		}
	}
	t.Logf("dpkit drives %s (%s), kernel drives %s (%s); link up %v", ours, ourMAC, theirs, peer.ifi.Name, v.LinkUp())
	if !v.LinkUp() {
		t.Error("link down")
	}

	exchange := func(t *testing.T, n int) {
		rxPhase(t, n)
		txPhase(t, n)
	}
	txPhase = func(t *testing.T, n int) {
		// dpkit → kernel: n frames of mixed sizes, exact count and contents, in
		// rounds of 32 so the kernel side keeps up (TCG is slow).
		sent := 0
		pkts := make([]Pkt, 32)
		var got [][]byte
		for sent < n {
			k := min(len(pkts), n-sent)
			var fr [32]Frame
			if got := pool.Get(fr[:k]); got != k {
				t.Fatalf("pool empty")
			}
			for i := 0; i < k; i++ {
				f := testFrame(peer.ifi.HardwareAddr, ourMAC, sent+i, 60+(sent+i)%1400)
				pkts[i] = Pkt{Frame: fr[i], Off: uint16(pool.Headroom()), Len: uint16(len(f))}
				copy(pool.Data(&pkts[i]), f)
			}
			done := 0
			for stuck := time.Now().Add(5 * time.Second); done < k; {
				done += v.Tx(pkts[done:k])
				if time.Now().After(stuck) {
					pool.Put(fr[done:k])
					t.Fatalf("Tx stuck at %d: %v", sent+done, v.Err())
				}
			}
			sent += k
			got = append(got, peer.recvAll(k)...)
		}
		if len(got) < n {
			got = append(got, peer.recvAll(n-len(got))...)
		}
		if len(got) != n {
			rp, _ := os.ReadFile("/sys/class/net/" + peer.ifi.Name + "/statistics/rx_packets")
			rd, _ := os.ReadFile("/sys/class/net/" + peer.ifi.Name + "/statistics/rx_dropped")
			t.Fatalf("kernel received %d of %d frames (iface rx %s dropped %s; our tx in flight %d)", len(got), n, bytes.TrimSpace(rp), bytes.TrimSpace(rd), v.qps[0].tx.q.InFlight())
		}
		if extra := peer.recvAll(1); len(extra) != 0 {
			t.Fatalf("kernel received more than %d frames", n)
		}
		for i, g := range got {
			if want := testFrame(peer.ifi.HardwareAddr, ourMAC, i, 60+i%1400); !bytes.Equal(g, want) {
				t.Fatalf("frame %d differs (len %d vs %d)", i, len(g), len(want))
			}
		}
	}
	t.Run("exchange", func(t *testing.T) { exchange(t, 500) })
	if err := v.Check(); err != nil {
		t.Errorf("Check after traffic: %v", err)
	}
	st := v.Stats()
	if st.TxPackets != 500 || st.RxPackets < 500 {
		t.Errorf("stats %+v", st)
	}
	t.Run("jumbo", func(t *testing.T) { testVirtioNetJumbo(t, v, pool, peer, ourMAC) })
	// The datapath allocates nothing: one TX of one frame plus an RX poll.
	{
		fr := make([]Frame, 1)
		one := make([]Pkt, 1)
		rxb := make([]Pkt, 32)
		allocs := testing.AllocsPerRun(50, func() {
			pool.Get(fr)
			one[0] = Pkt{Frame: fr[0], Off: uint16(pool.Headroom()), Len: 60}
			for v.Tx(one) == 0 {
			}
			for i, k := 0, v.Rx(rxb); i < k; i++ {
				fr[0] = rxb[i].Frame
				pool.Put(fr)
			}
		})
		if allocs != 0 {
			t.Errorf("Rx+Tx allocate %.1f times per run", allocs)
		}
		peer.recvAll(51)
	}
	if err := v.Reset(); err != nil {
		t.Fatal(err)
	}
	t.Run("after-reset", func(t *testing.T) {
		txPhase(t, 300)
		rxPhase(t, 300)
	})
	closed = true
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Check(); !errors.Is(err, ErrClosed) {
		t.Errorf("Check after Close: %v", err)
	}
	if n := v.Rx(make([]Pkt, 4)); n != 0 {
		t.Errorf("Rx after Close returned %d", n)
	}
	if got := pool.Stats(); got.Free != pool.Frames() {
		t.Errorf("frames not returned after Close: %+v", got)
	}
	drv, err := UnbindVFIO(ours)
	if err != nil || drv != "virtio-pci" {
		t.Fatalf("unbind: %q %v", drv, err)
	}
	openKernelPeer(t, ours) // the kernel interface is back
}

// TestGuestVirtioNetErrors checks typed errors: a non-virtio-net device, a device not
// bound to vfio-pci.
func TestGuestVirtioNetErrors(t *testing.T) {
	vmtest.NeedGuest(t)
	pool, err := NewPool(PoolOptions{Frames: 64, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	devs := guestVirtioNICs(t)
	if _, err := OpenVirtioNet(VirtioNetOptions{PCI: devs[0], Pool: pool}); err == nil {
		t.Fatal("opened a device bound to virtio-pci")
	}
	if _, err := OpenVirtioNet(VirtioNetOptions{PCI: "0000:00:1f.7", Pool: pool}); err == nil || errors.Is(err, os.ErrExist) {
		t.Fatalf("missing device: %v", err)
	}
}

// TestVirtioNetMQVM runs the multiqueue guest test: two NICs with two queue pairs
// each, on multiqueue TAP devices joined by a bridge in a namespace made here, so
// that QEMU spreads their traffic over both queue pairs. dpkit drives both NICs.
func TestVirtioNetMQVM(t *testing.T) {
	vmtest.Need(t)
	ns := nettest.NewNS(t)
	// Nothing but the test's frames crosses the bridge: no IPv6 autoconfiguration.
	ns.MustExec(t, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	br, ta, tb := nettest.Name("br"), nettest.Name("tap"), nettest.Name("tap")
	ns.MustExec(t, "ip", "link", "add", br, "type", "bridge")
	for _, tap := range []string{ta, tb} {
		ns.MustExec(t, "ip", "tuntap", "add", "dev", tap, "mode", "tap", "multi_queue")
		ns.MustExec(t, "ip", "link", "set", tap, "master", br, "up")
	}
	ns.MustExec(t, "ip", "link", "set", br, "up")
	vmtest.Run(t, vmtest.Config{Run: "^TestGuestVirtioNetMQ$", Netns: ns.Name, MemoryMB: 768, Timeout: 150 * time.Second,
		NICs: []vmtest.NIC{{Tap: ta, Queues: 2, Packed: true}, {Tap: tb, Queues: 2, Packed: true}}})
}

// mqFrame is an Ethernet/IPv4/UDP frame of flow (the UDP source port) carrying seq,
// so that the device's flow hash spreads frames over the queues.
func mqFrame(dst, src net.HardwareAddr, flow, seq int) []byte {
	b := make([]byte, 14+20+8+8+(seq%200))
	copy(b, dst)
	copy(b[6:], src)
	b[12], b[13] = 0x08, 0x00
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	ip[2], ip[3] = byte((len(b)-14)>>8), byte(len(b)-14)
	copy(ip[12:], []byte{10, 9, 0, 1})
	copy(ip[16:], []byte{10, 9, 0, 2})
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(ip[i])<<8 | uint32(ip[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	ip[10], ip[11] = byte(^sum>>8), byte(^sum)
	u := ip[20:]
	port := 20000 + flow
	u[0], u[1], u[2], u[3] = byte(port>>8), byte(port), 0x1f, 0x90
	u[4], u[5] = byte((len(b)-34)>>8), byte(len(b)-34)
	p := u[8:]
	copy(p, "DPKQ")
	p[4], p[5], p[6], p[7] = byte(seq>>24), byte(seq>>16), byte(seq>>8), byte(seq)
	for i := 8; i < len(p); i++ {
		p[i] = byte(i + seq)
	}
	return b
}

func TestGuestVirtioNetMQ(t *testing.T) {
	vmtest.NeedGuest(t)
	devs := guestVirtioNICs(t)
	for _, packed := range []bool{false, true} {
		t.Run(fmt.Sprintf("packed=%v", packed), func(t *testing.T) { testVirtioNetMQ(t, devs, packed) })
	}
}

func testVirtioNetMQ(t *testing.T, devs []string, packed bool) {
	pool, err := NewPool(PoolOptions{Frames: 2048, Huge: HugeNever, Name: "virtio-mq"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	}()
	var nics [2]*VirtioNet
	for i, bdf := range devs {
		if err := BindVFIO(bdf); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if drv, err := UnbindVFIO(bdf); err != nil || drv != "virtio-pci" {
				t.Errorf("unbind %s: %q %v", bdf, drv, err)
			}
		}()
		// The device has two queue pairs: asking for three is a typed error.
		if _, err := OpenVirtioNet(VirtioNetOptions{PCI: bdf, Pool: pool, Packed: packed, QueuePairs: 3}); !errors.Is(err, ErrFeatures) {
			t.Fatalf("3 queue pairs on a 2-pair device: %v", err)
		}
		v, err := OpenVirtioNet(VirtioNetOptions{PCI: bdf, Pool: pool, Packed: packed, QueueSize: 128, QueuePairs: 2, Interrupts: true})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := v.Close(); err != nil {
				t.Error(err)
			}
		}()
		if f := v.Features(); f&virtioNetFMQ == 0 || f&virtioNetFCtrlVQ == 0 || (f&virtioFRingPacked != 0) != packed || v.QueuePairs() != 2 {
			t.Fatalf("features %#x, %d queue pairs", f, v.QueuePairs())
		}
		nics[i] = v
	}
	// exchange sends n frames on each of the sender's queue pairs and checks that the
	// receiver gets every one exactly once, over both of its RX queues.
	exchange := func(t *testing.T, from, to *VirtioNet, n int) {
		src, dst := from.MAC(), to.MAC()
		pairs := from.QueuePairs()
		seen := make([]bool, pairs*n)
		perQueue := make([]int, to.QueuePairs())
		rcv, sent := 0, 0
		pkts := make([]Pkt, 32)
		var fr [32]Frame
		recv := func(want int) {
			for deadline := time.Now().Add(10 * time.Second); rcv < want && time.Now().Before(deadline); {
				for qi := range to.QueuePairs() {
					k := to.Queue(qi).Rx(pkts)
					for _, p := range pkts[:k] {
						d := pool.Data(&p)
						if len(d) >= 50 && string(d[42:46]) == "DPKQ" {
							seq := int(d[46])<<24 | int(d[47])<<16 | int(d[48])<<8 | int(d[49])
							if seq < 0 || seq >= len(seen) || seen[seq] {
								t.Fatalf("frame %d unexpected or duplicated", seq)
							}
							if want := mqFrame(net.HardwareAddr(dst[:]), net.HardwareAddr(src[:]), seq%64, seq); !bytes.Equal(d, want) {
								t.Fatalf("frame %d differs", seq)
							}
							seen[seq] = true
							rcv++
							perQueue[qi]++
						}
						fr[0] = p.Frame
						pool.Put(fr[:1])
					}
				}
			}
		}
		for base := 0; base < n; base += 32 {
			for qi := range pairs {
				k := min(32, n-base)
				if got := pool.Get(fr[:k]); got != k {
					t.Fatal("pool empty")
				}
				for i := range k {
					seq := qi*n + base + i
					f := mqFrame(net.HardwareAddr(dst[:]), net.HardwareAddr(src[:]), seq%64, seq)
					pkts[i] = Pkt{Frame: fr[i], Off: uint16(pool.Headroom()), Len: uint16(len(f))}
					copy(pool.Data(&pkts[i]), f)
				}
				done := 0
				for stuck := time.Now().Add(5 * time.Second); done < k; {
					done += from.Queue(qi).Tx(pkts[done:k])
					if time.Now().After(stuck) {
						pool.Put(fr[done:k])
						t.Fatalf("queue %d Tx stuck: %v", qi, from.Err())
					}
				}
				sent += k
				recv(sent) // TCG is slow: drain before the next round
			}
		}
		recv(pairs * n)
		if rcv != pairs*n {
			t.Fatalf("received %d of %d frames (per RX queue %v; sender %+v, receiver %+v, errs %v %v)", rcv, pairs*n, perQueue, from.Stats(), to.Stats(), from.Err(), to.Err())
		}
		for qi, c := range perQueue {
			if c == 0 {
				t.Errorf("RX queue %d got none of %d frames of 64 flows: no spreading (%v)", qi, rcv, perQueue)
			}
		}
		for qi := range pairs {
			if st := from.Queue(qi).Stats(); st.TxPackets < uint64(n) {
				t.Errorf("TX queue %d sent %d, want ≥ %d", qi, st.TxPackets, n)
			}
		}
		t.Logf("%d frames from 2 TX queues arrived on RX queues as %v", rcv, perQueue)
	}
	// RX interrupt mode: an idle queue's WaitRx times out; traffic wakes both queues.
	t.Run("interrupts", func(t *testing.T) {
		a, b := nics[0], nics[1]
		for qi := range b.QueuePairs() {
			if ok, err := b.Queue(qi).WaitRx(50 * time.Millisecond); ok || err != nil {
				t.Fatalf("idle queue %d: WaitRx %v %v", qi, ok, err)
			}
		}
		var fr [64]Frame
		if pool.Get(fr[:]) != len(fr) {
			t.Fatal("pool empty")
		}
		pkts := make([]Pkt, len(fr))
		am, bm := a.MAC(), b.MAC()
		for i := range pkts {
			f := mqFrame(net.HardwareAddr(bm[:]), net.HardwareAddr(am[:]), i, i) // 64 flows
			pkts[i] = Pkt{Frame: fr[i], Off: uint16(pool.Headroom()), Len: uint16(len(f))}
			copy(pool.Data(&pkts[i]), f)
		}
		for k := 0; k < len(pkts); k += a.Tx(pkts[k:]) {
		}
		got := 0
		for qi := range b.QueuePairs() {
			if ok, err := b.Queue(qi).WaitRx(5 * time.Second); !ok || err != nil {
				t.Fatalf("queue %d not woken by traffic: %v %v", qi, ok, err)
			}
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
				n := b.Queue(qi).Rx(pkts)
				for _, p := range pkts[:n] {
					pool.Put([]Frame{p.Frame})
				}
				got += n
				if n == 0 {
					break
				}
			}
		}
		for deadline := time.Now().Add(2 * time.Second); got < len(fr) && time.Now().Before(deadline); {
			for qi := range b.QueuePairs() {
				n := b.Queue(qi).Rx(pkts)
				for _, p := range pkts[:n] {
					pool.Put([]Frame{p.Frame})
				}
				got += n
			}
		}
		if got != len(fr) {
			t.Fatalf("received %d of %d", got, len(fr))
		}
	})
	t.Run("a-to-b", func(t *testing.T) { exchange(t, nics[0], nics[1], 300) })
	t.Run("b-to-a", func(t *testing.T) { exchange(t, nics[1], nics[0], 300) })
	if t.Failed() {
		return
	}
	for _, v := range nics {
		if err := v.Check(); err != nil {
			t.Fatalf("Check: %v", err)
		}
		if err := v.Reset(); err != nil { // re-runs the handshake and the MQ command
			t.Fatal(err)
		}
	}
	t.Run("after-reset", func(t *testing.T) { exchange(t, nics[0], nics[1], 100) })
}

// testVirtioNetJumbo sends frames of up to 9000 bytes both ways: the kernel's to dpkit
// arrive spread over mergeable buffers and must come out of Rx as chains; dpkit's go
// to Tx as chains of frames and must reach the kernel whole.
func testVirtioNetJumbo(t *testing.T, v *VirtioNet, pool *Pool, peer *kernelPeer, ourMAC net.HardwareAddr) {
	setMTU(t, peer.ifi.Name, 9000)
	defer setMTU(t, peer.ifi.Name, 1500)
	before := pool.Stats().Free
	sizes := []int{1600, 2100, 4000, 6000, 9014, 60, 8191, 3000}
	room := pool.FrameSize() - pool.Headroom()
	// kernel → dpkit
	pkts := make([]Pkt, 32)
	var got [][]byte
	chains := 0
	for i, n := range sizes {
		peer.send(t, testFrame(ourMAC, peer.ifi.HardwareAddr, i, n))
	}
	for deadline := time.Now().Add(20 * time.Second); len(got) < len(sizes) && time.Now().Before(deadline); {
		k := v.Rx(pkts)
		for i := 0; i < k; {
			j := i
			var b []byte
			for {
				b = append(b, pool.Data(&pkts[j])...)
				if pkts[j].Flags&PktMore == 0 {
					break
				}
				j++
			}
			if j > i {
				chains++
			}
			for _, p := range pkts[i : j+1] {
				pool.Put([]Frame{p.Frame})
			}
			if len(b) >= 14 && b[12] == testEtherType>>8 && b[13] == testEtherType&0xff {
				got = append(got, b)
			}
			i = j + 1
		}
	}
	if len(got) != len(sizes) {
		t.Fatalf("dpkit received %d of %d jumbo frames (stats %+v)", len(got), len(sizes), v.Stats())
	}
	for i, g := range got {
		if want := testFrame(ourMAC, peer.ifi.HardwareAddr, i, sizes[i]); !bytes.Equal(g, want) {
			t.Fatalf("rx jumbo frame %d: %d bytes, want %d", i, len(g), len(want))
		}
	}
	if chains == 0 {
		t.Fatal("no frame came as a chain")
	}
	// dpkit → kernel: each frame as a chain of frames of at most room bytes.
	for i, n := range sizes {
		f := testFrame(peer.ifi.HardwareAddr, ourMAC, i, n)
		var segs []Pkt
		for off := 0; off < len(f); off += room {
			fr := make([]Frame, 1)
			if pool.Get(fr) != 1 {
				t.Fatal("pool empty")
			}
			p := Pkt{Frame: fr[0], Off: uint16(pool.Headroom()), Len: uint16(min(room, len(f)-off)), Flags: PktMore}
			copy(pool.Data(&p), f[off:])
			segs = append(segs, p)
		}
		segs[len(segs)-1].Flags = 0
		for stuck := time.Now().Add(5 * time.Second); ; {
			if k := v.Tx(segs); k == len(segs) {
				break
			} else if k != 0 {
				t.Fatalf("Tx took %d of a %d-frame chain", k, len(segs))
			}
			if time.Now().After(stuck) {
				t.Fatalf("Tx of a %d-frame chain stuck: %v", len(segs), v.Err())
			}
		}
	}
	rcv := peer.recvAll(len(sizes))
	if len(rcv) != len(sizes) {
		t.Fatalf("kernel received %d of %d jumbo frames", len(rcv), len(sizes))
	}
	for i, g := range rcv {
		if want := testFrame(peer.ifi.HardwareAddr, ourMAC, i, sizes[i]); !bytes.Equal(g, want) {
			t.Fatalf("tx jumbo frame %d: %d bytes, want %d", i, len(g), len(want))
		}
	}
	// Every frame of the sent chains is back once the device is done.
	for deadline := time.Now().Add(5 * time.Second); pool.Stats().Free < before; time.Sleep(10 * time.Millisecond) {
		v.Tx(nil)
		if time.Now().After(deadline) {
			t.Fatalf("%d frames free, %d before", pool.Stats().Free, before)
		}
	}
}

func setMTU(t *testing.T, name string, mtu int) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(s)
	req, err := unix.NewIfreq(name)
	if err != nil {
		t.Fatal(err)
	}
	req.SetUint32(uint32(mtu))
	if err := unix.IoctlIfreq(s, unix.SIOCSIFMTU, req); err != nil {
		t.Fatalf("MTU %d on %s: %v", mtu, name, err)
	}
}
