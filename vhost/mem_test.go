package vhost

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/internal/uds"
	"golang.org/x/sys/unix"
)

// TestRingRestartsWhenMemoryReturns: a ring stopped because its memory left the
// table runs again once the memory is back, whichever message brings it. QEMU with
// CONFIGURE_MEM_SLOTS replaces a region that changes (virtio-mem resizing) with
// REM_MEM_REG then ADD_MEM_REG; in between the ring cannot start.
func TestRingRestartsWhenMemoryReturns(t *testing.T) {
	for _, back := range []string{"add-mem-reg", "set-mem-table"} {
		t.Run(back, func(t *testing.T) {
			b, f := oneQueue(t, FeatureVersion1, 256)
			port := b.Port(0)
			if !port.TxReady() {
				t.Fatal("ring not running after setup")
			}
			reg := make([]byte, sizeMemReg)
			encodeRegion(reg[8:], memRegion{GuestAddr: f.gpa, Size: fakeMemSize, UserAddr: f.uva})
			f.must(ReqRemMemReg, reg)
			if port.TxReady() {
				t.Fatal("ring still running without its memory")
			}
			if back == "add-mem-reg" {
				f.must(ReqAddMemReg, reg, f.fd)
			} else {
				f.must(ReqSetMemTable, f.memTable(), f.fd)
			}
			if !port.TxReady() {
				t.Fatal("ring not restarted after its memory came back")
			}
		})
	}
}

// TestResetRingStaysStopped: after a device reset (SET_STATUS 0) a ring waits for
// a new SET_VRING_KICK; a memory table sent meanwhile (as a front-end sends before
// it configures the rings again) must not start it on the old configuration, which
// would then refuse SET_VRING_NUM as busy.
func TestResetRingStaysStopped(t *testing.T) {
	b, f := oneQueue(t, FeatureVersion1, 256)
	port := b.Port(0)
	f.must(ReqSetStatus, u64b(0))
	if port.TxReady() {
		t.Fatal("ring running after a device reset")
	}
	f.must(ReqSetMemTable, f.memTable(), f.fd)
	if port.TxReady() {
		t.Fatal("a memory table started a ring the reset stopped")
	}
	f.must(ReqSetVringNum, stateB(0, 128))
	f.setupQueue(0, 256)
	if !port.TxReady() {
		t.Fatal("ring not running after it was set up again")
	}
}

// TestAddrAfterKick: a ring whose kick, call and enable come before its addresses
// starts when the addresses come: the vhost-user spec starts a ring at its kick,
// and it is ready then.
func TestAddrAfterKick(t *testing.T) {
	for _, packed := range []bool{false, true} {
		b, path := testBackend(t, nil)
		f := newFakeFront(t, path)
		f.packed, f.addrLast = packed, true
		feat := uint64(FeatureVersion1)
		if packed {
			feat |= FeatureRingPacked
		}
		f.negotiate(feat)
		f.setupQueue(0, 256)
		if !b.Port(0).TxReady() {
			t.Fatalf("packed %v: ring not running after its addresses came last", packed)
		}
	}
}

// TestPackedBaseFresh: GET_VRING_BASE of a packed ring that never ran and had no
// SET_VRING_BASE reports a fresh ring, positions 0 with both wrap counters 1
// (VIRTIO 1.2 §2.8.1), not wrap counters 0.
func TestPackedBaseFresh(t *testing.T) {
	_, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1 | FeatureRingPacked)
	f.must(ReqSetVringNum, stateB(0, 256))
	if got := f.get(ReqGetVringBase, stateB(0, 0)) >> 32; got != 1<<15|1<<31 {
		t.Fatalf("fresh packed ring base %#x, want %#x", got, uint32(1<<15|1<<31))
	}
}

// sparseMemfd returns a memfd of size bytes with nothing allocated, closed at the
// end of the test.
func sparseMemfd(t *testing.T, name string, size int64) int {
	t.Helper()
	fd, err := uds.MemfdWithSize(name, size)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uds.Close(fd) })
	return fd
}

// allocated returns the bytes the file of fd has allocated.
func allocated(t *testing.T, fd int) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// mapsOf counts this process's mappings of the memfd called name.
func mapsOf(t *testing.T, name string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "memfd:"+name+" ")
}

// TestMapRegionSparse: the front-end chooses file, offset and size of a region and
// of the dirty log. Mapping 1 MiB near the end of a sparse 64 MiB memfd must
// not allocate the file's other 63 MiB, nor the range's own pages before they are
// touched (each would be charged to the back-end). Mem is the range at its offset,
// whatever the offset's alignment, and Unmap removes the whole mapping.
func TestMapRegionSparse(t *testing.T) {
	const name = "vhost-sparse"
	for _, off := range []uint64{63 << 20, 62<<20 + 100} {
		fd := sparseMemfd(t, name, 64<<20)
		s, err := mapRegion(memRegion{GuestAddr: 0x100000, Size: 1 << 20, UserAddr: 0x7f0000000000, MmapOffset: off}, fd)
		if err != nil {
			t.Fatalf("offset %#x: %v", off, err)
		}
		l, err := newDirtyLog(fd, 1<<20, off)
		if err != nil {
			t.Fatalf("log at offset %#x: %v", off, err)
		}
		if n := allocated(t, fd); n > 64<<10 {
			t.Fatalf("offset %#x: mapping a region and a log of 1 MiB allocated %d KiB of the file", off, n>>10)
		}
		if len(s.m.Mem) != 1<<20 || len(l.bits) != 1<<20 {
			t.Fatalf("offset %#x: region %d bytes, log %d", off, len(s.m.Mem), len(l.bits))
		}
		s.m.Mem[0], s.m.Mem[1<<20-1] = 0xa5, 0x5a
		l.mark(0, 1)                 // bit 0 of the log's first byte
		l.mark((8<<20-1)*logPage, 1) // bit 7 of its last
		var b [2]byte
		if _, err := unix.Pread(fd, b[:1], int64(off)); err != nil || b[0] != 0xa5|1 {
			t.Fatalf("offset %#x: first byte in the file %#x, %v", off, b[0], err)
		}
		if _, err := unix.Pread(fd, b[:1], int64(off+1<<20-1)); err != nil || b[0] != 0x5a|0x80 {
			t.Fatalf("offset %#x: last byte in the file %#x, %v", off, b[0], err)
		}
		if n := allocated(t, fd); n > 64<<10 {
			t.Fatalf("offset %#x: %d KiB allocated after touching two pages", off, n>>10)
		}
		if mapsOf(t, name) == 0 {
			t.Fatal("mapping not found in /proc/self/maps")
		}
		s.m.Unmap()
		l.unmap()
		if n := mapsOf(t, name); n != 0 {
			t.Fatalf("offset %#x: %d mappings left after Unmap", off, n)
		}
	}
}

// TestMapRegionHugetlb: a region of a hugetlbfs file is mapped from the huge page
// that holds its offset (mmap refuses an offset that is only 4 KiB-aligned there).
func TestMapRegionHugetlb(t *testing.T) {
	const huge = 2 << 20
	var fd int
	testenv.NeedFeature(t, "hugetlbfs memfd of 2 MiB pages", func() error {
		var err error
		fd, err = unix.MemfdCreate("vhost-huge", unix.MFD_CLOEXEC|unix.MFD_HUGETLB|unix.MFD_HUGE_2MB)
		if err == nil {
			if err = unix.Ftruncate(fd, 3*huge); err != nil {
				unix.Close(fd)
			}
		}
		return err
	})
	defer unix.Close(fd)
	for _, off := range []uint64{huge + 4096, huge + 100, 2 * huge} {
		s, err := mapRegion(memRegion{GuestAddr: 0x100000, Size: 4096, UserAddr: 0x7f0000000000, MmapOffset: off}, fd)
		if err != nil {
			t.Fatalf("offset %#x: %v", off, err)
		}
		s.m.Mem[0] = byte(off)
		var b [1]byte
		_, err = unix.Pread(fd, b[:], int64(off))
		s.m.Unmap()
		if err != nil || b[0] != byte(off) {
			t.Fatalf("offset %#x: byte in the file %#x, %v", off, b[0], err)
		}
	}
}

// TestGuestMemoryCap: a front-end chooses the size of every region, and a sparse
// memfd of any size costs it nothing. Each region the back-end maps takes that much
// of its address space (128 TiB on x86-64): a few regions of tens of TiB would leave
// the Go runtime none to grow its heap in, and it would abort the whole process.
// The regions' total is capped (Options.MaxGuestMemory, 1 TiB by default): a table,
// or an ADD_MEM_REG, beyond it is refused and maps nothing.
func TestGuestMemoryCap(t *testing.T) {
	const name = "vhost-cap"
	const tib = 1 << 40
	_, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	big := sparseMemfd(t, name, 2*tib)
	table := func(sizes ...uint64) []byte {
		p := make([]byte, sizeMemTable+len(sizes)*regionSize)
		le.PutUint32(p, uint32(len(sizes)))
		gpa, uva := uint64(0), uint64(0x100000000)
		for i, s := range sizes {
			encodeRegion(p[sizeMemTable+i*regionSize:], memRegion{GuestAddr: gpa, Size: s, UserAddr: uva})
			gpa, uva = gpa+s, uva+s
		}
		return p
	}
	fds := func(n int) []int {
		out := make([]int, n)
		for i := range out {
			out[i] = dup(t, big)
		}
		return out
	}
	for _, sizes := range [][]uint64{{tib + 4096}, {tib / 2, tib / 2, 4096}, {2 * tib}} {
		if err := f.send(ReqSetMemTable, table(sizes...), true, fds(len(sizes))...); !errors.Is(err, errNack) {
			t.Errorf("memory table of %#x: %v, want a nack", sizes, err)
		}
		if n := mapsOf(t, name); n != 0 {
			t.Fatalf("memory table of %#x: %d mappings of it left", sizes, n)
		}
	}
	// Up to the cap is fine; a region more through ADD_MEM_REG is not.
	f.must(ReqSetMemTable, table(tib/2, tib/2), fds(2)...)
	reg := make([]byte, sizeMemReg)
	encodeRegion(reg[8:], memRegion{GuestAddr: tib, Size: 4096, UserAddr: 0x100000000 + tib})
	if err := f.send(ReqAddMemReg, reg, true, dup(t, big)); !errors.Is(err, errNack) {
		t.Errorf("ADD_MEM_REG past the cap: %v, want a nack", err)
	}
	if n := mapsOf(t, name); n != 2 {
		t.Errorf("%d mappings of the memory, want the table's 2", n)
	}
	// A back-end configured for bigger guests takes them.
	_, path2 := testBackend(t, func(o *Options) { o.MaxGuestMemory = 4 * tib })
	f2 := newFakeFront(t, path2)
	f2.negotiate(FeatureVersion1)
	f2.must(ReqSetMemTable, table(2*tib), fds(1)...)
}

// TestNumAfterKick: a ring whose SET_VRING_NUM comes after its kick, call, enable
// and addresses starts when the size comes, as TestAddrAfterKick's ring does when
// its addresses come last: the spec starts a ring at its kick (vhost-user.rst, "Ring
// states"), and it is ready only now. A ring GET_VRING_BASE stopped still waits for
// a new kick, whatever size it is given.
func TestNumAfterKick(t *testing.T) {
	for _, packed := range []bool{false, true} {
		b, path := testBackend(t, nil)
		f := newFakeFront(t, path)
		f.packed, f.numLast = packed, true
		feat := uint64(FeatureVersion1)
		if packed {
			feat |= FeatureRingPacked
		}
		f.negotiate(feat)
		f.setupQueue(0, 256)
		if !b.Port(0).TxReady() {
			t.Fatalf("packed %v: ring not running after its size came last", packed)
		}
		f.get(ReqGetVringBase, stateB(0, 0))
		f.must(ReqSetVringNum, stateB(0, 128))
		if b.Port(0).TxReady() {
			t.Fatalf("packed %v: a new size started a ring GET_VRING_BASE stopped", packed)
		}
	}
}
