package vhost

import (
	"errors"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
	"golang.org/x/sys/unix"
)

// One test per class of DPDK lib/vhost CVE, plus the framing checks they rely on.

func openFds(t testing.TB) int {
	t.Helper()
	return testenv.Fds(t)
}

func testDevice(t testing.TB, qp int) *device {
	d := newDevice(&Options{QueuePairs: qp})
	t.Cleanup(d.teardown)
	return d
}

func msg(req Request, payload []byte, fds ...int) *message {
	return &message{hdr: header{req: req, flags: flagVersion, size: uint32(len(payload))}, payload: payload, fds: fds}
}

func evfds(t testing.TB, n int) []int {
	fds := make([]int, n)
	for i := range fds {
		fd, err := uds.Eventfd()
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	return fds
}

// CVE-2020-10722/10724 class: a message whose descriptor count does not match what it
// declares. The message is refused before its handler runs and every descriptor that
// came with it is closed.
func TestHardenFdCountMismatch(t *testing.T) {
	d := testDevice(t, 1)
	before := openFds(t)
	table := make([]byte, sizeMemTable+2*regionSize)
	le.PutUint32(table, 2)
	cases := []*message{
		msg(ReqSetMemTable, table, evfds(t, 1)...),           // 2 regions, 1 fd
		msg(ReqSetMemTable, table, evfds(t, 3)...),           // 2 regions, 3 fds
		msg(ReqSetVringKick, u64(0)),                         // fd promised, none sent
		msg(ReqSetVringCall, u64(vringNoFd), evfds(t, 1)...), // "no fd" but one sent
		msg(ReqGetFeatures, nil, evfds(t, 2)...),             // none expected
		msg(ReqSetLogBase, make([]byte, sizeLog)),            // fd missing
		msg(ReqRemMemReg, make([]byte, sizeMemReg), evfds(t, 2)...),
	}
	for _, m := range cases {
		res := d.dispatch(m)
		if !errors.Is(res.fatal, ErrProtocol) {
			t.Errorf("%v with %d fds: %v, want ErrProtocol", m.hdr.req, len(m.fds), res.fatal)
		}
	}
	if n := openFds(t); n != before {
		t.Fatalf("%d descriptors open after the refused messages, %d before", n, before)
	}
}

// Every fixed-size message is refused with any other size.
func TestHardenPayloadSize(t *testing.T) {
	d := testDevice(t, 1)
	for req, h := range handlers {
		if h == nil || h.size < 0 {
			continue
		}
		for _, n := range []int{h.size + 1, h.size - 1, h.size + 8} {
			if n < 0 {
				continue
			}
			res := d.dispatch(msg(Request(req), make([]byte, n)))
			if !errors.Is(res.fatal, ErrProtocol) {
				t.Errorf("%v with %d bytes: %v, want ErrProtocol", Request(req), n, res.fatal)
			}
		}
	}
	for _, m := range []*message{
		{hdr: header{req: 99, flags: flagVersion}},
		{hdr: header{req: ReqGetFeatures, flags: 2}},
		{hdr: header{req: ReqGetFeatures, flags: flagVersion | flagReply}},
	} {
		if res := d.dispatch(m); !errors.Is(res.fatal, ErrProtocol) {
			t.Errorf("header %+v: %v, want ErrProtocol", m.hdr, res.fatal)
		}
	}
}

// CVE-2020-10726 / repeated-message class: SET_VRING_NUM again and again. Bad sizes are
// refused, a running queue refuses to change size, and repeating it on a stopped queue
// holds no extra resource (the last value wins).
func TestHardenRepeatedSetVringNum(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	before := openFds(t)
	for _, n := range []uint32{0, 3, 1000, 65536, 1 << 31} {
		if err := f.send(ReqSetVringNum, stateB(0, n), true); !errors.Is(err, errNack) {
			t.Errorf("SET_VRING_NUM %d: %v, want a nack", n, err)
		}
	}
	for i := 0; i < 1000; i++ {
		f.must(ReqSetVringNum, stateB(0, uint32(16<<(i%6))))
	}
	if n := openFds(t); n != before {
		t.Errorf("%d fds after repeated SET_VRING_NUM, %d before", n, before)
	}
	f.setupQueue(0, 256)
	f.setupQueue(1, 256)
	waitFor(t, "queues", b.ready)
	if err := f.send(ReqSetVringNum, stateB(0, 128), true); !errors.Is(err, errNack) {
		t.Errorf("SET_VRING_NUM on a running queue: %v, want a nack", err)
	}
	if err := f.send(ReqSetVringBase, stateB(0, 7), true); !errors.Is(err, errNack) {
		t.Errorf("SET_VRING_BASE on a running queue: %v, want a nack", err)
	}
}

// CVE-2020-10723 class: SET_LOG_BASE whose size or offset overflow.
func TestHardenSetLogBaseOverflow(t *testing.T) {
	d := testDevice(t, 1)
	for _, c := range []struct{ size, off uint64 }{
		{^uint64(0), 1}, {1, ^uint64(0)}, {0, 0}, {1 << 62, 1 << 62}, {1 << 41, 0},
	} {
		p := make([]byte, sizeLog)
		le.PutUint64(p, c.size)
		le.PutUint64(p[8:], c.off)
		before := openFds(t)
		res := d.dispatch(msg(ReqSetLogBase, p, evfds(t, 1)...))
		if !errors.Is(res.err, ErrInvalid) {
			t.Errorf("log size %#x offset %#x: %v, want ErrInvalid", c.size, c.off, res.err)
		}
		if openFds(t) != before {
			t.Errorf("log fd leaked")
		}
	}
}

// CVE-2018-1059 / CVE-2019-14818 class: a vring index out of range, in every message
// that carries one.
func TestHardenVringIndex(t *testing.T) {
	d := testDevice(t, 2) // 4 queues
	d.features = FeatureProtocolFeatures
	for _, idx := range []uint32{4, 255, 256, 1 << 31, ^uint32(0)} {
		addr := make([]byte, sizeAddr)
		le.PutUint32(addr, idx)
		ms := []*message{
			msg(ReqSetVringNum, stateB(idx, 256)),
			msg(ReqSetVringBase, stateB(idx, 0)),
			msg(ReqGetVringBase, stateB(idx, 0)),
			msg(ReqSetVringEnable, stateB(idx, 1)),
			msg(ReqSetVringAddr, addr),
		}
		if idx != 256 { // in a vring file word, 256 is "queue 0, no fd": legal
			ms = append(ms, msg(ReqSetVringKick, u64(uint64(idx)&^vringNoFd), evfds(t, 1)...),
				msg(ReqSetVringCall, u64(uint64(idx)|vringNoFd)))
		}
		for _, m := range ms {
			res := d.dispatch(m)
			if !errors.Is(res.err, ErrInvalid) && !errors.Is(res.fatal, ErrProtocol) {
				t.Errorf("%v index %d: err %v fatal %v", m.hdr.req, idx, res.err, res.fatal)
			}
		}
	}
}

// CVE-2018-1059 / CVE-2020-10725 class: addresses that do not translate, regions of
// zero length, and descriptors pointing outside guest memory.
func TestHardenTranslation(t *testing.T) {
	d := testDevice(t, 1)
	fd, err := uds.MemfdWithSize("t", 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer uds.Close(fd)
	for _, r := range []memRegion{
		{GuestAddr: 0, Size: 0, UserAddr: 0x1000},
		{GuestAddr: ^uint64(0) - 10, Size: 4096, UserAddr: 0x1000},
		{GuestAddr: 0, Size: 2 << 20, UserAddr: 0x1000}, // larger than the file
		{GuestAddr: 0, Size: 4096, MmapOffset: ^uint64(0) - 100},
	} {
		table := make([]byte, sizeMemTable+regionSize)
		le.PutUint32(table, 1)
		encodeRegion(table[8:], r)
		dup, _ := dupFd(fd)
		if res := d.dispatch(msg(ReqSetMemTable, table, dup)); !errors.Is(res.err, ErrInvalid) {
			t.Errorf("region %+v: %v, want ErrInvalid", r, res.err)
		}
	}

	// Ring addresses outside the table: the ring never starts.
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	a := make([]byte, sizeAddr)
	le.PutUint64(a[8:], f.uva+fakeMemSize-16) // desc table runs off the end
	le.PutUint64(a[16:], f.uva)
	le.PutUint64(a[24:], f.uva+4096)
	f.must(ReqSetVringNum, stateB(0, 256))
	f.must(ReqSetVringAddr, a)
	f.must(ReqSetVringEnable, stateB(0, 1))
	if err := f.send(ReqSetVringKick, u64(0|vringNoFd), true); !errors.Is(err, errNack) {
		t.Errorf("ring outside memory: %v, want a nack", err)
	}
	if b.curDev.Load().queues[0].active.Load() != nil {
		t.Error("ring with untranslatable addresses started")
	}

	// A descriptor outside guest memory, and one of zero length: counted drops,
	// the queue stops, nothing panics.
	f.setupQueue(0, 256)
	f.setupQueue(1, 256)
	f.add(1, []vring.Seg{{Addr: 0xdead0000000, Len: 100}})
	var pkts [8]pmd.Pkt
	if n := b.Port(0).Rx(pkts[:]); n != 0 {
		t.Fatalf("received %d packets from a bad descriptor", n)
	}
	if st := b.Port(0).Stats(); st.Drops[pmd.DropInvalid] != 1 {
		t.Fatalf("drops %v, want one invalid", st.Drops)
	}
}

// CVE-2020-10726-adjacent class (DPDK "chain shorter than the virtio-net header"): a
// TX chain too short to hold the header, or exactly the header, is completed and
// counted, never read past. A chain of the header alone carries no frame: it is
// dropped as DropInvalid, as DPDK's vhost drops it (buf_len <= vhost_hlen); before,
// it was delivered as a zero-length packet, which an application reading an
// Ethernet header without checking the length would read past.
func TestHardenShortChain(t *testing.T) {
	b, f := oneQueue(t, FeatureVersion1, 256)
	f.setupQueue(1, 256)
	for _, n := range []int{1, 8, 11, 12} {
		g, _ := f.alloc(n)
		f.add(1, []vring.Seg{{Addr: g, Len: uint32(n)}})
	}
	g, _ := f.alloc(16)
	f.add(1, []vring.Seg{{Addr: g, Len: 0}, {Addr: g, Len: 4}})
	var pkts [8]pmd.Pkt
	n := b.Port(0).Rx(pkts[:])
	b.opts.Pool.Put(frames(pkts[:n]))
	if n != 0 {
		t.Fatalf("got %d packets (first len %d), want none", n, pkts[0].Len)
	}
	if st := b.Port(0).Stats(); st.Drops[pmd.DropInvalid] != 5 {
		t.Fatalf("drops %v, want 5 invalid", st.Drops)
	}
	var used [8]vring.Used
	if got := f.collect(1, used[:]); got != 5 {
		t.Fatalf("%d chains completed, want 5", got)
	}
}

// CVE-2021-3839 class: GET/SET_INFLIGHT_FD with queue counts, sizes or offsets out of
// range. INFLIGHT_SHMFD is not offered, but the values are still checked and the
// descriptor closed.
func TestHardenInflight(t *testing.T) {
	d := testDevice(t, 1)
	before := openFds(t)
	for _, c := range []struct {
		size, off uint64
		nq, qs    uint16
	}{
		{4096, 0, 0xffff, 256}, {4096, 0, 0, 256}, {4096, 0, 2, 0}, {^uint64(0), 2, 2, 256}, {0, 0, 2, 256},
	} {
		p := make([]byte, sizeInflight)
		le.PutUint64(p, c.size)
		le.PutUint64(p[8:], c.off)
		le.PutUint16(p[16:], c.nq)
		le.PutUint16(p[18:], c.qs)
		if res := d.dispatch(msg(ReqSetInflightFd, p, evfds(t, 1)...)); !errors.Is(res.err, ErrInvalid) {
			t.Errorf("SET_INFLIGHT_FD %+v: %v, want ErrInvalid", c, res.err)
		}
	}
	if res := d.dispatch(msg(ReqGetInflightFd, make([]byte, sizeInflight))); res.fatal == nil {
		t.Error("GET_INFLIGHT_FD of zero queues answered")
	}
	if openFds(t) != before {
		t.Error("inflight fd leaked")
	}
}

// TestHardenBlockingCallFd: a front-end passes the write end of a full, blocking pipe
// as its call "eventfd". Signalling it must not block the datapath (the worker that
// runs it serves other ports too): the back-end makes the fd non-blocking.
func TestHardenBlockingCallFd(t *testing.T) {
	b, f := oneQueue(t, FeatureVersion1|FeatureMrgRxbuf, 64)
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	unix.SetNonblock(p[1], true)
	junk := make([]byte, 4096)
	for {
		if _, err := unix.Write(p[1], junk); err != nil {
			break
		}
	}
	unix.SetNonblock(p[1], false)
	f.must(ReqSetVringCall, u64b(0), p[1])
	unix.Close(p[1])
	gpa, _ := f.alloc(2048)
	f.add(0, []vring.Seg{{Addr: gpa, Len: 2048, Write: true}})
	waitFor(t, "queue 0", func() bool { return b.curDev.Load().queues[0].active.Load() != nil })
	c := b.opts.Pool.NewCache(0)
	defer c.Flush()
	var pk [1]pmd.Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("pool empty")
	}
	pk[0].Len = 60
	done := make(chan int, 1)
	go func() { done <- b.Port(0).Tx(pk[:]) }()
	select {
	case n := <-done:
		if n != 1 {
			t.Fatalf("Tx sent %d", n)
		}
	case <-time.After(2 * time.Second):
		unix.Read(p[0], make([]byte, 1<<20)) // let it finish before the test ends
		<-done
		t.Fatal("Port.Tx blocked writing to the front-end's call fd")
	}
}

// TestHardenVringFdKind: a front-end passes a regular file (here a memfd; it could
// as well be a file on a FUSE mount it serves, whose writes block however
// O_NONBLOCK is set) as a call or error "eventfd". Every signal would write 8 bytes
// into it: the file grows without bound, its pages charged to the back-end's
// memory. Such a descriptor is refused, and closed; eventfds, pipes and sockets are
// still taken.
func TestHardenVringFdKind(t *testing.T) {
	b, f := oneQueue(t, FeatureVersion1|FeatureMrgRxbuf, 64)
	mfd, err := unix.MemfdCreate("not-an-eventfd", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(mfd)
	before := openFds(t)
	for _, req := range []Request{ReqSetVringCall, ReqSetVringErr, ReqSetVringKick} {
		if err := f.send(req, u64b(0), true, mfd); !errors.Is(err, errNack) {
			t.Errorf("%v with a memfd: %v, want a nack", req, err)
		}
	}
	if n := openFds(t); n != before {
		t.Errorf("%d descriptors open after the refused messages, %d before", n, before)
	}
	// The ring runs on, and a packet sent to the guest grows no file.
	f.must(ReqSetVringKick, u64b(0|vringNoFd))
	gpa, _ := f.alloc(2048)
	f.add(0, []vring.Seg{{Addr: gpa, Len: 2048, Write: true}})
	c := b.opts.Pool.NewCache(0)
	defer c.Flush()
	var pk [1]pmd.Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("pool empty")
	}
	pk[0].Len = 60
	waitFor(t, "tx", func() bool { return b.Port(0).Tx(pk[:]) == 1 })
	var st unix.Stat_t
	if err := unix.Fstat(mfd, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 0 {
		t.Errorf("the memfd passed as an eventfd grew to %d bytes", st.Size)
	}
	// A pipe is still a usable signal descriptor.
	var p [2]int
	if err := unix.Pipe(p[:]); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	f.must(ReqSetVringCall, u64b(0), p[1])
	unix.Close(p[1])
}

// TestSplitAvailAtMemoryEnd: a split available ring that ends on the last byte of
// the guest's memory is a valid ring (§2.7.6: 6+2n bytes, 2-aligned). Before, the
// back-end translated it rounded up to a multiple of 4, 2 bytes past the memory, and
// refused SET_VRING_KICK.
func TestSplitAvailAtMemoryEnd(t *testing.T) {
	const n = 8
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	ds, _, us := vring.SplitSizes(n)
	dg, dh := f.alloc(ds)
	ug, uh := f.alloc(us)
	buf, bh := f.alloc(64)
	const as = 6 + 2*n
	ag := f.gpa + fakeMemSize - as // 2 mod 4: 2-aligned only
	ah := f.host[fakeMemSize-as:]
	uva := func(gpa uint64) uint64 { return gpa - f.gpa + f.uva }
	a := make([]byte, sizeAddr)
	le.PutUint32(a, 1)
	le.PutUint64(a[8:], uva(dg))
	le.PutUint64(a[16:], uva(ug))
	le.PutUint64(a[24:], uva(ag))
	f.must(ReqSetVringNum, stateB(1, n))
	f.must(ReqSetVringBase, stateB(1, 0))
	f.must(ReqSetVringAddr, a)
	f.must(ReqSetVringEnable, stateB(1, 1))
	if err := f.send(ReqSetVringKick, u64(1|vringNoFd), true); err != nil {
		t.Fatalf("ring ending at the end of memory: %v", err)
	}
	// One packet through it: a 12-byte header and 50 bytes, in descriptor 0.
	for i := range 62 {
		bh[i] = byte(i)
	}
	le.PutUint64(dh[0:], buf)
	le.PutUint32(dh[8:], 62)
	le.PutUint16(ah[4:], 0) // avail.ring[0]: descriptor 0
	le.PutUint16(ah[2:], 1) // avail.idx
	var pkts [4]pmd.Pkt
	got := b.Port(0).Rx(pkts[:])
	if got != 1 || pkts[0].Len != 50 || b.opts.Pool.Data(&pkts[0])[0] != 12 {
		t.Fatalf("Rx: %d packets, first %d bytes, want one of 50 starting with 12", got, pkts[0].Len)
	}
	b.opts.Pool.Put(frames(pkts[:got]))
	if idx := le.Uint16(uh[2:]); idx != 1 {
		t.Errorf("used.idx %d, want 1", idx)
	}
}
