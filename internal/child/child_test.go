package child

import (
	"bufio"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDiesWithParent: a helper process starts a long sleep through Start and is then
// killed; the sleep must die with it.
func TestDiesWithParent(t *testing.T) {
	if os.Getenv("CHILD_HELPER") == "1" {
		c := exec.Command("sleep", "60")
		if err := Start(c); err != nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("PID=" + strconv.Itoa(c.Process.Pid) + "\n")
		time.Sleep(time.Minute)
		return
	}
	h := exec.Command(os.Args[0], "-test.run=^TestDiesWithParent$")
	h.Env = append(os.Environ(), "CHILD_HELPER=1")
	out, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		h.Process.Kill()
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "PID=")))
	if err != nil {
		h.Process.Kill()
		t.Fatalf("helper said %q", line)
	}
	// The process is told by its start time, in case its pid is reused once it is gone.
	stat := func() (string, []string) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return "", nil
		}
		s := string(b)
		return s, strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	}
	_, f := stat()
	if len(f) < 20 {
		h.Process.Kill()
		t.Fatalf("no sleep process %d", pid)
	}
	started := f[19] // field 22, starttime
	h.Process.Kill()
	h.Wait()
	// The sleep is our grandchild: once killed it is reparented and reaped by init
	// (or a subreaper); either way it must stop existing or be a zombie.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, f := stat()
		if len(f) < 20 || f[19] != started || f[0] == "Z" {
			return
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("child %d still running after its parent was killed: %s", pid, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
