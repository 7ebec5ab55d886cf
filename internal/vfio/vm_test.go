package vfio

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/vmtest"
	"golang.org/x/sys/unix"
)

// TestVM runs the guest tests of this package in a QEMU guest with an Intel IOMMU and
// two modern virtio-net devices.
func TestVM(t *testing.T) {
	vmtest.Run(t, vmtest.Config{NICs: []vmtest.NIC{{Hub: 0}, {Hub: 0, Packed: true}}})
}

func guestNICs(t *testing.T) []string {
	devs, err := Find(0x1af4, 0x1041)
	if err != nil || len(devs) != 2 {
		t.Fatalf("virtio-net devices: %v %v", devs, err)
	}
	return devs
}

func TestGuestBindOpenDMA(t *testing.T) {
	vmtest.NeedGuest(t)
	bdf := guestNICs(t)[0]
	if d, _ := Driver(bdf); d != "virtio-pci" {
		t.Fatalf("%s starts bound to %q, want virtio-pci", bdf, d)
	}
	netBefore, _ := os.ReadDir(filepath.Join(sysPCI, "devices", bdf, "virtio0", "net"))
	if len(netBefore) != 1 {
		t.Logf("note: virtio0/net has %d entries", len(netBefore))
	}
	if err := Bind(bdf, "vfio-pci"); err != nil {
		t.Fatal(err)
	}
	p, err := Open(bdf)
	if err != nil {
		t.Fatal(err)
	}
	if p.Container.IOMMU() != IOMMUType1v2 {
		t.Errorf("IOMMU type %d, want type1v2", p.Container.IOMMU())
	}
	// A second open of the same group must fail (the group is busy), not hang.
	if _, err := Open(bdf); err == nil {
		t.Error("second Open of the same group succeeded")
	}

	cfg, err := p.Config(256)
	if err != nil {
		t.Fatal(err)
	}
	if le.Uint16(cfg[0:]) != 0x1af4 || le.Uint16(cfg[2:]) != 0x1041 {
		t.Fatalf("config space IDs %04x:%04x", le.Uint16(cfg[0:]), le.Uint16(cfg[2:]))
	}
	caps, err := Capabilities(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var vendorCaps, msix int
	var cfgTypes []byte
	for _, c := range caps {
		switch c.ID {
		case CapVendor:
			vendorCaps++
			cfgTypes = append(cfgTypes, cfg[c.Offset+3])
		case CapMSIX:
			msix++
		}
	}
	// VIRTIO 1.2 §4.1.4: common, notify, ISR, device and PCI-cfg access capabilities.
	if vendorCaps < 4 || msix != 1 {
		t.Fatalf("caps %+v: %d virtio, %d MSI-X", caps, vendorCaps, msix)
	}
	t.Logf("virtio cfg types %v", cfgTypes)

	// Map the BAR holding the virtio structures (QEMU: BAR 4, 64-bit memory) and
	// read device_feature_select/device_feature through the common config.
	var bar = -1
	for _, c := range caps {
		if c.ID == CapVendor && cfg[c.Offset+3] == 1 { // VIRTIO_PCI_CAP_COMMON_CFG
			bar = int(cfg[c.Offset+4])
		}
	}
	if bar < 0 {
		t.Fatal("no common cfg capability")
	}
	m, err := p.MapRegion(bar)
	if err != nil {
		t.Fatal(err)
	}
	if len(m) == 0 {
		t.Fatal("empty BAR")
	}
	// pread/pwrite path on the same BAR, as used for I/O-port BARs.
	b := make([]byte, 4)
	if err := p.ReadRegion(bar, 0, b); err != nil {
		t.Fatal(err)
	}
	if err := p.ReadRegion(bar, p.Regions[bar].Size, b); !errors.Is(err, ErrBadRegion) {
		t.Errorf("read past the BAR: %v", err)
	}

	// The kernel reported the usable IOVA ranges, the x86 MSI window outside them.
	p.Container.mu.Lock()
	usable := p.Container.iova.usable
	p.Container.mu.Unlock()
	if len(usable) == 0 {
		t.Error("no usable IOVA ranges read from VFIO_IOMMU_GET_INFO")
	}
	for _, u := range usable {
		if u.first <= 0xfee00000 && 0xfee00000 <= u.last {
			t.Errorf("usable IOVA range %#x-%#x holds the MSI window", u.first, u.last)
		}
	}
	t.Logf("usable IOVA ranges %x", usable)

	// DMA map and unmap 2 MiB and a 4 KiB page; IOVAs must differ and be aligned.
	mem, err := unix.Mmap(-1, 0, 2<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_POPULATE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	iova1, err := p.Container.MapDMA(mem)
	if err != nil {
		t.Fatal(err)
	}
	iova2, err := p.Container.MapDMA(mem[:4096])
	if err != nil {
		t.Fatal(err)
	}
	if iova1 == 0 || iova1%(2<<20) != 0 || iova2 == iova1 {
		t.Errorf("IOVAs %#x %#x", iova1, iova2)
	}
	if err := p.Container.UnmapDMA(iova2); err != nil {
		t.Fatal(err)
	}
	if err := p.Container.UnmapDMA(iova2); err == nil {
		t.Error("double unmap succeeded")
	}

	// MSI-X: route vector 0 and 1 to eventfds, then disable.
	n, err := p.IRQCount(IRQMSIX)
	if err != nil || n < 2 {
		t.Fatalf("MSI-X count %d %v", n, err)
	}
	e0, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	e1, _ := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	defer unix.Close(e0)
	defer unix.Close(e1)
	if err := p.SetIRQs(IRQMSIX, 0, []int{e0, e1}); err != nil {
		t.Fatal(err)
	}
	if err := p.DisableIRQs(IRQMSIX); err != nil {
		t.Fatal(err)
	}
	if err := p.SetBusMaster(true); err != nil {
		t.Fatal(err)
	}
	if err := p.Container.UnmapDMA(iova1); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// Give the device back: virtio-pci must claim it and a net interface reappear.
	drv, err := Unbind(bdf)
	if err != nil || drv != "virtio-pci" {
		t.Fatalf("Unbind: driver %q, %v", drv, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m, _ := filepath.Glob(filepath.Join(sysPCI, "devices", bdf, "virtio*", "net", "*"))
		if len(m) == 1 {
			t.Logf("back to the kernel as %s", filepath.Base(m[0]))
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no net interface after giving the device back to virtio-pci")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
