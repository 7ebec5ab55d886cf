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
		return nil
	}
	_, _, e := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&v[0])), uintptr(n))
	if e != 0 {
		return e
	}
	return nil
}
