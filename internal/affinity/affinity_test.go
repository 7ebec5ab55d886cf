package affinity

import (
	"errors"
	"math/bits"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func count(m Mask) int {
	n := 0
	for _, w := range m {
		n += bits.OnesCount64(w)
	}
	return n
}

// TestProcessIgnoresPinnedMainThread: a pinned worker that happens to lock the main
// thread (tid == pid) does not change what Process reports for the whole process;
// before, Process read the main thread's set (found in review).
func TestProcessIgnoresPinnedMainThread(t *testing.T) {
	all, err := Process()
	if err != nil {
		t.Fatal(err)
	}
	if count(all) < 2 {
		t.Skip("needs 2 CPUs")
	}
	var one Mask
	for i := range all { // lowest allowed CPU only
		if all[i] != 0 {
			one[i] = all[i] & -all[i]
			break
		}
	}
	for try := 0; try < 2000; try++ {
		found := make(chan bool)
		release := make(chan struct{})
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if unix.Gettid() != os.Getpid() {
				found <- false
				return
			}
			prev, _ := Thread()
			if err := SetThread(&one); err != nil {
				t.Error(err)
			}
			found <- true
			<-release
			SetThread(&prev)
		}()
		if <-found {
			got, _ := Process()
			close(release)
			if got != all {
				t.Fatalf("after pinning one worker thread (the main thread) to 1 CPU, Process() reports %d CPUs, the process may use %d", count(got), count(all))
			}
			return
		}
		close(release)
	}
	t.Skip("never landed on the main thread")
}

// fakeKernel answers sched_getaffinity as Linux does on a machine with nrCPUIDs
// possible CPUs (kernel/sched: EINVAL unless the buffer holds nr_cpu_ids bits; it
// writes its cpumask size, at most the buffer) and allowed CPUs set.
func fakeKernel(nrCPUIDs int, allowed ...int) (func(int, []uint64) (int, error), *[]int) {
	var asked []int
	return func(tid int, buf []uint64) (int, error) {
		asked = append(asked, len(buf))
		if 64*len(buf) < nrCPUIDs {
			return 0, unix.EINVAL
		}
		for _, c := range allowed {
			buf[c/64] |= 1 << (c % 64)
		}
		return min(8*len(buf), 8*((nrCPUIDs+63)/64)), nil
	}, &asked
}

// TestThreadOfManyPossibleCPUs: sched_getaffinity fails with EINVAL when its buffer
// holds fewer bits than the kernel's possible CPUs (nr_cpu_ids), which may exceed
// 1024. Before, ThreadOf asked with x/sys/unix's fixed 1024-bit CPUSet, so on such a
// machine ThreadOf, Thread and Process (read at start) all failed, and no CPU from 1024
// on could be named at all (found in review). Now the buffer is sized from
// /sys/devices/system/cpu/possible and grown on EINVAL.
func TestThreadOfManyPossibleCPUs(t *testing.T) {
	old := schedGetaffinity
	defer func() { schedGetaffinity = old }()
	oldPossible := sysPossible
	defer func() { sysPossible = oldPossible }()
	sysPossible = filepath.Join(t.TempDir(), "absent") // growth alone

	for _, c := range []struct {
		nr      int
		allowed []int
		err     error
	}{
		{4, []int{1, 3}, nil},
		{1500, []int{0, 1023, 1024, 1499}, nil},
		{8192, []int{8191}, nil},
		{20000, []int{5}, nil},
		{20000, []int{8192}, ErrTooManyCPUs},
		{1 << 20, []int{5}, unix.EINVAL}, // past the cap: the kernel's error
	} {
		fake, asked := fakeKernel(c.nr, c.allowed...)
		schedGetaffinity = fake
		m, err := ThreadOf(0)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("nr_cpu_ids %d, CPUs %v: err %v, want %v", c.nr, c.allowed, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("nr_cpu_ids %d: %v (buffers asked %v)", c.nr, err, *asked)
			continue
		}
		if count(m) != len(c.allowed) {
			t.Errorf("nr_cpu_ids %d: %d CPUs, want %v", c.nr, count(m), c.allowed)
		}
		for _, cpu := range c.allowed {
			if m[cpu/64]&(1<<(cpu%64)) == 0 {
				t.Errorf("nr_cpu_ids %d: CPU %d missing", c.nr, cpu)
			}
		}
	}

	// With the possible CPUs known, the first call is big enough.
	sysPossible = filepath.Join(t.TempDir(), "possible")
	if err := os.WriteFile(sysPossible, []byte("0-19999\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fake, asked := fakeKernel(20000, 7)
	schedGetaffinity = fake
	if _, err := ThreadOf(0); err != nil || len(*asked) != 1 {
		t.Errorf("sized from possible: %v after buffers of %v words", err, *asked)
	}
}

func TestPossibleCPUs(t *testing.T) {
	for in, want := range map[string]int{"0\n": 1, "0-3\n": 4, "0-1023": 1024, "0-3,8-11\n": 12, "0,2047": 2048} {
		if n, err := possibleCPUs(in); err != nil || n != want {
			t.Errorf("possibleCPUs(%q) = %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "x", "3-1", "0-", "-1", "0-99999999"} {
		if n, err := possibleCPUs(in); err == nil {
			t.Errorf("possibleCPUs(%q) = %d, want an error", in, n)
		}
	}
}

// TestThreadRealKernel: the raw system calls round-trip on this machine.
func TestThreadRealKernel(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	m, err := Thread()
	if err != nil || count(m) == 0 {
		t.Fatalf("Thread: %d CPUs, %v", count(m), err)
	}
	var s unix.CPUSet
	if err := unix.SchedGetaffinity(0, &s); err == nil && s.Count() != count(m) {
		t.Errorf("Thread: %d CPUs, x/sys/unix says %d", count(m), s.Count())
	}
	if err := SetThread(&m); err != nil {
		t.Fatal(err)
	}
}
