package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// Sentinel errors, usable with errors.Is.
var (
	ErrNotSupported  = errors.New("vfio: not supported by this kernel")
	ErrNotViable     = errors.New("vfio: IOMMU group not viable (a device in it is bound to a host driver)")
	ErrNoIOMMU       = errors.New("vfio: device has no IOMMU group")
	ErrBadRegion     = errors.New("vfio: region out of range or not accessible")
	ErrIOVAExhausted = errors.New("vfio: IOVA space exhausted")
	ErrReserved      = errors.New("vfio: IOVA range reserved by a group's IOMMU")
	ErrClosed        = errors.New("vfio: closed")
	ErrBadAddress    = errors.New("vfio: not a PCI address (DDDD:BB:DD.F)")
)

// Container is an open /dev/vfio/vfio: one IOMMU context (address space) shared by the
// groups attached to it. Safe for concurrent use.
type Container struct {
	f     *os.File
	mu    sync.Mutex
	iommu int
	iova  iovaAlloc
	maps  map[uint64]uint64 // iova → size of live DMA mappings
	resv  []iovaSpan        // reserved regions of the groups attached (sysfs), for old kernels
}

var sysIOMMUGroups = "/sys/kernel/iommu_groups"

// OpenContainer opens a new VFIO container and checks the API version.
func OpenContainer() (*Container, error) {
	f, err := os.OpenFile("/dev/vfio/vfio", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	v, err := ioctlInt(f.Fd(), ioGetAPIVersion, 0)
	if err != nil {
		f.Close()
		return nil, os.NewSyscallError("VFIO_GET_API_VERSION", err)
	}
	if v != apiVersion {
		f.Close()
		return nil, fmt.Errorf("%w: VFIO API version %d", ErrNotSupported, v)
	}
	return &Container{f: f, maps: make(map[uint64]uint64)}, nil
}

// HasExtension reports whether the container supports an IOMMU type (IOMMUType1, ...).
func (c *Container) HasExtension(ext int) bool {
	r, err := ioctlInt(c.f.Fd(), ioCheckExtension, uintptr(ext))
	return err == nil && r > 0
}

// IOMMU returns the IOMMU type set on the container, or 0 before the first group.
func (c *Container) IOMMU() int { c.mu.Lock(); defer c.mu.Unlock(); return c.iommu }

// attach adds g to c and, for the first group, selects the IOMMU type: type1v2, then
// type1, then no-IOMMU (only offered for noiommu groups). Every group may bring
// reserved regions of its own (an RMRR of its device, another IOMMU's MSI window), so
// the usable IOVA ranges are read again after each attach and the allocator narrowed
// to them; a group whose reserved regions cover a live DMA mapping is detached again
// with ErrReserved (type1 refuses such an attach itself on kernels that check).
func (c *Container) attach(g *Group) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	fd := int32(c.f.Fd())
	if _, err := ioctl(g.f.Fd(), ioGroupSetContainer, u32s(uint32(fd))); err != nil {
		return os.NewSyscallError("VFIO_GROUP_SET_CONTAINER", err)
	}
	if c.iommu == IOMMUNone {
		return nil
	}
	resv := groupReserved(g.ID)
	c.resv = append(c.resv, resv...)
	if c.iommu != 0 {
		pg, aperture, usable := c.iommuInfo()
		if err := c.iova.restrict(pg, aperture, usable, c.maps); err != nil {
			ioctl(g.f.Fd(), ioGroupUnsetContainer, nil)
			c.resv = c.resv[:len(c.resv)-len(resv)]
			return fmt.Errorf("group %d: %w", g.ID, err)
		}
		return nil
	}
	for _, t := range []int{IOMMUType1v2, IOMMUType1, IOMMUNone} {
		if !c.HasExtension(t) {
			continue
		}
		if _, err := ioctlInt(c.f.Fd(), ioSetIOMMU, uintptr(t)); err != nil {
			continue
		}
		c.iommu = t
		if t != IOMMUNone {
			pg, aperture, usable := c.iommuInfo()
			c.iova = newIOVAAlloc(pg, aperture, usable)
		}
		return nil
	}
	ioctl(g.f.Fd(), ioGroupUnsetContainer, nil)
	c.resv = c.resv[:len(c.resv)-len(resv)]
	return fmt.Errorf("%w: no usable IOMMU type", ErrNotSupported)
}

// iommuInfo returns the smallest supported IOMMU page size (4 KiB if unknown), the
// top of the usable IOVA range (a conservative 39-bit space: every VT-d supports it)
// and the ranges the kernel accepts mappings in, for every group attached so far.
// Kernels before 5.4 do not report the ranges: then they are what the reserved
// regions of the groups (c.resv) leave, nil if there were none to read.
func (c *Container) iommuInfo() (uint64, uint64, []iovaSpan) {
	fallback := func() []iovaSpan {
		if c.resv == nil {
			return nil
		}
		return usableOutside(c.resv)
	}
	b := make([]byte, iommuInfoSize)
	le.PutUint32(b, iommuInfoSize)
	pg := uint64(4096)
	if _, err := ioctl(c.f.Fd(), ioIOMMUGetInfo, b); err != nil {
		return pg, 1 << 39, fallback()
	}
	if sizes := le.Uint64(b[8:]); sizes != 0 {
		pg = sizes & -sizes
	}
	// The ranges come in a capability chain, for which the kernel asks (argsz) for a
	// larger buffer than the struct.
	var usable []iovaSpan
	if n := le.Uint32(b); le.Uint32(b[4:])&iommuInfoCaps != 0 && n > iommuInfoSize && n <= 1<<20 {
		b = make([]byte, n)
		le.PutUint32(b, n)
		if _, err := ioctl(c.f.Fd(), ioIOMMUGetInfo, b); err == nil {
			usable = iovaRanges(b)
		}
	}
	if usable == nil {
		usable = fallback()
	}
	return pg, 1 << 39, usable
}

// groupReserved returns the reserved regions of IOMMU group id that
// /sys/kernel/iommu_groups/<id>/reserved_regions lists, nil if it cannot be read.
func groupReserved(id int) []iovaSpan {
	b, err := os.ReadFile(filepath.Join(sysIOMMUGroups, strconv.Itoa(id), "reserved_regions"))
	if err != nil {
		return nil
	}
	r, err := reservedRegions(b)
	if err != nil {
		return nil
	}
	return r
}

// MapDMA makes mem readable and writable by the devices of the container at a new
// IOVA, which it returns. mem must be page-aligned, a multiple of the IOMMU page size
// and stay mapped until UnmapDMA. With no-IOMMU there is no translation: MapDMA fails
// with ErrNotSupported (the caller must use physical addresses, which dpkit does not).
func (c *Container) MapDMA(mem []byte) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.iommu == 0 || c.iommu == IOMMUNone {
		return 0, fmt.Errorf("%w: DMA mapping needs a type1 IOMMU", ErrNotSupported)
	}
	iova, err := c.iova.alloc(uint64(len(mem)))
	if err != nil {
		return 0, err
	}
	if err := c.mapAt(mem, iova); err != nil {
		c.iova.free(iova, uint64(len(mem)))
		return 0, err
	}
	return iova, nil
}

func (c *Container) mapAt(mem []byte, iova uint64) error {
	b := make([]byte, 32)
	le.PutUint32(b[0:], 32)
	le.PutUint32(b[4:], dmaMapRead|dmaMapWrite)
	le.PutUint64(b[8:], addrOf(mem))
	le.PutUint64(b[16:], iova)
	le.PutUint64(b[24:], uint64(len(mem)))
	if _, err := ioctl(c.f.Fd(), ioIOMMUMapDMA, b); err != nil {
		return os.NewSyscallError("VFIO_IOMMU_MAP_DMA", err)
	}
	c.maps[iova] = uint64(len(mem))
	return nil
}

// UnmapDMA removes the mapping MapDMA returned iova for. Stop (reset) every device
// that may still use it first.
func (c *Container) UnmapDMA(iova uint64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	size, ok := c.maps[iova]
	if !ok {
		return fmt.Errorf("vfio: UnmapDMA: no mapping at IOVA %#x", iova)
	}
	b := make([]byte, 24)
	le.PutUint32(b[0:], 24)
	le.PutUint64(b[8:], iova)
	le.PutUint64(b[16:], size)
	if _, err := ioctl(c.f.Fd(), ioIOMMUUnmapDMA, b); err != nil {
		return os.NewSyscallError("VFIO_IOMMU_UNMAP_DMA", err)
	}
	if got := le.Uint64(b[16:]); got != size { // the kernel writes back what it unmapped
		return fmt.Errorf("vfio: VFIO_IOMMU_UNMAP_DMA at IOVA %#x unmapped %#x of %#x bytes", iova, got, size)
	}
	delete(c.maps, iova)
	c.iova.free(iova, size)
	return nil
}

// Close releases the container. Live DMA mappings go with it.
func (c *Container) Close() error {
	c.mu.Lock() // not under a MapDMA or UnmapDMA, which use the descriptor
	defer c.mu.Unlock()
	return c.f.Close()
}

// Group is an open IOMMU group (/dev/vfio/N). Owned by one goroutine.
type Group struct {
	f  *os.File
	ID int
}

// GroupOf returns the IOMMU group number of the PCI device bdf ("0000:00:04.0") and
// whether it is a no-IOMMU group.
func GroupOf(bdf string) (id int, noiommu bool, err error) {
	if err := CheckAddress(bdf); err != nil {
		return 0, false, err
	}
	link, err := os.Readlink(filepath.Join(sysPCI, "devices", bdf, "iommu_group"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return 0, false, fmt.Errorf("%w: %s", ErrNoIOMMU, bdf)
		}
		return 0, false, err
	}
	id, err = strconv.Atoi(filepath.Base(link))
	if err != nil {
		return 0, false, fmt.Errorf("vfio: iommu_group link %q: %w", link, err)
	}
	_, e := os.Stat(filepath.Join(sysPCI, "devices", bdf, "iommu_group", "name"))
	if e == nil {
		if b, _ := os.ReadFile(filepath.Join(sysPCI, "devices", bdf, "iommu_group", "name")); string(b) == "vfio-noiommu\n" {
			noiommu = true
		}
	}
	return id, noiommu, nil
}

// OpenGroup opens IOMMU group id, checks it is viable and attaches it to c.
func OpenGroup(c *Container, id int, noiommu bool) (*Group, error) {
	name := "/dev/vfio/" + strconv.Itoa(id)
	if noiommu {
		name = "/dev/vfio/noiommu-" + strconv.Itoa(id)
	}
	f, err := os.OpenFile(name, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	st := u32s(8, 0)
	if _, err := ioctl(f.Fd(), ioGroupGetStatus, st); err != nil {
		f.Close()
		return nil, os.NewSyscallError("VFIO_GROUP_GET_STATUS", err)
	}
	if le.Uint32(st[4:])&groupFlagsViable == 0 {
		f.Close()
		return nil, fmt.Errorf("%w: group %d", ErrNotViable, id)
	}
	g := &Group{f: f, ID: id}
	if err := c.attach(g); err != nil {
		f.Close()
		return nil, err
	}
	return g, nil
}

// Close detaches the group from its container and closes it.
func (g *Group) Close() error {
	ioctl(g.f.Fd(), ioGroupUnsetContainer, nil)
	return g.f.Close()
}
