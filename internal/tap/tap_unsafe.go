package tap

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// writev is writev(2) over iov through an iovec array on the stack: x/sys/unix's
// Writev allocates one for more than eight buffers.
func writev(fd int, iov [][]byte) error {
	var v [MaxIov]unix.Iovec
	n := 0
	for _, b := range iov {
		if len(b) == 0 {
			continue
		}
		v[n].Base = &b[0]
		v[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		// writev(2) with nothing to write returns 0 without reaching the device; a
		// write(2) of an empty frame gets the device's EINVAL (shorter than an
		// Ethernet header), and so does this.
		return unix.EINVAL
	}
	_, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(n))
	if e != 0 {
		return e
	}
	return nil
}
