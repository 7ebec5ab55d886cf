package pmd

import (
	"context"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/dpkit/dpkit/internal/affinity"
)

// threadSets returns the CPU set of every thread of the process, by thread id.
func threadSets(t *testing.T) map[int]CPUSet {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	sets := map[int]CPUSet{}
	for _, e := range ents {
		tid, _ := strconv.Atoi(e.Name())
		m, err := affinity.ThreadOf(tid)
		if err != nil {
			continue // exited
		}
		sets[tid] = CPUSet{m: m}
	}
	return sets
}

// TestPinProcess: after PinProcess every thread runs on the control set, and so do the
// threads the runtime starts afterwards, from unlocked and from locked goroutines; a
// pinned Worker's thread narrows itself to its own CPU, outside the set, and goes back
// to the set when the worker stops.
func TestPinProcess(t *testing.T) {
	m, err := affinity.Process()
	if err != nil {
		t.Fatal(err)
	}
	all := CPUSet{m: m}
	cpus := all.CPUs()
	if len(cpus) < 2 {
		t.Skip("needs 2 CPUs")
	}
	ctl, fwd := CPUSetOf(cpus[0]), CPUSetOf(cpus[len(cpus)-1])
	if err := PinProcess(ctl); err != nil {
		t.Fatal(err)
	}
	defer PinProcess(all)
	check := func(when string) {
		t.Helper()
		for tid, s := range threadSets(t) {
			if s != ctl {
				t.Errorf("%s: thread %d runs on %s, want %s", when, tid, s, ctl)
			}
		}
	}
	check("after PinProcess")

	// New threads: goroutines that hold their threads make the runtime start more,
	// some cloned while the cloning goroutine is itself locked. Once all 24 hold one,
	// they hold 24 distinct threads; the runtime's idle threads (left by earlier
	// tests, or by an earlier -count round) may serve some of them, so the test
	// waits for the lockings, not for a thread count that reuse may never reach.
	before := threadSets(t)
	release := make(chan struct{})
	var wg, ready sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		ready.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var inner sync.WaitGroup
			for j := 0; j < 2; j++ {
				inner.Add(1)
				ready.Add(1)
				go func() {
					defer inner.Done()
					runtime.LockOSThread()
					defer runtime.UnlockOSThread()
					ready.Done()
					<-release
				}()
			}
			ready.Done()
			<-release
			inner.Wait()
		}()
	}
	ready.Wait()
	after := threadSets(t)
	fresh := 0
	for tid := range after {
		if _, ok := before[tid]; !ok {
			fresh++
		}
	}
	if len(before) < 25 && fresh == 0 {
		t.Errorf("%d threads before, %d after 24 lockings, none new", len(before), len(after))
	}
	check("with new threads")
	close(release)
	wg.Wait()

	seen := make(chan CPUSet, 1)
	w, err := NewWorker(WorkerOptions{Name: "pin", CPUs: fwd}, func() int {
		if m, err := affinity.Thread(); err == nil {
			select {
			case seen <- CPUSet{m: m}:
			default:
			}
		}
		return 0
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	if got := <-seen; got != fwd {
		t.Errorf("worker thread runs on %s, want %s", got, fwd)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	check("after the worker stopped")

	if err := PinProcess(CPUSet{}); err == nil {
		t.Error("PinProcess of the empty set: no error")
	}
}
