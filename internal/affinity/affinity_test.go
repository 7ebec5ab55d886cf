package affinity

import (
	"math/bits"
	"os"
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
