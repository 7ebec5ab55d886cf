package testpmd

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestSweepHuge: hugetlbfs mounts that hugeDir made for a test process that is gone
// are unmounted and removed; those of a live process stay.
func TestSweepHuge(t *testing.T) {
	testenv.NeedRoot(t)
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	mount := func(pid int) string {
		dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", hugePrefix, pid))
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M"); err != nil {
			os.Remove(dir)
			t.Skipf("mount hugetlbfs: %v", err)
		}
		t.Cleanup(func() {
			unix.Unmount(dir, unix.MNT_DETACH)
			os.Remove(dir)
		})
		return dir
	}
	dead, live := mount(gone.Process.Pid), mount(os.Getppid())
	if n := sweepHuge(); n != 1 {
		t.Errorf("swept %d mounts, want 1", n)
	}
	mounted := func(dir string) bool {
		b, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(b), " "+dir+" ")
	}
	if mounted(dead) {
		t.Errorf("%s (a process that exited) still mounted", dead)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("%s not removed: %v", dead, err)
	}
	if !mounted(live) {
		t.Errorf("%s (a live process) unmounted", live)
	}
}
