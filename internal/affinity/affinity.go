// Package affinity pins the calling OS thread to CPUs and reads which CPUs the process
// may use. Callers must hold runtime.LockOSThread while the pin matters.
package affinity

import (
	"errors"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// MaxCPUs is the number of CPUs a mask can name (the kernel's CPU_SETSIZE for glibc).
const MaxCPUs = 1024

// Mask is a CPU bit set, bit i of word i/64 for CPU i.
type Mask [MaxCPUs / 64]uint64

// set converts m to the kernel's CPU set.
func (m *Mask) set() unix.CPUSet {
	var s unix.CPUSet
	s.Zero()
	for cpu := 0; cpu < MaxCPUs; cpu++ {
		if m[cpu/64]&(1<<(cpu%64)) != 0 {
			s.Set(cpu)
		}
	}
	return s
}

// maskOf converts the kernel's CPU set to a Mask.
func maskOf(s *unix.CPUSet) Mask {
	var m Mask
	for cpu := 0; cpu < MaxCPUs; cpu++ {
		if s.IsSet(cpu) {
			m[cpu/64] |= 1 << (cpu % 64)
		}
	}
	return m
}

// SetThread pins the calling thread to the CPUs in m.
func SetThread(m *Mask) error {
	s := m.set()
	return os.NewSyscallError("sched_setaffinity", unix.SchedSetaffinity(0, &s))
}

// Thread returns the CPUs the calling thread may run on.
func Thread() (Mask, error) { return ThreadOf(0) }

// ThreadOf returns the CPUs thread tid (of any process; 0 for the calling thread)
// may run on.
func ThreadOf(tid int) (Mask, error) {
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(tid, &s); err != nil {
		return Mask{}, os.NewSyscallError("sched_getaffinity", err)
	}
	return maskOf(&s), nil
}

// procMask is the process's CPU set as the program started, before any thread was
// pinned.
var procMask, procErr = processNow()

// Process returns the CPUs the process may run on: the set a container's cpuset or
// taskset left it when it started. It is read once, at start: later, the main thread
// may be one a pinned worker locked and narrowed, and its set no longer the
// process's.
func Process() (Mask, error) { return procMask, procErr }

func processNow() (Mask, error) { return ThreadOf(os.Getpid()) }

// SetProcessThreads pins every thread of the process to the CPUs in m, including the
// runtime's idle threads and its template thread. The threads the runtime starts later
// inherit m: a new thread takes its affinity from the thread that clones it, which is
// either one of these or, when the cloning goroutine is locked to its thread, the
// template thread (which LockOSThread starts while the thread is still unlocked).
// A goroutine that pins its own locked thread afterwards narrows just that thread.
//
// It walks /proc/self/task until a pass finds no thread it has not pinned, so a thread
// cloned from an unpinned one during the walk is pinned too. A thread that exits
// meanwhile is skipped.
func SetProcessThreads(m *Mask) error {
	s := m.set()
	done := map[int]bool{}
	for pass := 0; ; pass++ {
		ents, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := 0
		for _, e := range ents {
			tid, err := strconv.Atoi(e.Name())
			if err != nil || done[tid] {
				continue
			}
			fresh++
			if err := unix.SchedSetaffinity(tid, &s); err != nil && err != unix.ESRCH {
				return os.NewSyscallError("sched_setaffinity", err)
			}
			done[tid] = true
		}
		if fresh == 0 {
			return nil
		}
		if pass == 100 {
			return errors.New("affinity: threads kept appearing while the process was pinned")
		}
	}
}
