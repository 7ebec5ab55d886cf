package vfio

import (
	"cmp"
	"fmt"
	"os"
	"slices"

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
	// Areas are the only parts of an Mmap region that may be mmapped, when the kernel
	// says so (VFIO_REGION_INFO_CAP_SPARSE_MMAP: the pages of a BAR outside its MSI-X
	// table on kernels before 4.16, and some variant and mdev drivers); ascending,
	// disjoint, whole pages. Nil: all of it.
	Areas []Area
}

// Area is a part of a region, Size bytes at Offset from its start.
type Area struct{ Offset, Size uint64 }

// Mappable reports whether [off, off+n) of r lies in memory MapRegion maps (one of
// its Areas, or anywhere when it has none); the rest is reachable by ReadRegion and
// WriteRegion only.
func (r Region) Mappable(off, n uint64) bool {
	if !r.Mmap || off > r.Size || n > r.Size-off {
		return false
	}
	if r.Areas == nil {
		return true
	}
	for _, a := range r.Areas {
		if off >= a.Offset && off-a.Offset <= a.Size && n <= a.Size-(off-a.Offset) {
			return true
		}
	}
	return false
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
		d.Regions = append(d.Regions, d.regionInfo(i))
	}
	return d, nil
}

// regionInfo reads region i's VFIO_DEVICE_GET_REGION_INFO, and again with the larger
// buffer the kernel asks for when the region has capabilities.
func (d *Device) regionInfo(i int) Region {
	b := make([]byte, regionInfoSize)
	le.PutUint32(b[0:], regionInfoSize)
	le.PutUint32(b[8:], uint32(i))
	if _, err := ioctl(d.f.Fd(), ioDeviceGetRegion, b); err != nil {
		// Regions a device lacks (VGA on a NIC) fail with EINVAL: keep a zero entry.
		return Region{Index: i}
	}
	if n := le.Uint32(b); le.Uint32(b[4:])&regionFlagCaps != 0 && n > regionInfoSize && n <= 1<<16 {
		c := make([]byte, n)
		le.PutUint32(c[0:], n)
		le.PutUint32(c[8:], uint32(i))
		if _, err := ioctl(d.f.Fd(), ioDeviceGetRegion, c); err == nil {
			b = c
		}
	}
	return regionOf(i, b)
}

// regionOf decodes a VFIO_DEVICE_GET_REGION_INFO reply b (struct vfio_region_info and
// its capability chain) for region i. The reply comes from the kernel but is checked
// like outside input: a malformed sparse-mmap capability leaves the region not
// mmappable (pread/pwrite still work), never a panic.
func regionOf(i int, b []byte) Region {
	if len(b) < regionInfoSize {
		return Region{Index: i}
	}
	fl := le.Uint32(b[4:])
	r := Region{
		Index: i, Size: le.Uint64(b[16:]), Offset: le.Uint64(b[24:]),
		Read: fl&regionFlagRead != 0, Write: fl&regionFlagWrite != 0, Mmap: fl&regionFlagMmap != 0,
	}
	if r.Mmap {
		areas, found, ok := sparseAreas(b, r.Size)
		switch {
		case !ok:
			r.Mmap = false
		case found && len(areas) == 0:
			r.Mmap = false
		case found:
			r.Areas = areas
		}
	}
	return r
}

// sparseAreas returns the areas of the VFIO_REGION_INFO_CAP_SPARSE_MMAP capability in
// region info reply b of a region of size bytes, cut to whole pages (mmap maps no
// less), sorted; found is false if b has no such capability, ok false if its chain or
// the capability is malformed (out of bounds, looping, areas outside the region or
// overlapping).
func sparseAreas(b []byte, size uint64) (areas []Area, found, ok bool) {
	if len(b) < regionInfoSize || le.Uint32(b[4:])&regionFlagCaps == 0 {
		return nil, false, true
	}
	page := uint64(os.Getpagesize())
	off := uint64(le.Uint32(b[12:]))
	for ttl := 64; off != 0; ttl-- {
		if ttl == 0 || off < regionInfoSize || off > uint64(len(b)) || uint64(len(b))-off < 8 {
			return nil, false, false
		}
		if le.Uint16(b[off:]) != capSparseMmap {
			off = uint64(le.Uint32(b[off+4:]))
			continue
		}
		if uint64(len(b))-off < 16 {
			return nil, false, false
		}
		n := uint64(le.Uint32(b[off+8:]))
		if n > (uint64(len(b))-off-16)/16 {
			return nil, false, false
		}
		areas = make([]Area, 0, n)
		for i := range n {
			p := off + 16 + 16*i
			a := Area{le.Uint64(b[p:]), le.Uint64(b[p+8:])}
			if a.Offset > size || a.Size > size-a.Offset {
				return nil, false, false
			}
			// Whole pages: the end is at most size, so neither rounding overflows
			// unless size is within a page of 2^64, which no region is.
			first := (a.Offset + page - 1) &^ (page - 1)
			end := (a.Offset + a.Size) &^ (page - 1)
			if first < a.Offset || first >= end {
				continue
			}
			areas = append(areas, Area{first, end - first})
		}
		slices.SortFunc(areas, func(x, y Area) int { return cmp.Compare(x.Offset, y.Offset) })
		for i := 1; i < len(areas); i++ {
			if areas[i].Offset < areas[i-1].Offset+areas[i-1].Size {
				return nil, false, false
			}
		}
		return areas, true, true
	}
	return nil, false, true
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

// MapRegion mmaps an mmappable region (a memory BAR) and returns it. The memory
// is device registers: access it only with fixed-size loads and stores of the width
// the device defines (see the mmio helpers of the driver). It stays mapped until Close.
// When the kernel allows only some Areas of the region to be mmapped, the slice still
// spans the whole region but only those areas are mapped: the rest is inaccessible
// memory (a fault, which kills the process, on any access), so check a window with
// Region.Mappable before using it.
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
	var m []byte
	if r.Areas == nil {
		m, err = unix.Mmap(int(d.f.Fd()), int64(r.Offset), int(r.Size), prot, unix.MAP_SHARED)
	} else {
		m, err = mmapAreas(int(d.f.Fd()), r, prot)
	}
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
	if p.Group != nil { // none for NewFilePCI
		p.Group.Close()
	}
	if p.Container.f != nil {
		p.Container.Close()
	}
	return err
}
