package topo

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestProc: a child that dies on its own is seen to have exited without anyone
// calling Wait (StartVRouter and StartPod give up on it at once instead of waiting
// out their deadline), and stop ends one that runs.
func TestProc(t *testing.T) {
	p, err := startProc(exec.Command("false"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !p.exited() {
		if time.Now().After(deadline) {
			t.Fatal("an exited child was not seen to exit")
		}
		time.Sleep(time.Millisecond)
	}
	q, err := startProc(exec.Command("sleep", "60"))
	if err != nil {
		t.Fatal(err)
	}
	if q.exited() {
		t.Fatal("a running child was seen to exit")
	}
	if ok, _ := q.stop(syscall.SIGTERM, 5*time.Second); !ok || !q.exited() {
		t.Fatal("SIGTERM did not stop sleep")
	}
}
