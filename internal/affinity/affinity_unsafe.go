package affinity

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawSchedGetaffinity is sched_getaffinity(2) with a buffer of any size (x/sys/unix's
// CPUSet is fixed at 1024 CPUs). It returns the number of bytes the kernel wrote.
func rawSchedGetaffinity(tid int, buf []uint64) (int, error) {
	if len(buf) == 0 {
		return 0, unix.EINVAL
	}
	r, _, e := unix.RawSyscall(unix.SYS_SCHED_GETAFFINITY, uintptr(tid), uintptr(8*len(buf)), uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// schedSetaffinity is sched_setaffinity(2) with a buffer of any size: the kernel reads
// up to its own cpumask size and ignores the rest.
func schedSetaffinity(tid int, buf []uint64) error {
	if len(buf) == 0 {
		return unix.EINVAL
	}
	_, _, e := unix.RawSyscall(unix.SYS_SCHED_SETAFFINITY, uintptr(tid), uintptr(8*len(buf)), uintptr(unsafe.Pointer(&buf[0])))
	if e != 0 {
		return e
	}
	return nil
}
