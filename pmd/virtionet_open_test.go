package pmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/vfio"
)

// fakeVFIOBar is where BAR 4 of a fakeVFIO device starts in its file, and its size:
// the capabilities of virtioTestConfig (common 0, ISR 0x1000, device 0x2000, notify
// 0x3000) lie in it.
const (
	fakeVFIOBar     = 4096
	fakeVFIOBarSize = 0x4000
)

// fakeVFIO makes OpenVirtioNet open, instead of a VFIO device, a memfd holding config
// space cfg (region 7) and BAR 4: registers read what was last written, so the device
// resets at once and never sets FEATURES_OK by itself. Without an IOMMU, opening fails
// at the pool's DMA mapping, after the BARs are mapped and the device was touched.
func fakeVFIO(t *testing.T, cfg []byte) {
	t.Helper()
	old := openVFIO
	t.Cleanup(func() { openVFIO = old })
	openVFIO = func(bdf string) (*vfio.PCI, error) {
		fd, err := unix.MemfdCreate("fakevfio", unix.MFD_CLOEXEC)
		if err != nil {
			return nil, err
		}
		f := os.NewFile(uintptr(fd), "fakevfio")
		if err := f.Truncate(fakeVFIOBar + fakeVFIOBarSize); err != nil {
			f.Close()
			return nil, err
		}
		if _, err := f.WriteAt(cfg, 0); err != nil {
			f.Close()
			return nil, err
		}
		regions := make([]vfio.Region, 8)
		for i := range regions {
			regions[i].Index = i
		}
		regions[4] = vfio.Region{Index: 4, Size: fakeVFIOBarSize, Offset: fakeVFIOBar, Read: true, Write: true, Mmap: true}
		regions[vfio.RegionConfig] = vfio.Region{Index: vfio.RegionConfig, Size: uint64(len(cfg)), Read: true, Write: true}
		return vfio.NewFilePCI(f, bdf, regions), nil
	}
}

// fdsAndMaps counts this process's open fds and its mappings of memfds.
func fdsAndMaps(t *testing.T) (fds, maps int) {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents), strings.Count(string(b), "memfd:fakevfio")
}

// openFake runs OpenVirtioNet on a fakeVFIO device, turning a panic into an error.
func openFake(t *testing.T, pool *Pool) (v *VirtioNet, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return OpenVirtioNet(VirtioNetOptions{PCI: "0000:00:04.0", Pool: pool, Timeout: 50e6})
}

// TestOpenVirtioNetFailCleansUp: an open that fails (here at the pool's DMA mapping,
// which the fake has no IOMMU for) leaves no fd, no BAR mapping and no frame behind.
func TestOpenVirtioNetFailCleansUp(t *testing.T) {
	pool, err := NewPool(PoolOptions{Frames: 256, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	fakeVFIO(t, virtioTestConfig())
	fds, maps := fdsAndMaps(t)
	v, err := openFake(t, pool)
	if v != nil || !errors.Is(err, vfio.ErrNotSupported) {
		t.Fatalf("OpenVirtioNet: %v, %v; want ErrNotSupported", v, err)
	}
	if f, m := fdsAndMaps(t); f != fds || m != maps {
		t.Errorf("after the failed open: %d fds and %d BAR mappings, want %d and %d", f, m, fds, maps)
	}
	if s := pool.Stats(); s.Free != s.Frames {
		t.Errorf("%d of %d frames free", s.Free, s.Frames)
	}
}

// TestOpenVirtioNetShortCommonWindow: a device whose common configuration capability
// is shorter than the registers (length 0x10, under device_status at 0x14) is refused
// with ErrNotVirtioNet, and nothing is left open. Before, open kept the short window as
// v.common before checking its size, and OpenVirtioNet's error path reset the device
// through it: the write of device_status ran past the window and panicked. The same
// with the notify window outside its BAR, which failed before the size check.
func TestOpenVirtioNetShortCommonWindow(t *testing.T) {
	pool, err := NewPool(PoolOptions{Frames: 256, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, notifyOff := range []uint32{0x3000, 0x10000} {
		cfg := virtioTestConfig()
		put32(cfg[0x40+0x18*3+12:], 0x10)     // common: length 0x10
		put32(cfg[0x40+0x18*0+8:], notifyOff) // notify: offset
		fakeVFIO(t, cfg)
		fds, maps := fdsAndMaps(t)
		v, err := openFake(t, pool)
		if v != nil || !errors.Is(err, ErrNotVirtioNet) {
			t.Errorf("notify at %#x: OpenVirtioNet: %v, %v; want ErrNotVirtioNet", notifyOff, v, err)
		}
		if f, m := fdsAndMaps(t); f != fds || m != maps {
			t.Errorf("notify at %#x: after the failed open: %d fds and %d BAR mappings, want %d and %d", notifyOff, f, m, fds, maps)
		}
	}
}

// TestOpenVirtioNetShortConfig: a config space region shorter than the 64-byte header
// (its size comes from the VFIO driver's region info) is refused with ErrNotVirtioNet.
// Before, open read the vendor and device IDs at bytes 0..3 unchecked and a region of
// 2 bytes panicked it.
func TestOpenVirtioNetShortConfig(t *testing.T) {
	pool, err := NewPool(PoolOptions{Frames: 16, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, n := range []int{2, 63} {
		fakeVFIO(t, virtioTestConfig()[:n])
		if v, err := openFake(t, pool); v != nil || !errors.Is(err, ErrNotVirtioNet) {
			t.Errorf("config space of %d bytes: %v, %v; want ErrNotVirtioNet", n, v, err)
		}
	}
}
