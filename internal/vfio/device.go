package vfio

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Region describes one device region (a BAR, the ROM, PCI config space).
type Region struct {
	Index  int
	Size   uint64
	Offset uint64 // offset of the region in the device fd
	Read   bool
	Write  bool
	Mmap   bool // may be mmapped (memory BARs); I/O-port BARs are pread/pwrite only
}

// Device is an open VFIO device fd. Config space and BAR access through it are safe
// for concurrent use (pread/pwrite); mapped BARs are raw memory, see MapRegion.
type Device struct {
	f       *os.File
	BDF     string
	Regions []Region
	NumIRQs int
	group   *Group
	maps    [][]byte
}

// OpenDevice opens device bdf in group g and reads its region table.
func OpenDevice(g *Group, bdf string) (*Device, error) {
	name := append([]byte(bdf), 0)
	fd, err := ioctl(g.f.Fd(), ioGroupGetDeviceFD, name)
	if err != nil {
		return nil, os.NewSyscallError("VFIO_GROUP_GET_DEVICE_FD", err)
	}
	d := &Device{f: os.NewFile(uintptr(fd), "vfio:"+bdf), BDF: bdf, group: g}
	info := u32s(16, 0, 0, 0)
	if _, err := ioctl(d.f.Fd(), ioDeviceGetInfo, info); err != nil {
		d.f.Close()
		return nil, os.NewSyscallError("VFIO_DEVICE_GET_INFO", err)
	}
	n := int(le.Uint32(info[8:]))
	d.NumIRQs = int(le.Uint32(info[12:]))
	if n > 64 {
		n = 64
	}
	for i := 0; i < n; i++ {
		b := make([]byte, 32)
		le.PutUint32(b[0:], 32)
		le.PutUint32(b[8:], uint32(i))
		if _, err := ioctl(d.f.Fd(), ioDeviceGetRegion, b); err != nil {
			// Regions a device lacks (VGA on a NIC) fail with EINVAL: keep a zero entry.
			d.Regions = append(d.Regions, Region{Index: i})
			continue
		}
		fl := le.Uint32(b[4:])
		d.Regions = append(d.Regions, Region{
			Index: i, Size: le.Uint64(b[16:]), Offset: le.Uint64(b[24:]),
			Read: fl&regionFlagRead != 0, Write: fl&regionFlagWrite != 0, Mmap: fl&regionFlagMmap != 0,
		})
	}
	return d, nil
}

func (d *Device) region(i int, off, n uint64) (Region, error) {
	if i < 0 || i >= len(d.Regions) {
		return Region{}, fmt.Errorf("%w: region %d", ErrBadRegion, i)
	}
	r := d.Regions[i]
	if r.Size == 0 || off > r.Size || n > r.Size-off {
		return Region{}, fmt.Errorf("%w: region %d [%#x+%d) of size %#x", ErrBadRegion, i, off, n, r.Size)
	}
	return r, nil
}

// ReadRegion reads len(b) bytes at off in region i (pread: works for I/O-port BARs
// and config space).
func (d *Device) ReadRegion(i int, off uint64, b []byte) error {
	r, err := d.region(i, off, uint64(len(b)))
	if err != nil {
		return err
	}
	if _, err := d.f.ReadAt(b, int64(r.Offset+off)); err != nil {
		return fmt.Errorf("vfio: %s region %d read at %#x: %w", d.BDF, i, off, err)
	}
	return nil
}

// WriteRegion writes b at off in region i (pwrite).
func (d *Device) WriteRegion(i int, off uint64, b []byte) error {
	r, err := d.region(i, off, uint64(len(b)))
	if err != nil {
		return err
	}
	if _, err := d.f.WriteAt(b, int64(r.Offset+off)); err != nil {
		return fmt.Errorf("vfio: %s region %d write at %#x: %w", d.BDF, i, off, err)
	}
	return nil
}

// Config reads the first n bytes of PCI config space (256 or 4096).
func (d *Device) Config(n int) ([]byte, error) {
	r, err := d.region(RegionConfig, 0, 0)
	if err != nil {
		return nil, err
	}
	if uint64(n) > r.Size {
		n = int(r.Size)
	}
	b := make([]byte, n)
	return b, d.ReadRegion(RegionConfig, 0, b)
}

// SetBusMaster sets (or clears) the Bus Master Enable bit of the PCI command register,
// which a device needs to issue DMA.
func (d *Device) SetBusMaster(on bool) error {
	b := make([]byte, 2)
	if err := d.ReadRegion(RegionConfig, 4, b); err != nil {
		return err
	}
	cmd := le.Uint16(b)
	if on {
		cmd |= 1 << 2
	} else {
		cmd &^= 1 << 2
	}
	le.PutUint16(b, cmd)
	return d.WriteRegion(RegionConfig, 4, b)
}

// MapRegion mmaps a whole mmappable region (a memory BAR) and returns it. The memory
// is device registers: access it only with fixed-size loads and stores of the width
// the device defines (see the mmio helpers of the driver). It stays mapped until Close.
func (d *Device) MapRegion(i int) ([]byte, error) {
	r, err := d.region(i, 0, 0)
	if err != nil {
		return nil, err
	}
	if !r.Mmap {
		return nil, fmt.Errorf("%w: region %d cannot be mmapped", ErrBadRegion, i)
	}
	prot := 0
	if r.Read {
		prot |= unix.PROT_READ
	}
	if r.Write {
		prot |= unix.PROT_WRITE
	}
	m, err := unix.Mmap(int(d.f.Fd()), int64(r.Offset), int(r.Size), prot, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	d.maps = append(d.maps, m)
	return m, nil
}

// Reset issues VFIO_DEVICE_RESET (a function-level or bus reset when the device has
// one). Not every device supports it; virtio devices are reset through their status
// register instead.
func (d *Device) Reset() error {
	if _, err := ioctlInt(d.f.Fd(), ioDeviceReset, 0); err != nil {
		return os.NewSyscallError("VFIO_DEVICE_RESET", err)
	}
	return nil
}

// IRQCount returns how many interrupts index (IRQMSIX, ...) offers.
func (d *Device) IRQCount(index int) (int, error) {
	b := u32s(16, 0, uint32(index), 0)
	if _, err := ioctl(d.f.Fd(), ioDeviceGetIRQInfo, b); err != nil {
		return 0, os.NewSyscallError("VFIO_DEVICE_GET_IRQ_INFO", err)
	}
	return int(le.Uint32(b[12:])), nil
}

// SetIRQs routes interrupts start.. of index (IRQMSIX) to the eventfds fds; -1 leaves
// a vector unrouted. The kernel enables MSI-X in the device as a side effect.
func (d *Device) SetIRQs(index, start int, fds []int) error {
	b := u32s(uint32(20+4*len(fds)), irqSetDataEventfd|irqSetActionTrigger, uint32(index), uint32(start), uint32(len(fds)))
	b = append(b, make([]byte, 4*len(fds))...)
	for i, fd := range fds {
		le.PutUint32(b[20+4*i:], uint32(int32(fd)))
	}
	if _, err := ioctl(d.f.Fd(), ioDeviceSetIRQs, b); err != nil {
		return os.NewSyscallError("VFIO_DEVICE_SET_IRQS", err)
	}
	return nil
}

// DisableIRQs turns every interrupt of index off.
func (d *Device) DisableIRQs(index int) error {
	b := u32s(20, irqSetDataNone|irqSetActionTrigger, uint32(index), 0, 0)
	if _, err := ioctl(d.f.Fd(), ioDeviceSetIRQs, b); err != nil {
		return os.NewSyscallError("VFIO_DEVICE_SET_IRQS", err)
	}
	return nil
}

// Close unmaps the device's BARs and closes its fd.
func (d *Device) Close() error {
	for _, m := range d.maps {
		unix.Munmap(m)
	}
	d.maps = nil
	return d.f.Close()
}

// PCI is a device opened with its own container and group: what a single-NIC
// userspace driver needs. Owned by one goroutine except where noted.
type PCI struct {
	*Device
	Container *Container
	Group     *Group
}

// Open opens PCI device bdf, which must already be bound to vfio-pci (see Bind), in a
// new container.
func Open(bdf string) (*PCI, error) {
	id, noiommu, err := GroupOf(bdf)
	if err != nil {
		return nil, err
	}
	c, err := OpenContainer()
	if err != nil {
		return nil, err
	}
	g, err := OpenGroup(c, id, noiommu)
	if err != nil {
		c.Close()
		return nil, err
	}
	d, err := OpenDevice(g, bdf)
	if err != nil {
		g.Close()
		c.Close()
		return nil, err
	}
	return &PCI{Device: d, Container: c, Group: g}, nil
}

// Close closes the device, then the group, then the container (which drops any DMA
// mappings left). Reset the device first so it stops DMA.
func (p *PCI) Close() error {
	err := p.Device.Close()
	p.Group.Close()
	p.Container.Close()
	return err
}
