package vhost

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// sharedMaps counts the mappings of files (memfds, hugetlbfs, tmpfs) in this process:
// guest memory the backend maps shows up here.
func sharedMaps(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "memfd:") || strings.Contains(l, "/dev/hugepages") || strings.Contains(l, "(deleted)") {
			n++
		}
	}
	return n
}

// TestConnectCycles: 100 front-ends connect, set up memory and queues, move a packet
// and go away; afterwards no descriptor and no mapping is left behind.
func TestConnectCycles(t *testing.T) {
	b, path := testBackend(t, nil)
	cycle := func() {
		f := newFakeFront(t, path)
		f.negotiate(FeatureVersion1 | FeatureMrgRxbuf)
		f.setupQueue(0, 64)
		f.setupQueue(1, 64)
		waitFor(t, "queues", b.ready)
		g, h := f.alloc(100)
		clear(h)
		f.add(1, []vring.Seg{{Addr: g, Len: 100}})
		var p [4]pmd.Pkt
		waitFor(t, "packet", func() bool {
			n := b.Port(0).Rx(p[:])
			b.opts.Pool.Put(frames(p[:n]))
			return n == 1
		})
		f.close()
		waitFor(t, "detach", func() bool { return !b.Attached() })
	}
	cycle() // warm up: the first connection allocates the ports' caches etc.
	fds, maps := openFds(t), sharedMaps(t)
	for i := 0; i < 100; i++ {
		cycle()
	}
	if got := openFds(t); got != fds {
		t.Errorf("%d descriptors open after 100 cycles, %d before", got, fds)
	}
	if got := sharedMaps(t); got != maps {
		t.Errorf("%d shared mappings after 100 cycles, %d before", got, maps)
	}
	if c := b.Connections(); c != 101 {
		t.Errorf("%d connections served, want 101", c)
	}
}

// TestFrontendKilled: testpmd is SIGKILLed while it floods the backend. The backend
// drops the device and unmaps its memory, a second backend keeps serving its own
// testpmd throughout, and a restarted testpmd is accepted on the first socket.
func TestFrontendKilled(t *testing.T) {
	needTestpmd(t)
	a, pathA := testBackend(t, nil)
	bk, pathB := testBackend(t, nil)
	maps := sharedMaps(t)
	vdev := func(p string) string { return "net_virtio_user0,path=" + p + ",queues=1,mrg_rxbuf=1" }
	tpB := startTestpmd(t, vdev(pathB))
	tpA := startTestpmd(t, vdev(pathA))
	waitFor(t, "A's queues", a.ready)
	tpA.Run("set fwd txonly")
	tpA.Run("start")
	var p [32]pmd.Pkt
	got := 0
	for got < 10000 {
		n := a.Port(0).Rx(p[:])
		a.opts.Pool.Put(frames(p[:n]))
		got += n
	}
	tpA.Signal(syscall.SIGKILL)
	// Keep polling through the kill: the datapath must not block or fault.
	deadline := time.Now().Add(10 * time.Second)
	for a.Attached() && time.Now().Before(deadline) {
		n := a.Port(0).Rx(p[:])
		a.opts.Pool.Put(frames(p[:n]))
	}
	if a.Attached() {
		t.Fatal("backend did not drop the killed front-end")
	}
	tpA.Wait()
	exchange(t, bk, tpB, 1) // the other device is unaffected
	if got := sharedMaps(t); got <= maps {
		t.Errorf("B's guest memory not mapped? %d shared mappings, %d before", got, maps)
	}
	tpB.Quit()
	waitFor(t, "B to detach", func() bool { return !bk.Attached() })
	if got := sharedMaps(t); got != maps {
		t.Errorf("%d shared mappings after both front-ends left, %d before", got, maps)
	}
	tpA2 := startTestpmd(t, vdev(pathA))
	exchange(t, a, tpA2, 1)
}
