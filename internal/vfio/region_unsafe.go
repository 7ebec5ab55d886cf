package vfio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// mmapAreas maps the Areas of region r of device fd fd at their offsets in an
// inaccessible reservation of the region's size, which it returns (one munmap of it
// removes them all).
func mmapAreas(fd int, r Region, prot int) ([]byte, error) {
	m, err := unix.Mmap(-1, 0, int(r.Size), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, err
	}
	for _, a := range r.Areas {
		if a.Size == 0 || a.Offset > r.Size || a.Size > r.Size-a.Offset {
			unix.Munmap(m)
			return nil, unix.EINVAL
		}
		at := unsafe.Pointer(&m[a.Offset:][:a.Size][0]) // checked against the reservation
		if _, err := unix.MmapPtr(fd, int64(r.Offset+a.Offset), at, uintptr(a.Size), prot, unix.MAP_SHARED|unix.MAP_FIXED); err != nil {
			unix.Munmap(m)
			return nil, err
		}
	}
	return m, nil
}
