package testpmd

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/child"
	"github.com/dpkit/dpkit/internal/testenv"
)

// Need skips (fails in CI) unless testpmd can run here, and skips under -short.
func Need(t testing.TB) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "dpdk-testpmd", "stdbuf")
	testenv.Short(t, "runs dpdk-testpmd")
}

// Options say how to start testpmd.
type Options struct {
	// Vdev is the one --vdev argument, e.g. "net_virtio_user0,path=...,server=1".
	Vdev string
	// Lcores and MainLcore: the EAL core list ("0,1" when empty) and main lcore; the
	// others forward.
	Lcores    string
	MainLcore int
	// Huge puts testpmd on a private hugetlbfs of 2 MiB pages when the machine has
	// HugeMB of them free (see hugeDir), on 4 KiB pages otherwise.
	Huge bool
	// Netns runs testpmd in this network namespace ("": the caller's).
	Netns string
	// Args are testpmd's own arguments, after the defaults "-i --no-lsc-interrupt
	// --total-num-mbufs=8192".
	Args []string
}

// HugeMB is the memory a testpmd gets on hugepages: its 8192 mbufs and rings take
// about 20 MiB.
const HugeMB = 128

// Testpmd is a running interactive testpmd, owned by one test goroutine.
type Testpmd struct {
	t    testing.TB
	cmd  *exec.Cmd
	in   io.WriteCloser
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error // the exit status, once done is closed
}

var seq atomic.Int64

// Start runs testpmd and waits for its prompt; the test's cleanup quits it.
func Start(t testing.TB, o Options) *Testpmd {
	t.Helper()
	if o.Lcores == "" {
		o.Lcores = "0,1"
	}
	prefix := fmt.Sprintf("dpkit-tp-%d-%d-%d", os.Getpid(), time.Now().UnixNano()%1e9, seq.Add(1))
	mem := []string{"--no-huge", "-m", "512"}
	if o.Huge {
		if dir, err := hugeDir(t, HugeMB); err != nil {
			t.Logf("testpmd on 4 KiB pages: %v", err)
		} else {
			mem = []string{"--huge-dir", dir, "--single-file-segments", "-m", strconv.Itoa(HugeMB)}
		}
	}
	args := append(mem, "--no-pci", "-l", o.Lcores, "--main-lcore", strconv.Itoa(o.MainLcore), "--file-prefix", prefix,
		"--log-level", "lib.eal:error", "--vdev", o.Vdev, "--", "-i", "--no-lsc-interrupt", "--total-num-mbufs=8192")
	if strings.HasPrefix(o.Vdev, "net_vhost") && strings.Contains(o.Vdev, "client=0") {
		// The port's link is down until its front-end attaches, which a test does only
		// after the prompt: the start-up link check would wait 9 s for it. (Elsewhere
		// the check stays: it holds the prompt back until the vhost library's log of
		// the attach is out, which would otherwise break the prompt up.)
		args = append(args, "--disable-link-check")
	}
	args = append(args, o.Args...)
	// stdbuf: testpmd's stdio is block-buffered on a pipe; its stats must reach us
	// before the next prompt.
	args = append([]string{"stdbuf", "-o0", "-e0", "dpdk-testpmd"}, args...)
	if o.Netns != "" {
		// ip netns exec execs testpmd in place: the child is testpmd itself.
		args = append([]string{"ip", "netns", "exec", o.Netns}, args...)
	}
	tp := &Testpmd{t: t, cmd: exec.Command(args[0], args[1:]...), done: make(chan struct{})}
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
		tp.err = tp.cmd.Wait()
		pw.Close()
		close(tp.done)
	}()
	t.Cleanup(tp.Quit)
	tp.WaitOutput("testpmd> ", 0, 30*time.Second)
	return tp
}

// Output returns everything testpmd printed so far.
func (tp *Testpmd) Output() string {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.out.String()
}

// WaitOutput waits until s appears in the output after byte offset from; it returns
// the offset after it.
func (tp *Testpmd) WaitOutput(s string, from int, d time.Duration) int {
	tp.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		o := tp.Output()
		if i := strings.Index(o[min(from, len(o)):], s); i >= 0 {
			return from + i + len(s)
		}
		select {
		case <-tp.done:
			tp.t.Fatalf("testpmd exited (%v) waiting for %q:\n%s", tp.err, s, tp.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	tp.t.Fatalf("timed out waiting for %q from testpmd:\n%s", s, tp.Output())
	return 0
}

// Run sends one command and waits for the next prompt; it returns the command's
// output.
func (tp *Testpmd) Run(cmd string) string {
	tp.t.Helper()
	from := len(tp.Output())
	fmt.Fprintln(tp.in, cmd)
	end := tp.WaitOutput("testpmd> ", from, 30*time.Second)
	return tp.Output()[from:end]
}

// Quit asks testpmd to quit, and kills it if it has not within 3 s.
func (tp *Testpmd) Quit() {
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

// Signal sends testpmd a signal (SIGKILL to die as a crashing pod does).
func (tp *Testpmd) Signal(sig syscall.Signal) { tp.cmd.Process.Signal(sig) }

// Wait waits for testpmd to exit and returns its exit status.
func (tp *Testpmd) Wait() error {
	<-tp.done
	return tp.err
}

// PortStats are a port's counters from "show port stats".
type PortStats struct{ RxPkts, RxBytes, TxPkts, TxBytes uint64 }

var statRe = regexp.MustCompile(`(RX|TX)-(packets|bytes):\s+(\d+)`)

// Stats reads "show port stats" of a port.
func (tp *Testpmd) Stats(port int) PortStats {
	tp.t.Helper()
	o := tp.Run(fmt.Sprintf("show port stats %d", port))
	var s PortStats
	n := 0
	for _, m := range statRe.FindAllStringSubmatch(o, -1) {
		v, _ := strconv.ParseUint(m[3], 10, 64)
		n++
		switch m[1] + m[2] {
		case "RXpackets":
			s.RxPkts = v
		case "RXbytes":
			s.RxBytes = v
		case "TXpackets":
			s.TxPkts = v
		case "TXbytes":
			s.TxBytes = v
		}
	}
	if n != 4 {
		tp.t.Fatalf("testpmd: no statistics of port %d in:\n%s", port, o)
	}
	return s
}

// hugeDir mounts a private hugetlbfs of 2 MiB pages for one testpmd, when the machine
// has mb MiB of them free, and unmounts it when the test ends, which frees whatever
// testpmd left in it. DPDK's own deployments run on hugepages; on 4 KiB pages the
// guest's buffers land on scattered physical pages, and each fresh testpmd then gets
// a cache placement of its own: throughput of 1518-byte frames settled at about 8 or
// about 20 Mpps from one start to the next, for net_vhost and dpkit alike (vhost's
// BenchmarkTestpmd).
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
	if n := sweepHuge(); n > 0 {
		t.Logf("removed %d hugetlbfs mounts left by killed test processes", n)
		if b, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"); err == nil {
			free, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
	}
	if free*2 < mb {
		return "", fmt.Errorf("%d free 2 MiB hugepages, want %d", free, mb/2)
	}
	// A short path of its own, naming the test process, which sweepHuge reads: DPDK
	// names its files in it.
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", hugePrefix, os.Getpid()))
	if err != nil {
		return "", err
	}
	if err := unix.Mount("nodev", dir, "hugetlbfs", 0, "pagesize=2M"); err != nil {
		os.Remove(dir)
		return "", fmt.Errorf("mount hugetlbfs: %w", err)
	}
	// Registered before Start's Quit, so run after it.
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		os.RemoveAll(dir)
	})
	return dir, nil
}

// hugePrefix starts the name of each hugetlbfs mount point hugeDir makes in the
// temporary directory; the test process's pid follows it.
const hugePrefix = "tph"

// sweepHuge unmounts and removes the hugetlbfs mount points that hugeDir made for
// test processes no longer alive, and returns how many. A test killed (SIGKILL, or
// its binary's timeout) runs no Cleanup: its mount kept the hugepages of the files
// testpmd left in it, which the machine shares with other programs, until reboot.
// Mounts of live processes (test binaries of other packages run in parallel) stay.
func sweepHuge() int {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var stale []string
	sc := bufio.NewScanner(f)
	tmp := os.TempDir() + "/" + hugePrefix
	for sc.Scan() {
		// Field 5 is the mount point; the file system type follows " - ".
		fs := strings.Fields(sc.Text())
		sep := slices.Index(fs, "-")
		if len(fs) < 5 || sep < 0 || sep+1 >= len(fs) || fs[sep+1] != "hugetlbfs" || !strings.HasPrefix(fs[4], tmp) {
			continue
		}
		pid, _, ok := strings.Cut(strings.TrimPrefix(fs[4], tmp), "-")
		n, err := strconv.Atoi(pid)
		if !ok || err != nil || n <= 0 || n == os.Getpid() {
			continue
		}
		if unix.Kill(n, 0) == unix.ESRCH {
			stale = append(stale, fs[4])
		}
	}
	swept := 0
	for _, dir := range stale {
		if unix.Unmount(dir, unix.MNT_DETACH) == nil {
			os.RemoveAll(dir)
			swept++
		}
	}
	return swept
}
