package topo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRunDiesWithParent: a command run through run (as every ip, ping and iperf3 of
// topo is) dies with the process that ran it, here a helper killed with SIGKILL as a
// killed demo or test binary would be; an iperf3 client whose vRouters died with it
// otherwise spins on a CPU for good.
func TestRunDiesWithParent(t *testing.T) {
	if f := os.Getenv("TOPO_RUN_HELPER"); f != "" {
		run("sh", "-c", "echo $$ > "+f+".tmp && mv "+f+".tmp "+f+" && exec sleep 60")
		os.Exit(0)
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	h := exec.Command(os.Args[0], "-test.run=^TestRunDiesWithParent$")
	h.Env = append(os.Environ(), "TOPO_RUN_HELPER="+pidFile)
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	defer h.Wait()
	defer h.Process.Kill()
	var pid int
	for deadline := time.Now().Add(10 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(pidFile); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		if time.Now().After(deadline) {
			t.Fatal("the helper's command did not start")
		}
	}
	// The process is told by its start time, in case its pid is reused once it is gone.
	stat := func() []string {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return nil
		}
		s := string(b)
		return strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	}
	f := stat()
	if len(f) < 20 {
		t.Fatalf("no process %d", pid)
	}
	started := f[19]
	h.Process.Kill()
	h.Wait()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		f := stat()
		if len(f) < 20 || f[19] != started || f[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("command %d still running after its parent was killed", pid)
		}
	}
}
