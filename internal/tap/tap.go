// Package tap opens Linux TAP devices (/dev/net/tun with IFF_TAP) for the host-kernel
// exception path, non-blocking, one descriptor per device.
package tap

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Open creates (or attaches to) the TAP device name, with no packet-information prefix,
// and returns its non-blocking descriptor and the name the kernel gave it (name may
// hold a %d pattern).
func Open(name string) (fd int, ifname string, err error) {
	fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return -1, "", os.NewSyscallError("open /dev/net/tun", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return -1, "", fmt.Errorf("tap: name %q: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return -1, "", os.NewSyscallError("ioctl TUNSETIFF", err)
	}
	return fd, ifr.Name(), nil
}

// Read reads one frame into b without blocking; it returns 0, nil when none is waiting.
func Read(fd int, b []byte) (int, error) {
	n, err := unix.Read(fd, b)
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, os.NewSyscallError("read", err)
	}
	return n, nil
}

// Write writes one frame without blocking; it returns false, nil when the device queue
// is full.
func Write(fd int, b []byte) (bool, error) {
	_, err := unix.Write(fd, b)
	if err == unix.EAGAIN || err == unix.EINTR {
		return false, nil
	}
	if err != nil {
		return false, os.NewSyscallError("write", err)
	}
	return true, nil
}

// Readv reads one frame into the buffers of iov in turn, without blocking; it returns
// 0, nil when none is waiting.
func Readv(fd int, iov [][]byte) (int, error) {
	n, err := unix.Readv(fd, iov)
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, nil
	}
	if err != nil {
		return 0, os.NewSyscallError("readv", err)
	}
	return n, nil
}

// Writev writes one frame gathered from the buffers of iov (at most MaxIov), without
// blocking and without allocating; it returns false, nil when the device queue is
// full.
func Writev(fd int, iov [][]byte) (bool, error) {
	if len(iov) > MaxIov {
		return false, os.NewSyscallError("writev", unix.EINVAL)
	}
	err := writev(fd, iov)
	if err == unix.EAGAIN || err == unix.EINTR {
		return false, nil
	}
	if err != nil {
		return false, os.NewSyscallError("writev", err)
	}
	return true, nil
}

// MaxIov is the most buffers Writev gathers.
const MaxIov = 256

// Close closes the descriptor; a non-persistent device disappears with it.
func Close(fd int) error { return os.NewSyscallError("close", unix.Close(fd)) }
