package vhost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// fakeFront is a minimal vhost-user front-end for tests: memfd guest memory, raw
// messages, and vring's driver side on the rings.
type fakeFront struct {
	t        testing.TB
	c        *uds.Conn
	fd       int
	host     []byte
	gpa, uva uint64
	mem      *vring.Memory
	packed   bool
	features uint64
	qsize    int
	next     uint64 // bump allocator in guest memory (offset)
	split    map[int]*vring.SplitDriver
	pk       map[int]*vring.PackedDriver
	evfds    []int
	ids      map[[2]int]uint64 // (queue, id) → first segment's address
	proto    uint64            // extra protocol features negotiate asks for
	devRing  map[int]uint64    // queue → guest address of the ring part the device writes
	availAt  map[int]uint64    // split queue → guest address of its available ring
	// addrLast makes setupQueue send SET_VRING_ADDR after the kick, call and enable;
	// numLast, SET_VRING_NUM after all of them.
	addrLast, numLast bool
}

const fakeMemSize = 8 << 20

// oneQueue attaches a fake front-end to a test back-end with the given features and
// sets up queue pair 0 with rings of n entries.
func oneQueue(t testing.TB, feat uint64, n int) (*Backend, *fakeFront) {
	t.Helper()
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(feat)
	f.setupQueue(0, n)
	return b, f
}

func newFakeFront(t testing.TB, path string) *fakeFront {
	t.Helper()
	var c net.Conn
	var err error
	for i := 0; i < 100; i++ {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	fd, err := uds.MemfdWithSize("fakefront", fakeMemSize)
	if err != nil {
		t.Fatal(err)
	}
	host, err := uds.MapShared(fd, fakeMemSize)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeFront{t: t, c: uds.NewConn(c.(*net.UnixConn)), fd: fd, host: host, gpa: 0x100000, uva: 0x7f0000000000,
		split: map[int]*vring.SplitDriver{}, pk: map[int]*vring.PackedDriver{}, ids: map[[2]int]uint64{}, devRing: map[int]uint64{}, availAt: map[int]uint64{}}
	f.mem, err = vring.NewMemory(vring.Region{Addr: f.gpa, Host: host})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.close)
	return f
}

func (f *fakeFront) close() {
	if f.c != nil {
		f.c.Close()
		f.c = nil
	}
	if f.host != nil {
		uds.Munmap(f.host)
		f.host = nil
	}
	if f.fd >= 0 {
		uds.Close(f.fd)
		f.fd = -1
	}
	uds.CloseAll(f.evfds)
	f.evfds = nil
}

// send writes one message; with ack it sets NEED_REPLY and returns the ack's error.
func (f *fakeFront) send(req Request, payload []byte, ack bool, fds ...int) error {
	b := make([]byte, hdrSize+len(payload))
	fl := uint32(flagVersion)
	if ack {
		fl |= flagNeedReply
	}
	encodeHeader(b, header{req: req, flags: fl, size: uint32(len(payload))})
	copy(b[hdrSize:], payload)
	if err := f.c.Write(b, fds...); err != nil {
		return err
	}
	if !ack {
		return nil
	}
	r, err := f.recv(req)
	if err != nil {
		return err
	}
	if len(r) != 8 {
		return fmt.Errorf("ack of %d bytes", len(r))
	}
	if le.Uint64(r) != 0 {
		return errNack
	}
	return nil
}

var errNack = errors.New("nack")

func (f *fakeFront) recv(req Request) ([]byte, error) {
	f.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hb [hdrSize]byte
	fds, err := f.c.ReadFull(hb[:])
	uds.CloseAll(fds)
	if err != nil {
		return nil, err
	}
	h := decodeHeader(hb[:])
	if h.req != req || h.flags != flagVersion|flagReply || h.size > maxPayload {
		return nil, fmt.Errorf("bad reply header %+v", h)
	}
	p := make([]byte, h.size)
	if h.size > 0 {
		if _, err := f.c.ReadFull(p); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (f *fakeFront) get(req Request, payload []byte) uint64 {
	f.t.Helper()
	if err := f.send(req, payload, false); err != nil {
		f.t.Fatal(err)
	}
	r, err := f.recv(req)
	if err != nil {
		f.t.Fatal(err)
	}
	if len(r) < 8 {
		f.t.Fatalf("%v reply %d bytes", req, len(r))
	}
	return le.Uint64(r)
}

func (f *fakeFront) must(req Request, payload []byte, fds ...int) {
	f.t.Helper()
	if err := f.send(req, payload, true, fds...); err != nil {
		f.t.Fatalf("%v: %v", req, err)
	}
}

func u64b(v uint64) []byte { return u64(v) }

func stateB(i, n uint32) []byte {
	b := make([]byte, 8)
	le.PutUint32(b, i)
	le.PutUint32(b[4:], n)
	return b
}

func (f *fakeFront) memTable() []byte {
	b := make([]byte, sizeMemTable+regionSize)
	le.PutUint32(b, 1)
	encodeRegion(b[8:], memRegion{GuestAddr: f.gpa, Size: fakeMemSize, UserAddr: f.uva})
	return b
}

// negotiate runs the handshake up to the memory table, asking for want features.
func (f *fakeFront) negotiate(want uint64) {
	f.t.Helper()
	feats := f.get(ReqGetFeatures, nil)
	if feats&FeatureProtocolFeatures == 0 {
		f.t.Fatal("no PROTOCOL_FEATURES")
	}
	proto := f.get(ReqGetProtocolFeatures, nil)
	if err := f.send(ReqSetFeatures, u64b(want&feats|FeatureProtocolFeatures), false); err != nil {
		f.t.Fatal(err)
	}
	if err := f.send(ReqSetProtocolFeatures, u64b(proto&(ProtoReplyAck|ProtoMQ|ProtoConfigureMemSlots|ProtoStatus|f.proto)), false); err != nil {
		f.t.Fatal(err)
	}
	f.features = want & feats
	f.packed = f.features&FeatureRingPacked != 0
	f.must(ReqSetOwner, nil)
	f.must(ReqSetMemTable, f.memTable(), f.fd)
}

func (f *fakeFront) alloc(n int) (gpa uint64, host []byte) {
	off := (f.next + 63) &^ 63
	f.next = off + uint64(n)
	if f.next > fakeMemSize {
		f.t.Fatal("fake guest memory exhausted")
	}
	return f.gpa + off, f.host[off : off+uint64(n)]
}

// setupQueue creates queue i with size n and starts it in the backend.
func (f *fakeFront) setupQueue(i, n int) {
	f.t.Helper()
	f.qsize = n
	o := vring.Options{Size: n, Features: f.features & (vring.FeatureEventIdx | vring.FeatureIndirectDesc | vring.FeatureInOrder | vring.FeatureVersion1 | vring.FeatureRingPacked)}
	a := make([]byte, sizeAddr)
	le.PutUint32(a, uint32(i))
	uva := func(gpa uint64) uint64 { return gpa - f.gpa + f.uva }
	if f.packed {
		ds, es := vring.PackedSizes(n)
		dg, dh := f.alloc(ds)
		eg, eh := f.alloc(es)
		vg, vh := f.alloc(es)
		d, err := vring.NewPackedDriver(vring.PackedRing{Desc: dh, DriverEvent: eh, DeviceEvent: vh}, f.mem, o)
		if err != nil {
			f.t.Fatal(err)
		}
		f.pk[i] = d
		f.devRing[i] = dg
		le.PutUint64(a[8:], uva(dg))
		le.PutUint64(a[16:], uva(vg))
		le.PutUint64(a[24:], uva(eg))
	} else {
		ds, as, us := vring.SplitSizes(n)
		dg, dh := f.alloc(ds)
		ag, ah := f.alloc(as)
		ug, uh := f.alloc(us)
		d, err := vring.NewSplitDriver(vring.SplitRing{Desc: dh, Avail: ah, Used: uh}, f.mem, o)
		if err != nil {
			f.t.Fatal(err)
		}
		f.split[i] = d
		f.devRing[i] = ug
		f.availAt[i] = ag
		le.PutUint64(a[8:], uva(dg))
		le.PutUint64(a[16:], uva(ug))
		le.PutUint64(a[24:], uva(ag))
	}
	kick, err := uds.Eventfd()
	if err != nil {
		f.t.Fatal(err)
	}
	call, err := uds.Eventfd()
	if err != nil {
		f.t.Fatal(err)
	}
	f.evfds = append(f.evfds, kick, call)
	if !f.numLast {
		f.must(ReqSetVringNum, stateB(uint32(i), uint32(n)))
	}
	base := uint32(0)
	if f.packed {
		base = 1 << 15 // a fresh packed ring: avail wrap counter 1, as QEMU sends it
	}
	f.must(ReqSetVringBase, stateB(uint32(i), base))
	if !f.addrLast {
		f.must(ReqSetVringAddr, a)
	}
	f.must(ReqSetVringKick, u64b(uint64(i)), kick)
	f.must(ReqSetVringCall, u64b(uint64(i)), call)
	f.must(ReqSetVringEnable, stateB(uint32(i), 1))
	if f.addrLast {
		f.must(ReqSetVringAddr, a)
	}
	if f.numLast {
		f.must(ReqSetVringNum, stateB(uint32(i), uint32(n)))
	}
}

func (f *fakeFront) add(q int, segs []vring.Seg) {
	f.t.Helper()
	var err error
	var id uint16
	if d := f.split[q]; d != nil {
		id, err = d.Add(segs)
		d.Publish()
	} else {
		id, err = f.pk[q].Add(segs)
		f.pk[q].Publish()
	}
	if err != nil {
		f.t.Fatal(err)
	}
	f.ids[[2]int{q, int(id)}] = segs[0].Addr
}

func (f *fakeFront) descAddr(q int, id uint16) (uint64, bool) {
	a, ok := f.ids[[2]int{q, int(id)}]
	return a, ok
}

func (f *fakeFront) collect(q int, dst []vring.Used) int {
	f.t.Helper()
	var n int
	var err error
	if d := f.split[q]; d != nil {
		n, err = d.Collect(dst)
	} else {
		n, err = f.pk[q].Collect(dst)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return n
}

// testBackend starts a listening backend on a temp socket, its pool on 4 KiB pages.
func testBackend(t testing.TB, mod func(*Options)) (*Backend, string) {
	t.Helper()
	return testBackendHuge(t, pmd.HugeNever, mod)
}

// testBackendHuge is testBackend with the pool's hugepage policy given.
func testBackendHuge(t testing.TB, huge pmd.HugeMode, mod func(*Options)) (*Backend, string) {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8192, Huge: huge, Name: "vhost-test"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(shortTempDir(t), "vhost.sock")
	o := Options{Path: path, Pool: pool}
	if mod != nil {
		mod(&o)
	}
	b, err := NewBackend(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		for _, p := range b.ports {
			p.Close()
		}
		pool.Close()
	})
	if !o.Client {
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(path); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return b, path
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 500; i++ {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

// shortTempDir is a temp dir whose name is short and free of ',' and '=' (test names
// have both), as socket paths and DPDK's kvargs need.
func shortTempDir(t testing.TB) string {
	d, err := os.MkdirTemp("", "vh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}
