package sysmem

import "unsafe"

// Addr returns the virtual address of the first byte of b, for registering memory with
// the kernel (UMEM registration, VFIO DMA maps). b must not be empty.
func Addr(b []byte) uintptr { return uintptr(unsafe.Pointer(unsafe.SliceData(b))) }
