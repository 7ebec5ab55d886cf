// Package affinity pins the calling OS thread to CPUs and reads which CPUs the process
// may use. Callers must hold runtime.LockOSThread while the pin matters.
package affinity

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// MaxCPUs is the number of CPUs a mask can name: 8192, the largest CONFIG_NR_CPUS any
// Linux architecture allows (x86-64 with MAXSMP), not glibc's CPU_SETSIZE of 1024.
const MaxCPUs = 8192

// Mask is a CPU bit set, bit i of word i/64 for CPU i.
type Mask [MaxCPUs / 64]uint64

// ErrTooManyCPUs reports a kernel CPU set naming CPUs of MaxCPUs or more, which a Mask
// cannot hold (dropping them would narrow the set silently).
var ErrTooManyCPUs = errors.New("affinity: CPU set names CPUs beyond MaxCPUs")

// SetThread pins the calling thread to the CPUs in m.
func SetThread(m *Mask) error {
	return os.NewSyscallError("sched_setaffinity", schedSetaffinity(0, m[:]))
}

// Thread returns the CPUs the calling thread may run on.
func Thread() (Mask, error) { return ThreadOf(0) }

// ThreadOf returns the CPUs thread tid (of any process; 0 for the calling thread)
// may run on.
func ThreadOf(tid int) (Mask, error) {
	words, err := getaffinity(tid, startWords())
	if err != nil {
		return Mask{}, os.NewSyscallError("sched_getaffinity", err)
	}
	var m Mask
	for i, w := range words {
		if i >= len(m) {
			if w != 0 {
				return Mask{}, ErrTooManyCPUs
			}
			continue
		}
		m[i] = w
	}
	return m, nil
}

// schedGetaffinity is the sched_getaffinity system call (a variable for tests): it
// fills buf and returns how many bytes the kernel wrote.
var schedGetaffinity = rawSchedGetaffinity

// maxWords caps the buffer getaffinity grows: 64 Ki CPUs, as the Go runtime allows.
const maxWords = 64 << 10 / 64

// getaffinity returns thread tid's CPU set in a buffer of at least words 64-bit words,
// grown while the kernel refuses it (EINVAL: sched_getaffinity fails unless the buffer
// holds nr_cpu_ids bits, the possible CPUs, which may exceed any fixed size).
func getaffinity(tid, words int) ([]uint64, error) {
	words = max(words, 1)
	for {
		buf := make([]uint64, words)
		n, err := schedGetaffinity(tid, buf)
		if err == nil {
			// The kernel writes its cpumask size; the rest stays zero.
			if n < 0 || n > 8*len(buf) {
				return nil, unix.EINVAL
			}
			return buf, nil
		}
		if err != unix.EINVAL || words >= maxWords {
			return nil, err
		}
		words = min(2*words, maxWords)
	}
}

// sysPossible lists the CPUs the kernel may ever bring up (nr_cpu_ids is its highest
// plus one).
var sysPossible = "/sys/devices/system/cpu/possible"

// startWords returns the mask size, in 64-bit words, to ask sched_getaffinity with
// first: enough for every possible CPU and at least a Mask.
func startWords() int {
	n := len(Mask{})
	if b, err := os.ReadFile(sysPossible); err == nil {
		if cpus, err := possibleCPUs(string(b)); err == nil {
			n = max(n, min((cpus+63)/64, maxWords))
		}
	}
	return n
}

// possibleCPUs parses a kernel CPU list ("0-3,8-11\n") and returns its highest CPU
// plus one.
func possibleCPUs(s string) (int, error) {
	top := -1
	for _, item := range strings.Split(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(item, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a || b >= 1<<22 {
			return 0, fmt.Errorf("affinity: CPU list %q", s)
		}
		top = max(top, b)
	}
	return top + 1, nil
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
			if err := schedSetaffinity(tid, m[:]); err != nil && err != unix.ESRCH {
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
