package vfio

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl issues a VFIO ioctl whose argument is the byte buffer arg (a kernel ABI struct
// encoded little-endian by the caller; argsz is its first field). It returns the ioctl's
// return value.
func ioctl(fd uintptr, req uintptr, arg []byte) (int, error) {
	var p unsafe.Pointer
	if len(arg) > 0 {
		p = unsafe.Pointer(&arg[0])
	}
	r, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, uintptr(p))
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// ioctlInt issues an ioctl whose argument is a plain integer.
func ioctlInt(fd uintptr, req uintptr, v uintptr) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_IOCTL, fd, req, v)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}

// addrOf returns the user virtual address of b's first byte, for VFIO_IOMMU_MAP_DMA.
// The caller keeps b mapped for as long as the DMA mapping exists.
func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
