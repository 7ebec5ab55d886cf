package vhost

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// TestDirtyLog runs the live-migration logging a QEMU front-end sets up: LOG_SHMFD,
// SET_LOG_BASE with a bitmap at an unaligned offset, LOG_ALL turned on and off under
// running rings. Every page the back-end writes — receive buffers, used ring — must
// be marked, and no page it did not write.
func TestDirtyLog(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1},
		{"split-mrg", FeatureVersion1 | FeatureMrgRxbuf},
		{"packed", FeatureVersion1 | FeatureRingPacked},
	} {
		t.Run(c.name, func(t *testing.T) { testDirtyLog(t, c.feat) })
	}
}

func testDirtyLog(t *testing.T, feat uint64) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.proto = ProtoLogShmfd
	f.negotiate(feat | FeatureLogAll)
	if f.features&FeatureLogAll == 0 {
		t.Fatal("LOG_ALL not offered")
	}

	// The bitmap covers the fake guest's pages; it sits 100 bytes into the file, so
	// its bytes are not word-aligned.
	const logOff = 100
	logSize := (f.gpa + fakeMemSize) / logPage / 8
	lfd, err := uds.MemfdWithSize("dirtylog", int64(logOff+logSize))
	if err != nil {
		t.Fatal(err)
	}
	defer uds.Close(lfd)
	lmem, err := uds.MapShared(lfd, int(logOff+logSize))
	if err != nil {
		t.Fatal(err)
	}
	defer uds.Munmap(lmem)
	bitmap := lmem[logOff:]
	p := make([]byte, sizeLog)
	le.PutUint64(p, logSize)
	le.PutUint64(p[8:], logOff)
	if err := f.send(ReqSetLogBase, p, false, lfd); err != nil {
		t.Fatal(err)
	}
	if r, err := f.recv(ReqSetLogBase); err != nil || len(r) != 0 {
		t.Fatalf("SET_LOG_BASE reply %x, %v; want an empty reply", r, err)
	}

	f.setupQueue(0, 256)
	f.setupQueue(1, 256)
	port, pool := b.Port(0), b.opts.Pool
	dirty := func(gpa uint64) bool { pg := gpa / logPage; return bitmap[pg/8]&(1<<(pg%8)) != 0 }
	clearLog := func() { clear(bitmap) }

	// 16 page-aligned receive buffers, each on pages of its own; 10 packets fill 10.
	var bufs []uint64
	for range 16 {
		f.alloc(int(logPage - f.next%logPage)) // to the next page
		g, _ := f.alloc(2048)
		bufs = append(bufs, g)
		f.add(0, []vring.Seg{{Addr: g, Len: 2048, Write: true}})
	}
	send := func(n int) {
		t.Helper()
		cache := pool.NewCache(0)
		defer cache.Flush()
		for i := range n {
			var pk [1]pmd.Pkt
			if cache.Alloc(pk[:]) != 1 {
				t.Fatal("pool empty")
			}
			pool.Append(&pk[0], 100+i)
			if port.Tx(pk[:]) != 1 {
				t.Fatalf("tx %d refused", i)
			}
		}
	}
	clearLog()
	send(10)
	var used [32]vring.Used
	if n := f.collect(0, used[:]); n != 10 {
		t.Fatalf("%d used, want 10", n)
	}
	written := map[uint64]bool{}
	for _, u := range used[:10] {
		a, _ := f.descAddr(0, u.ID)
		written[a] = true
	}
	for _, g := range bufs {
		if dirty(g) != written[g] {
			t.Errorf("buffer %#x: dirty %v, written %v", g, dirty(g), written[g])
		}
	}
	ring := f.devRing[0]
	if !dirty(ring) {
		t.Errorf("used ring page %#x not marked", ring)
	}

	// LOG_ALL off while the rings run: traffic goes on, nothing is logged.
	if err := f.send(ReqSetFeatures, u64b((f.features&^FeatureLogAll)|FeatureProtocolFeatures), true); err != nil {
		t.Fatalf("SET_FEATURES without LOG_ALL on running rings: %v", err)
	}
	clearLog()
	send(3)
	if n := f.collect(0, used[:]); n != 3 {
		t.Fatalf("%d used, want 3", n)
	}
	for i, c := range bitmap {
		if c != 0 {
			t.Fatalf("log byte %d is %#x with LOG_ALL off", i, c)
		}
	}
	// And on again.
	if err := f.send(ReqSetFeatures, u64b(f.features|FeatureProtocolFeatures), true); err != nil {
		t.Fatal(err)
	}
	send(3)
	if n := f.collect(0, used[:]); n != 3 {
		t.Fatalf("%d used, want 3", n)
	}
	for _, u := range used[:3] {
		if a, _ := f.descAddr(0, u.ID); !dirty(a) {
			t.Errorf("buffer %#x written after LOG_ALL came back, not marked", a)
		}
	}
	// Other feature changes under running rings are still refused.
	if err := f.send(ReqSetFeatures, u64b(f.features^FeatureEventIdx|FeatureProtocolFeatures), true); !errors.Is(err, errNack) {
		t.Errorf("SET_FEATURES changing EVENT_IDX on running rings: %v, want a nack", err)
	}
}

// TestDirtyLogBaseChecks: a log area the file cannot hold, or SET_LOG_BASE without
// LOG_SHMFD, is refused before anything is mapped.
func TestDirtyLogBaseChecks(t *testing.T) {
	d := testDevice(t, 1)
	lfd, err := uds.MemfdWithSize("dirtylog", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer uds.Close(lfd)
	p := make([]byte, sizeLog)
	le.PutUint64(p, 4096)
	le.PutUint64(p[8:], 0)
	if res := d.dispatch(msg(ReqSetLogBase, p, dup(t, lfd))); !errors.Is(res.err, ErrNotNegotiated) {
		t.Errorf("without LOG_SHMFD: %v, want ErrNotNegotiated", res.err)
	}
	d.proto, d.protoSet = ProtoLogShmfd, true
	le.PutUint64(p[8:], 1) // one byte past the file's end
	if res := d.dispatch(msg(ReqSetLogBase, p, dup(t, lfd))); !errors.Is(res.err, ErrInvalid) || d.log != nil {
		t.Errorf("area past the file's end: %v, want ErrInvalid and no log", res.err)
	}
	le.PutUint64(p[8:], 0)
	if res := d.dispatch(msg(ReqSetLogBase, p, dup(t, lfd))); res.err != nil || d.log == nil || res.reply == nil {
		t.Errorf("valid area: %v (reply %x)", res.err, res.reply)
	}
	d.teardown()
	if d.log != nil {
		t.Error("log still mapped after teardown")
	}
}

func dup(t *testing.T, fd int) int {
	t.Helper()
	d, err := dupFd(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}
