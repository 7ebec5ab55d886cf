// Package affinity pins the calling OS thread to CPUs and reads which CPUs the process
// may use. Callers must hold runtime.LockOSThread while the pin matters.
package affinity

import (
	"os"

	"golang.org/x/sys/unix"
)

// MaxCPUs is the number of CPUs a mask can name (the kernel's CPU_SETSIZE for glibc).
const MaxCPUs = 1024

// Mask is a CPU bit set, bit i of word i/64 for CPU i.
type Mask [MaxCPUs / 64]uint64

// SetThread pins the calling thread to the CPUs in m.
func SetThread(m *Mask) error {
	var s unix.CPUSet
	s.Zero()
	for cpu := 0; cpu < MaxCPUs; cpu++ {
		if m[cpu/64]&(1<<(cpu%64)) != 0 {
			s.Set(cpu)
		}
	}
	return os.NewSyscallError("sched_setaffinity", unix.SchedSetaffinity(0, &s))
}

// Thread returns the CPUs the calling thread may run on.
func Thread() (Mask, error) {
	var s unix.CPUSet
	var m Mask
	if err := unix.SchedGetaffinity(0, &s); err != nil {
		return m, os.NewSyscallError("sched_getaffinity", err)
	}
	for cpu := 0; cpu < MaxCPUs; cpu++ {
		if s.IsSet(cpu) {
			m[cpu/64] |= 1 << (cpu % 64)
		}
	}
	return m, nil
}

// procMask is the process's CPU set as the program started, before any thread was
// pinned.
var procMask, procErr = processNow()

// Process returns the CPUs the process may run on: the set a container's cpuset or
// taskset left it when it started. It is read once, at start: later, the main thread
// may be one a pinned worker locked and narrowed, and its set no longer the
// process's.
func Process() (Mask, error) { return procMask, procErr }

func processNow() (Mask, error) {
	var s unix.CPUSet
	var m Mask
	if err := unix.SchedGetaffinity(os.Getpid(), &s); err != nil {
		return m, os.NewSyscallError("sched_getaffinity", err)
	}
	for cpu := 0; cpu < MaxCPUs; cpu++ {
		if s.IsSet(cpu) {
			m[cpu/64] |= 1 << (cpu % 64)
		}
	}
	return m, nil
}
