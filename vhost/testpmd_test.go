package vhost

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/child"
	"github.com/dpkit/dpkit/internal/testenv"
)

// testpmd drives an interactive dpdk-testpmd.
type testpmd struct {
	t     testing.TB
	cmd   *exec.Cmd
	in    io.WriteCloser
	mu    sync.Mutex
	out   bytes.Buffer
	done  chan struct{}
	exitE error
}

func needTestpmd(t testing.TB) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "dpdk-testpmd", "stdbuf")
	testenv.Short(t, "runs dpdk-testpmd")
}

var prefixSeq int

func startTestpmd(t testing.TB, vdev string, appArgs ...string) *testpmd {
	t.Helper()
	return startTestpmdOn(t, "0,1", 0, vdev, appArgs...)
}

// startTestpmdOn runs testpmd on the given lcores with the given main lcore (the
// others forward), on ordinary 4 KiB pages.
func startTestpmdOn(t testing.TB, lcores string, mainLcore int, vdev string, appArgs ...string) *testpmd {
	t.Helper()
	return startTestpmdMem(t, false, lcores, mainLcore, vdev, appArgs...)
}

// testpmdHugeMB is the memory a testpmd gets on hugepages: its 8192 mbufs and rings
// take about 20 MiB.
const testpmdHugeMB = 128

// startTestpmdMem is startTestpmdOn on 2 MiB hugepages when huge is set and the
// machine has enough free ones (see hugeDir); it falls back to 4 KiB pages, with a
// note in the log, when not.
func startTestpmdMem(t testing.TB, huge bool, lcores string, mainLcore int, vdev string, appArgs ...string) *testpmd {
	t.Helper()
	prefixSeq++
	prefix := fmt.Sprintf("dpkit-vhost-%d-%d", time.Now().UnixNano()%1e9, prefixSeq)
	mem := []string{"--no-huge", "-m", "512"}
	if huge {
		if dir, err := hugeDir(t, testpmdHugeMB); err != nil {
			t.Logf("testpmd on 4 KiB pages: %v", err)
		} else {
			mem = []string{"--huge-dir", dir, "--single-file-segments", "-m", strconv.Itoa(testpmdHugeMB)}
		}
	}
	args := append(mem, "--no-pci", "-l", lcores, "--main-lcore", strconv.Itoa(mainLcore), "--file-prefix", prefix,
		"--log-level", "lib.eal:error", "--vdev", vdev, "--", "-i", "--no-lsc-interrupt", "--total-num-mbufs=8192")
	if strings.HasPrefix(vdev, "net_vhost") && strings.Contains(vdev, "client=0") {
		// The port's link is down until its front-end attaches, which a test does only
		// after the prompt: the start-up link check would wait 9 s for it. (Elsewhere
		// the check stays: it holds the prompt back until the vhost library's log of
		// the attach is out, which would otherwise break the prompt up.)
		args = append(args, "--disable-link-check")
	}
	args = append(args, appArgs...)
	// stdbuf: testpmd's stdio is block-buffered on a pipe; its stats must reach us
	// before the next prompt.
	args = append([]string{"-o0", "-e0", "dpdk-testpmd"}, args...)
	tp := &testpmd{t: t, cmd: exec.Command("stdbuf", args...), done: make(chan struct{})}
	tp.cmd.Dir = t.TempDir()
	var err error
	if tp.in, err = tp.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	tp.cmd.Stdout, tp.cmd.Stderr = pw, pw
	if err := child.Start(tp.cmd); err != nil { // no testpmd outlives a killed test binary
		t.Fatal(err)
	}
	go func() {
		r := bufio.NewReader(pr)
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			tp.mu.Lock()
			tp.out.Write(buf[:n])
			tp.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		tp.exitE = tp.cmd.Wait()
		pw.Close()
		close(tp.done)
	}()
	t.Cleanup(tp.quit)
	tp.waitOutput("testpmd> ", 0, 30*time.Second)
	return tp
}

func (tp *testpmd) output() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.out.String()
}

// waitOutput waits until s appears in the output after byte offset from; it returns
// the offset after it.
func (tp *testpmd) waitOutput(s string, from int, d time.Duration) int {
	tp.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		o := tp.output()
		if i := strings.Index(o[min(from, len(o)):], s); i >= 0 {
			return from + i + len(s)
		}
		select {
		case <-tp.done:
			tp.t.Fatalf("testpmd exited (%v) waiting for %q:\n%s", tp.exitE, s, tp.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tp.t.Fatalf("timed out waiting for %q from testpmd:\n%s", s, tp.output())
	return 0
}

// run sends one command and waits for the next prompt; it returns the command's output.
func (tp *testpmd) run(cmd string) string {
	tp.t.Helper()
	from := len(tp.output())
	fmt.Fprintln(tp.in, cmd)
	end := tp.waitOutput("testpmd> ", from, 30*time.Second)
	return tp.output()[from:end]
}

func (tp *testpmd) quit() {
	select {
	case <-tp.done:
		return
	default:
	}
	fmt.Fprintln(tp.in, "quit")
	select {
	case <-tp.done:
	case <-time.After(3 * time.Second):
		tp.cmd.Process.Kill()
		<-tp.done
	}
}

type portStats struct{ rxPkts, rxBytes, txPkts, txBytes uint64 }

var statRe = regexp.MustCompile(`(RX|TX)-(packets|bytes):\s+(\d+)`)

// stats sums "show port stats" of the given ports.
func (tp *testpmd) stats(port int) portStats {
	tp.t.Helper()
	o := tp.run(fmt.Sprintf("show port stats %d", port))
	var s portStats
	for _, m := range statRe.FindAllStringSubmatch(o, -1) {
		v, _ := strconv.ParseUint(m[3], 10, 64)
		switch m[1] + m[2] {
		case "RXpackets":
			s.rxPkts = v
		case "RXbytes":
			s.rxBytes = v
		case "TXpackets":
			s.txPkts = v
		case "TXbytes":
			s.txBytes = v
		}
	}
	return s
}

// hugeDir mounts a private hugetlbfs of 2 MiB pages for one testpmd, when the machine
// has mb MiB of them free, and unmounts it when the test ends, which frees whatever
// testpmd left in it. DPDK's own deployments run on hugepages; on 4 KiB pages the
// guest's buffers land on scattered physical pages, and each fresh testpmd then gets
// a cache placement of its own: throughput of 1518-byte frames settled at about 8 or
// about 20 Mpps from one start to the next, for net_vhost and dpkit alike.
func hugeDir(t testing.TB, mb int) (string, error) {
	t.Helper()
	b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages")
	if err != nil {
		return "", err
	}
	free, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return "", err
	}
	if free*2 < mb {
		return "", fmt.Errorf("%d free 2 MiB hugepages, want %d", free, mb/2)
	}
	dir := shortTempDir(t)
	if err := unix.Mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M"); err != nil {
		return "", fmt.Errorf("mount hugetlbfs: %w", err)
	}
	// Registered after shortTempDir's removal, so run before it (and, registered
	// before testpmd's quit, after that).
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir, nil
}
