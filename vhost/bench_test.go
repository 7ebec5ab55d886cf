package vhost

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/affinity"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// BenchmarkTestpmd measures packets per second through a vhost-user back-end with
// DPDK testpmd's virtio-user as the front-end, for dpkit's back-end and for DPDK's own
// net_vhost (run by a second testpmd) in the same run. One op is one packet; Mpps is
// reported as a metric. guest→host: testpmd txonly floods the back-end; host→guest:
// the back-end transmits to testpmd rxonly. Both back-ends see the same virtio-user
// configurations: split and packed rings, with and without in_order (virtio-user's
// default is in_order=1), mergeable buffers on.
//
// Each sub-benchmark starts its peers afresh, so run it with a fixed count:
//
//	go test -run '^$' -bench Testpmd -benchtime 10000000x ./vhost
//
// Both testpmds and dpkit's pool live on 2 MiB hugepages when the machine has free
// ones, as DPDK deployments do (testpmd.Options.Huge says why it matters). On a
// shared machine compare several interleaved runs, never one.
//
// CPUs: the back-end (dpkit's Go thread or net_vhost's forwarding lcore) runs on CPU
// 0, the virtio-user forwarding lcore on CPU 1.
func BenchmarkTestpmd(b *testing.B) {
	needTestpmd(b)
	for _, dir := range []string{"g2h", "h2g"} {
		for _, ring := range []string{"split", "packed"} {
			for _, inOrder := range []int{0, 1} {
				for _, size := range []int{64, 1518} {
					for _, peer := range []string{"dpkit", "dpdk-net_vhost"} {
						name := fmt.Sprintf("dir=%s/ring=%s/in_order=%d/size=%d/backend=%s", dir, ring, inOrder, size, peer)
						b.Run(name, func(b *testing.B) {
							packed := 0
							if ring == "packed" {
								packed = 1
							}
							vdev := func(path string) string { return virtioUser(path, packed, inOrder) }
							if peer == "dpkit" {
								benchDpkit(b, dir == "g2h", vdev, size)
							} else {
								benchNetVhost(b, dir == "g2h", vdev, size)
							}
						})
					}
				}
			}
		}
	}
}

func virtioUser(path string, packed, inOrder int) string {
	return fmt.Sprintf("net_virtio_user0,path=%s,queues=1,packed_vq=%d,mrg_rxbuf=1,in_order=%d", path, packed, inOrder)
}

func pinCPU0(b *testing.B) func() {
	runtime.LockOSThread()
	var m affinity.Mask
	m[0] = 1
	if err := affinity.SetThread(&m); err != nil {
		b.Fatal(err)
	}
	return func() {
		var all affinity.Mask
		all[0] = ^uint64(0)
		affinity.SetThread(&all)
		runtime.UnlockOSThread()
	}
}

func benchDpkit(b *testing.B, g2h bool, vdev func(path string) string, size int) {
	be, path := testBackendHuge(b, pmd.HugeAuto, nil)
	if !be.opts.Pool.Huge() {
		b.Log("dpkit's pool on 4 KiB pages: no free hugepages")
	}
	tp := startTestpmdMem(b, true, "0,1", 0, vdev(path))
	waitFor(b, "queues", be.ready)
	tp.Run(fmt.Sprintf("set txpkts %d", size))
	if g2h {
		tp.Run("set fwd txonly")
	} else {
		tp.Run("set fwd rxonly")
	}
	rtt0 := lineRTT(b)
	tp.Run("start")
	port := be.Port(0)
	// One goroutine drives the port, so it shares its cache with the port, as a
	// pmd worker (or a DPDK lcore) does.
	cache := be.opts.Pool.NewCache(0)
	defer cache.Flush()
	if err := pmd.ShareCache(cache, port); err != nil {
		b.Fatal(err)
	}
	var pkts [pmd.DefaultBurst]pmd.Pkt
	defer pinCPU0(b)()
	// h2g does what testpmd's txonly does on net_vhost: a burst of fresh frames
	// with the Ethernet, IPv4 and UDP headers written, sent, and the packets the
	// guest had no room for freed (txonly counts only what was sent, as we do).
	hdr := udpHeaders(size)
	pool := be.opts.Pool
	// step moves one burst and returns how many packets it moved.
	step := func() int {
		if g2h {
			n := port.Rx(pkts[:])
			cache.Free(pkts[:n])
			return n
		}
		m := cache.Alloc(pkts[:])
		for i := range pkts[:m] {
			pkts[i].Len = uint16(size)
			copy(pool.Data(&pkts[i]), hdr[:])
		}
		n := port.Tx(pkts[:m])
		cache.Free(pkts[n:m])
		return n
	}
	// Count the steady flow only, as benchNetVhost does: wait for testpmd's first
	// packets, then let the flow run 200 ms. (Without this, testpmd's start-up
	// counted as idle time and cut short runs to a fraction of the rate.)
	t0 := time.Now()
	for step() == 0 {
		if time.Since(t0) > 10*time.Second {
			b.Fatal("no traffic from testpmd")
		}
	}
	for t1 := time.Now(); time.Since(t1) < 200*time.Millisecond; {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	done, calls := 0, 0
	for done < b.N {
		done += step()
		calls++
	}
	el := time.Since(start)
	b.StopTimer()
	tp.Run("stop")
	b.ReportMetric(float64(done)/el.Seconds()/1e6, "Mpps")
	// How full the bursts were: 32 means dpkit was the bottleneck, a few means it
	// waited on the guest.
	b.ReportMetric(float64(done)/float64(calls), "pkts/call")
	reportRTT(b, rtt0, lineRTT(b))
}

func benchNetVhost(b *testing.B, g2h bool, vdev func(path string) string, size int) {
	path := shortTempDir(b) + "/nv.sock"
	// net_vhost forwards on lcore 0 (main 1); virtio-user forwards on lcore 1.
	host := startTestpmdMem(b, true, "0,1", 1, fmt.Sprintf("net_vhost0,iface=%s,client=0,queues=1", path))
	guest := startTestpmdMem(b, true, "0,1", 0, vdev(path))
	guest.Run(fmt.Sprintf("set txpkts %d", size))
	host.Run(fmt.Sprintf("set txpkts %d", size))
	if g2h {
		host.Run("set fwd rxonly")
		guest.Run("set fwd txonly")
	} else {
		host.Run("set fwd txonly")
		guest.Run("set fwd rxonly")
	}
	rtt0 := lineRTT(b)
	guest.Run("start")
	host.Run("start")
	count := func() uint64 {
		s := host.Stats(0)
		if g2h {
			return s.RxPkts
		}
		return s.TxPkts
	}
	// Wait for the flow to start and settle, then count b.N packets at the vhost
	// side.
	for t0 := time.Now(); count() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Since(t0) > 10*time.Second {
			b.Fatal("no traffic through net_vhost")
		}
	}
	time.Sleep(200 * time.Millisecond)
	b.ReportAllocs()
	b.ResetTimer()
	c0, t0 := count(), time.Now()
	c := c0
	for c-c0 < uint64(b.N) {
		// Each look is a command to the host testpmd, whose main lcore shares a CPU
		// with the guest's forwarding lcore: look seldom.
		time.Sleep(200 * time.Millisecond)
		c = count()
	}
	el := time.Since(t0)
	b.StopTimer()
	guest.Run("stop")
	host.Run("stop")
	b.ReportMetric(float64(c-c0)/el.Seconds()/1e6, "Mpps")
	reportRTT(b, rtt0, lineRTT(b))
}

// lineRTT measures how long a cache line takes to go from CPU 0 to CPU 1 and back,
// in ns, with the forwarding lcores idle. Every packet crosses between the two CPUs
// (the rings, the guest's buffers), so this bounds both back-ends alike. On this
// kind of shared virtual machine it is not a constant: the hypervisor moves the
// vCPUs, and the round trip was 60-130 ns at some times and 530-600 ns at others
// (likely vCPUs on cores that share an L3, or not), which moved both back-ends' rates by 2-3×.
func lineRTT(b *testing.B) float64 {
	type line struct {
		v atomic.Uint64
		_ [56]byte
	}
	var ping, pong line
	const n = 20000
	var el time.Duration
	var wg sync.WaitGroup
	// Each side on a goroutine of its own, locked to a thread pinned to its CPU;
	// the threads exit with them, pinned.
	side := func(cpu int, f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			var m affinity.Mask
			m[0] = 1 << cpu
			if err := affinity.SetThread(&m); err != nil {
				b.Error(err)
				ping.v.Store(n) // release the other side
				pong.v.Store(n)
				return
			}
			f()
		}()
	}
	side(1, func() {
		for i := uint64(1); i <= n; i++ {
			for ping.v.Load() < i {
			}
			pong.v.Store(i)
		}
	})
	side(0, func() {
		t := time.Now()
		for i := uint64(1); i <= n; i++ {
			ping.v.Store(i)
			for pong.v.Load() < i {
			}
		}
		el = time.Since(t)
	})
	wg.Wait()
	return float64(el.Nanoseconds()) / n
}

// reportRTT reports lineRTT before and after the measurement: compare back-ends
// between runs whose round trips agree.
func reportRTT(b *testing.B, before, after float64) {
	b.ReportMetric(before, "rtt-before-ns")
	b.ReportMetric(after, "rtt-after-ns")
}

// udpHeaders returns the Ethernet, IPv4 and UDP headers of a size-byte frame, as
// testpmd's txonly writes them.
func udpHeaders(size int) [42]byte {
	var h [42]byte
	copy(h[0:], []byte{2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0})
	ip := h[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(size-14))
	copy(ip[12:], []byte{198, 18, 0, 1, 198, 18, 0, 2})
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
	u := h[34:42]
	binary.BigEndian.PutUint16(u[0:], 9)
	binary.BigEndian.PutUint16(u[2:], 9)
	binary.BigEndian.PutUint16(u[4:], uint16(size-34))
	return h
}

// BenchmarkPortLoop measures the back-end's datapath alone, on one core: a driver
// (vring's, in this process) makes 32 buffers of 64 bytes available, the port moves
// them (Rx: from the guest's transmit queue into frames; Tx: frames into the guest's
// receive queue), the driver collects them. No cache line crosses cores, so unlike
// BenchmarkTestpmd the figure does not depend on where the hypervisor put the vCPUs;
// it includes the driver's share, the same for every back-end change.
func BenchmarkPortLoop(b *testing.B) {
	for _, ring := range []string{"split", "packed"} {
		for _, io := range []int{0, 1} {
			for _, dir := range []string{"rx", "tx"} {
				b.Run(fmt.Sprintf("ring=%s/in_order=%d/dir=%s", ring, io, dir), func(b *testing.B) {
					feat := uint64(FeatureVersion1 | FeatureMrgRxbuf)
					if ring == "packed" {
						feat |= FeatureRingPacked
					}
					if io == 1 {
						feat |= FeatureInOrder
					}
					benchPortLoop(b, feat, dir == "rx")
				})
			}
		}
	}
}

func benchPortLoop(b *testing.B, feat uint64, rx bool) {
	be, path := testBackend(b, nil)
	f := newFakeFront(b, path)
	f.negotiate(feat)
	const qsize, burst, size = 256, 32, 64
	f.setupQueue(0, qsize)
	f.setupQueue(1, qsize)
	port := be.Port(0)
	cache := be.opts.Pool.NewCache(0)
	defer cache.Flush()
	if err := pmd.ShareCache(cache, port); err != nil {
		b.Fatal(err)
	}
	q := 0 // the guest's receive queue
	bufLen := uint32(2048)
	if rx {
		q, bufLen = 1, 12+size
	}
	// One buffer per ring slot, reused in ring order.
	var segs [qsize]vring.Seg
	for i := range segs {
		g, h := f.alloc(int(bufLen))
		clear(h)
		segs[i] = vring.Seg{Addr: g, Len: bufLen, Write: !rx}
	}
	hdr := udpHeaders(size)
	var pkts [burst]pmd.Pkt
	var used [burst]vring.Used
	// The driver polls, as DPDK's virtio PMD does: no used-buffer notifications.
	sd, pd := f.split[q], f.pk[q]
	if sd != nil {
		sd.DisableInterrupts()
	} else {
		pd.DisableInterrupts()
	}
	next := 0
	step := func() {
		for k := 0; k < burst; k++ {
			var err error
			if sd != nil {
				_, err = sd.Add(segs[next : next+1])
			} else {
				_, err = pd.Add(segs[next : next+1])
			}
			if err != nil {
				b.Fatal(err)
			}
			next = (next + 1) % qsize
		}
		if sd != nil {
			sd.Publish()
		} else {
			pd.Publish()
		}
		var n int
		if rx {
			n = port.Rx(pkts[:])
			cache.Free(pkts[:n])
		} else {
			m := cache.Alloc(pkts[:])
			for i := range pkts[:m] {
				pkts[i].Len = size
				copy(be.opts.Pool.Data(&pkts[i]), hdr[:])
			}
			n = port.Tx(pkts[:m])
			cache.Free(pkts[n:m])
		}
		if n != burst {
			b.Fatalf("moved %d of %d", n, burst)
		}
		for got := 0; got < burst; {
			var c int
			var err error
			if sd != nil {
				c, err = sd.Collect(used[:burst-got])
			} else {
				c, err = pd.Collect(used[:burst-got])
			}
			if c == 0 || err != nil {
				b.Fatalf("collected %d of %d", got, burst)
			}
			got += c
		}
	}
	for i := 0; i < 100; i++ {
		step()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += burst {
		step()
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}
