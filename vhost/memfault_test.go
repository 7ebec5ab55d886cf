package vhost

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
	"golang.org/x/sys/unix"
)

// unsealFront gives f guest memory the back-end cannot seal against shrinking (a
// memfd made without MFD_ALLOW_SEALING, like a hugetlbfs file), so f can truncate it
// under the back-end's mapping.
func unsealFront(t *testing.T, f *fakeFront) {
	t.Helper()
	fd, err := unix.MemfdCreate("unsealed", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Ftruncate(fd, fakeMemSize); err != nil {
		t.Fatal(err)
	}
	host, err := uds.MapShared(fd, fakeMemSize)
	if err != nil {
		t.Fatal(err)
	}
	uds.Munmap(f.host)
	uds.Close(f.fd)
	f.fd, f.host = fd, host
	if f.mem, err = vring.NewMemory(vring.Region{Addr: f.gpa, Host: host}); err != nil {
		t.Fatal(err)
	}
}

// poolFrames counts the frames back in the pool or in port 0's caches.
func poolFrames(b *Backend) int {
	p := b.Port(0)
	return b.opts.Pool.Stats().Free + p.caches.Rx.Len() + p.caches.Tx.Len()
}

// TestGuestMemoryTruncated: a front-end truncates the memory file it shared while
// the back-end uses it. Every access past the new end would raise SIGBUS. The
// back-end must survive it: the burst that faults returns 0 and loses no frame, the
// ring's error eventfd is signalled, a drop is counted, the device is dropped with
// ErrGuestFault and its descriptors and mappings released, and the next front-end is
// served. Cases: a fault in the guest-to-host copy (Rx, a burst that turns to chains
// of frames), in the host-to-guest copy (Tx), and on the control goroutine (a ring
// started on memory that is gone).
func TestGuestMemoryTruncated(t *testing.T) {
	for _, ring := range []struct {
		name  string
		feats uint64
	}{
		{"split", FeatureVersion1 | FeatureMrgRxbuf},
		{"packed", FeatureVersion1 | FeatureMrgRxbuf | FeatureRingPacked},
		{"packed-inorder", FeatureVersion1 | FeatureRingPacked | FeatureInOrder},
	} {
		for _, where := range []string{"rx", "tx", "control"} {
			t.Run(ring.name+"/"+where, func(t *testing.T) {
				truncated(t, ring.feats, where)
			})
		}
	}
}

func truncated(t *testing.T, feats uint64, where string) {
	b, path := testBackend(t, nil)
	pool := b.opts.Pool
	fds, maps := openFds(t), sharedMaps(t)
	const cut = fakeMemSize / 2

	f := newFakeFront(t, path)
	unsealFront(t, f)
	f.negotiate(feats)
	f.setupQueue(0, 64)
	f.setupQueue(1, 64)
	waitFor(t, "queues", b.ready)
	errFds := evfds(t, 2)
	for i, fd := range errFds {
		f.must(ReqSetVringErr, u64b(uint64(i)), fd)
	}
	waitFor(t, "queues after SET_VRING_ERR", b.ready)
	frames0 := poolFrames(b)
	port := b.Port(0)

	switch where {
	case "rx":
		// A small packet, one longer than a frame across the cut, and three
		// more small ones. The long one turns the burst to chains of frames,
		// and faults while two of the frames Rx took are spare.
		var small [4]uint64
		for i := range small {
			g, h := f.alloc(12 + 60)
			clear(h)
			small[i] = g
		}
		f.next = cut - 100
		gb, hb := f.alloc(12 + 4000)
		clear(hb)
		f.add(1, []vring.Seg{{Addr: small[0], Len: 12 + 60}})
		f.add(1, []vring.Seg{{Addr: gb, Len: 12 + 4000}})
		for _, g := range small[1:] {
			f.add(1, []vring.Seg{{Addr: g, Len: 12 + 60}})
		}
		truncate(t, f, cut)
		var pkts [8]pmd.Pkt
		if n := port.Rx(pkts[:]); n != 0 {
			t.Fatalf("Rx on truncated memory returned %d packets", n)
		}
	case "tx":
		// Receive buffers below and above the cut; the second packet faults.
		ga, _ := f.alloc(2048)
		f.add(0, []vring.Seg{{Addr: ga, Len: 2048, Write: true}})
		f.next = cut
		gb, _ := f.alloc(2048)
		f.add(0, []vring.Seg{{Addr: gb, Len: 2048, Write: true}})
		truncate(t, f, cut)
		var pkts [2]pmd.Pkt
		if got := port.caches.Tx.Alloc(pkts[:]); got != 2 {
			t.Fatal("no frames")
		}
		for i := range pkts {
			pool.Append(&pkts[i], 100)
		}
		if n := port.Tx(pkts[:]); n != 0 {
			t.Fatalf("Tx on truncated memory took %d packets", n)
		}
		port.caches.Tx.Free(pkts[:]) // they stayed ours
	case "control":
		// Stop queue 1, take all the memory away, and start it again: starting
		// writes its ring (notification suppression).
		f.get(ReqGetVringBase, stateB(1, 0))
		truncate(t, f, 0)
		kick, err := uds.Eventfd()
		if err != nil {
			t.Fatal(err)
		}
		f.send(ReqSetVringKick, u64b(1), false, kick)
		uds.Close(kick)
	}
	waitFor(t, "the device to be dropped", func() bool { return !b.Attached() })
	if err := b.LastError(); !errors.Is(err, ErrGuestFault) {
		t.Fatalf("LastError %v, want ErrGuestFault", err)
	}
	if where != "control" {
		var v [8]byte
		q := map[string]int{"rx": 1, "tx": 0}[where]
		if n, err := unix.Read(errFds[q], v[:]); n != 8 || err != nil {
			t.Errorf("queue %d's error eventfd not signalled: %d, %v", q, n, err)
		}
		if got := port.Stats().Drops[pmd.DropInvalid]; got != 1 {
			t.Errorf("%d invalid drops counted, want 1", got)
		}
		// A datapath call after the fault finds the ring stopped or faulted.
		var pkts [4]pmd.Pkt
		if n := port.Rx(pkts[:]); n != 0 {
			t.Errorf("Rx after the fault returned %d", n)
		}
	}
	if got := poolFrames(b); got != frames0 {
		t.Errorf("%d frames in the pool and caches, %d before: %d lost", got, frames0, frames0-got)
	}
	uds.CloseAll(errFds)
	f.close()
	if got := openFds(t); got != fds {
		t.Errorf("%d descriptors open, %d before", got, fds)
	}
	if got := sharedMaps(t); got != maps {
		t.Errorf("%d shared mappings, %d before", got, maps)
	}

	// The next front-end is served.
	g := newFakeFront(t, path)
	g.negotiate(feats)
	g.setupQueue(0, 64)
	g.setupQueue(1, 64)
	waitFor(t, "queues of the next front-end", b.ready)
	ga, ha := g.alloc(12 + 60)
	clear(ha)
	g.add(1, []vring.Seg{{Addr: ga, Len: 12 + 60}})
	var pkts [4]pmd.Pkt
	waitFor(t, "a packet from the next front-end", func() bool {
		n := port.Rx(pkts[:])
		port.caches.Rx.Free(pkts[:n])
		return n == 1
	})
}

func truncate(t *testing.T, f *fakeFront, size int64) {
	t.Helper()
	if err := unix.Ftruncate(f.fd, size); err != nil {
		t.Fatalf("truncate guest memory: %v (sealed?)", err)
	}
}

// TestFaultedRepanics: a panic in a burst that is not a fault on the ring's guest
// memory is a bug, and goes on after the queue is given back.
func TestFaultedRepanics(t *testing.T) {
	q, r, p := newVQ(1), newRing(1, 0), &Port{}
	q.busy.Store(1)
	want := errors.New("a bug")
	defer func() {
		if v := recover(); v != want {
			t.Fatalf("recovered %v, want the original panic", v)
		}
		if q.busy.Load() != 0 {
			t.Fatal("queue left busy")
		}
		if r.faulted {
			t.Fatal("ring marked faulted")
		}
	}()
	p.faulted(nil, q, r, want)
}
