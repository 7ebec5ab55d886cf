package icount_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/icount"
	"github.com/dpkit/dpkit/internal/vfio"
	"github.com/dpkit/dpkit/internal/vmtest"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
	"github.com/dpkit/dpkit/xsk"
)

// The host side boots a one-vCPU TCG guest under -icount shift=0 with two virtio-net
// NICs on one QEMU hub, and runs TestGuestInstructions there.
func bootGuest(tb testing.TB) vmtest.Result {
	return vmtest.Run(tb, vmtest.Config{Run: "^TestGuestInstructions$", MemoryMB: 1024, Timeout: 4 * time.Minute,
		NICs:     []vmtest.NIC{{Hub: 0, Packed: true}, {Hub: 0, Packed: true}},
		QEMUArgs: []string{"-icount", "shift=0"}})
}

// resultLine is what the guest prints per measurement: port, ring layout,
// direction, median instructions per packet over full bursts, bursts measured.
var resultLine = regexp.MustCompile(`ICOUNT (\S+) (\S+) (rx|tx) ([0-9.]+) insn/pkt ([0-9]+) bursts`)

type figure struct {
	name   string
	perPkt float64
}

func parse(out string) []figure {
	var fs []figure
	for _, m := range resultLine.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[4], 64)
		fs = append(fs, figure{m[1] + "/" + m[2] + "/" + m[3], v})
	}
	return fs
}

var wantFigures = []string{
	"virtio-vfio/split/rx", "virtio-vfio/split/tx", "virtio-vfio/packed/rx", "virtio-vfio/packed/tx",
	"vhost/split/rx", "vhost/split/tx", "vhost/packed/rx", "vhost/packed/tx",
	"xsk/copy/rx", "xsk/copy/tx",
}

// TestInstructionsVM checks that the guest measures every port: the counter is
// calibrated, each figure is there and plausible (a burst of 32 costs something,
// and no port needs 100k instructions a packet).
func TestInstructionsVM(t *testing.T) {
	vmtest.Need(t)
	if !icount.Supported {
		t.Skip("amd64 only")
	}
	fs := parse(bootGuest(t).Output)
	for _, w := range wantFigures {
		i := slices.IndexFunc(fs, func(f figure) bool { return f.name == w })
		if i < 0 {
			t.Errorf("no figure for %s", w)
			continue
		}
		if v := fs[i].perPkt; v < 5 || v > 100000 {
			t.Errorf("%s: %.1f instructions per packet", w, v)
		}
	}
}

// BenchmarkInstructionsVM reports instructions per packet of RX and TX bursts of 32
// for the VFIO virtio-net driver, the vhost-user back-end and AF_XDP (copy mode on a
// veth), all measured in the same guest. It boots the guest once, whatever b.N; run
// it with -benchtime 1x. ns/op is not a speed here and is reported as 0.
func BenchmarkInstructionsVM(b *testing.B) {
	vmtest.Need(b)
	var once sync.Once
	var fs []figure
	for _, w := range wantFigures {
		b.Run(w, func(b *testing.B) {
			once.Do(func() { fs = parse(bootGuest(b).Output) })
			i := slices.IndexFunc(fs, func(f figure) bool { return f.name == w })
			if i < 0 {
				b.Fatalf("no figure for %s", w)
			}
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(fs[i].perPkt, "insn/pkt")
		})
	}
}

const burst = 32

// measure runs rounds of prep (not counted), call (counted) and after (not counted)
// and returns the median instructions per packet over the calls that moved a whole
// burst, and how many did. The median keeps out the rare call that a timer interrupt
// or another thread's time slice lands in.
func measure(t *testing.T, rounds int, prep func(), call func() int, after func()) (float64, int) {
	t.Helper()
	var per []float64
	for r := 0; r < rounds; r++ {
		prep()
		t0 := icount.Counter()
		n := call()
		d := icount.Counter() - t0
		after()
		if r >= 8 && n == burst { // the first rounds warm caches and rings
			per = append(per, float64(d)/burst)
		}
	}
	if len(per) < rounds/2 {
		t.Fatalf("only %d of %d rounds moved a whole burst", len(per), rounds)
	}
	slices.Sort(per)
	return per[len(per)/2], len(per)
}

func report(t *testing.T, port, layout, dir string, v float64, n int) {
	t.Logf("ICOUNT %s %s %s %.1f insn/pkt %d bursts", port, layout, dir, v, n)
}

// frame64 writes a 60-byte Ethernet/IPv4/UDP frame from src to dst into p's data.
func frame64(pool *pmd.Pool, p *pmd.Pkt, dst, src [6]byte, seq int) {
	p.Off, p.Len = uint16(pool.Headroom()), 60
	d := pool.Data(p)
	clear(d)
	copy(d, dst[:])
	copy(d[6:], src[:])
	d[12], d[13] = 0x08, 0x00
	d[14], d[22], d[23] = 0x45, 64, 17
	d[16], d[17] = 0, 46
	copy(d[26:], []byte{10, 0, 0, 1, 10, 0, 0, 2})
	d[34], d[35], d[36], d[37] = byte(seq>>8), byte(seq), 0x1f, 0x90
	d[38], d[39] = 0, 26
}

func TestGuestInstructions(t *testing.T) {
	vmtest.NeedGuest(t)
	per, err := icount.Calibrate()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counter ticks per instruction: %.4f", per)
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no collection inside a measured call
	for _, packed := range []bool{false, true} {
		layout := map[bool]string{false: "split", true: "packed"}[packed]
		t.Run("virtio-"+layout, func(t *testing.T) { guestVirtio(t, packed, layout) })
		t.Run("vhost-"+layout, func(t *testing.T) { guestVhost(t, packed, layout) })
	}
	t.Run("xsk", guestXSK)
}

// guestVirtio: NIC 0 driven by the VFIO driver is measured; NIC 1, on the same hub
// and also driven by dpkit, sends to it and drains what it sends.
func guestVirtio(t *testing.T, packed bool, layout string) {
	devs, err := vfio.Find(0x1af4, 0x1041)
	if err != nil || len(devs) != 2 {
		t.Fatalf("virtio-net devices %v: %v", devs, err)
	}
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var nics [2]*pmd.VirtioNet
	for i, bdf := range devs {
		if err := pmd.BindVFIO(bdf); err != nil {
			t.Fatal(err)
		}
		defer pmd.UnbindVFIO(bdf)
		v, err := pmd.OpenVirtioNet(pmd.VirtioNetOptions{PCI: bdf, Pool: pool, Packed: packed, QueueSize: 256})
		if err != nil {
			t.Fatal(err)
		}
		defer v.Close()
		nics[i] = v
	}
	a, b := nics[0], nics[1]
	ma, mb := a.MAC(), b.MAC()
	pkts := make([]pmd.Pkt, burst)
	fr := make([]pmd.Frame, burst)
	fill := func(dst, src [6]byte) {
		if pool.Get(fr) != burst {
			t.Fatal("pool empty")
		}
		for i := range pkts {
			pkts[i].Frame = fr[i]
			frame64(pool, &pkts[i], dst, src, i)
		}
	}
	drain := func(p pmd.Port) {
		for idle := 0; idle < 3; {
			n := p.Rx(pkts)
			if n == 0 {
				idle++
				time.Sleep(time.Millisecond)
			}
			for i := range pkts[:n] {
				fr[i] = pkts[i].Frame
			}
			pool.Put(fr[:n])
		}
	}
	settle := func() { time.Sleep(3 * time.Millisecond) } // QEMU moves the frames meanwhile
	// RX: NIC 1 sends a burst, which QEMU delivers into NIC 0's ring; then one Rx.
	got := 0
	v, n := measure(t, 200, func() {
		fill(ma, mb)
		send(t, b, pkts)
		settle()
	}, func() int { got = a.Rx(pkts); return got }, func() {
		free(pool, pkts[:got])
		drain(a)
	})
	report(t, "virtio-vfio", layout, "rx", v, n)
	// TX: one Tx of a burst (reclaiming the previous one's frames); NIC 1 drains.
	v, n = measure(t, 200, func() { fill(mb, ma); settle() }, func() int { return sendOnce(pool, a, pkts) }, func() { settle(); drain(b) })
	report(t, "virtio-vfio", layout, "tx", v, n)
	if a.Err() != nil || b.Err() != nil {
		t.Fatal(a.Err(), b.Err())
	}
}

func free(pool *pmd.Pool, pkts []pmd.Pkt) {
	var f [burst]pmd.Frame
	for i := range pkts {
		f[i] = pkts[i].Frame
	}
	pool.Put(f[:len(pkts)])
}

// send transmits every packet of pkts through p (not measured).
func send(t *testing.T, p pmd.Port, pkts []pmd.Pkt) {
	deadline := time.Now().Add(5 * time.Second)
	for k := 0; k < len(pkts); k += p.Tx(pkts[k:]) {
		if time.Now().After(deadline) {
			t.Fatal("Tx stuck")
		}
	}
}

// sendOnce is one measured Tx; what it did not take goes back to the pool.
func sendOnce(pool *pmd.Pool, p pmd.Port, pkts []pmd.Pkt) int {
	n := p.Tx(pkts)
	free(pool, pkts[n:])
	return n
}

// guestVhost: a dpkit vhost-user back-end and a dpkit front-end in this process; the
// back-end's port is measured. Its Rx copies what the front-end sent (guest to host),
// its Tx copies into the front-end's receive buffers (host to guest).
func guestVhost(t *testing.T, packed bool, layout string) {
	bpool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer bpool.Close()
	fpool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever, Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fpool.Close()
	var dis uint64
	if !packed {
		dis = vhost.FeatureRingPacked
	}
	sock := filepath.Join(t.TempDir(), "vh.sock")
	be, err := vhost.NewBackend(vhost.Options{Path: sock, Pool: bpool, DisableFeatures: dis})
	if err != nil {
		t.Fatal(err)
	}
	defer be.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go be.Serve(ctx)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) { // Serve makes the socket
		if _, err := os.Stat(sock); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	fe, err := vhost.Dial(ctx, vhost.FrontendOptions{Path: sock, Pool: fpool, QueueSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer fe.Close()
	for deadline := time.Now().Add(10 * time.Second); !be.Attached(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("front-end never attached")
		}
	}
	if (fe.Features()&vhost.FeatureRingPacked != 0) != packed {
		t.Fatalf("features %#x", fe.Features())
	}
	bp, fp := be.Port(0), fe.Port(0)
	pkts := make([]pmd.Pkt, burst)
	fr := make([]pmd.Frame, burst)
	fill := func(pool *pmd.Pool) {
		if pool.Get(fr) != burst {
			t.Fatal("pool empty")
		}
		for i := range pkts {
			pkts[i].Frame = fr[i]
			frame64(pool, &pkts[i], [6]byte{2, 0, 0, 0, 0, 2}, [6]byte{2, 0, 0, 0, 0, 1}, i)
		}
	}
	got := 0
	v, n := measure(t, 200, func() { fill(fpool); send(t, fp, pkts) }, func() int { got = bp.Rx(pkts); return got },
		func() { free(bpool, pkts[:got]) })
	report(t, "vhost", layout, "rx", v, n)
	v, n = measure(t, 200, func() { fill(bpool) }, func() int { return sendOnce(bpool, bp, pkts) }, func() {
		for k := fp.Rx(pkts); k > 0; k = fp.Rx(pkts) {
			free(fpool, pkts[:k])
		}
	})
	report(t, "vhost", layout, "tx", v, n)
}

// guestXSK: an AF_XDP port (copy mode: veth has no zero-copy) on one end of a veth
// pair; a packet socket on the other end sends to it. Its Rx counts only what the
// socket does (the kernel's receive work runs in the sender's system call); its Tx
// includes the sendto that makes the kernel transmit, and the veth peer's receive,
// which runs inside that call.
func guestXSK(t *testing.T) {
	la := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "icx0"}, PeerName: "icx1"}
	if err := netlink.LinkAdd(la); err != nil {
		t.Fatal(err)
	}
	defer netlink.LinkDel(la)
	for _, name := range []string{"icx0", "icx1"} {
		l, err := netlink.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	p, err := xsk.Open("icx1", 0, xsk.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pool := p.UMEMPool()
	peer, _ := net.InterfaceByName("icx0")
	self, _ := net.InterfaceByName("icx1")
	var dst, src [6]byte
	copy(dst[:], self.HardwareAddr)
	copy(src[:], peer.HardwareAddr)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // sends only
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: peer.Index}); err != nil {
		t.Fatal(err)
	}
	pkts := make([]pmd.Pkt, burst)
	fr := make([]pmd.Frame, burst)
	raw := make([]byte, 60)
	got := 0
	v, n := measure(t, 200, func() {
		if pool.Get(fr[:1]) != 1 {
			t.Fatal("pool empty")
		}
		pk := pmd.Pkt{Frame: fr[0]}
		frame64(pool, &pk, dst, src, 0)
		copy(raw, pool.Data(&pk))
		pool.Put(fr[:1])
		for i := 0; i < burst; i++ {
			raw[35] = byte(i)
			if err := unix.Sendto(fd, raw, 0, nil); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Millisecond)
	}, func() int { got = p.Rx(pkts); return got }, func() { free(pool, pkts[:got]) })
	report(t, "xsk", "copy", "rx", v, n)
	v, n = measure(t, 200, func() {
		if pool.Get(fr) != burst {
			t.Fatal("UMEM pool empty")
		}
		for i := range pkts {
			pkts[i].Frame = fr[i]
			frame64(pool, &pkts[i], src, dst, i)
		}
		time.Sleep(time.Millisecond)
	}, func() int { return sendOnce(pool, p, pkts) }, func() {})
	report(t, "xsk", "copy", "tx", v, n)
	if st := p.Stats(); st.TxPackets == 0 || st.RxPackets == 0 {
		t.Fatalf("stats %+v", st)
	}
}
