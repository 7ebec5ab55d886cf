package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/child"
	"github.com/dpkit/dpkit/internal/testenv"
)

// GuestEnv is set to "1" in the environment of the test binary inside the guest.
const GuestEnv = "DPKIT_VMTEST"

// exitMarker is printed by the guest's /init after the test binary exits.
const exitMarker = "DPKIT-VMTEST-EXIT="

// InGuest reports whether the caller runs inside a dpkit test VM.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// NeedGuest skips t unless it runs inside a dpkit test VM. Guest-side tests are
// started by a host-side test through Run, which carries the CI gating; on the host
// they always skip (in CI too), since running them there would touch the host's
// devices.
func NeedGuest(t testing.TB) {
	t.Helper()
	if !InGuest() {
		t.Skip("guest-side test: runs inside the VM started by a host test (vmtest.Run)")
	}
}

// NIC describes one virtio-net-pci device of the guest. The zero value (plus a Hub)
// is a modern-only, split-ring, single-queue device behind the IOMMU.
type NIC struct {
	// Hub is the QEMU hub the NIC's hubport joins; NICs on the same hub see each
	// other's frames. Hubs are QEMU-internal: nothing reaches the host network.
	Hub int
	// MAC is the device's MAC address; empty means 52:54:00:12:34:<index+1>.
	MAC string
	// Packed offers VIRTIO_F_RING_PACKED (packed=on).
	Packed bool
	// Addr is the PCI slot on bus 0 (e.g. 4 for 00:04.0); zero means 4 + index.
	Addr int
	// Tap, when set, replaces the hub: the NIC's backend is this host TAP device,
	// which the host test creates beforehand (multi_queue when Queues > 1) in
	// Config.Netns, and QEMU attaches to.
	Tap string
	// Queues is how many queue pairs the device offers (VIRTIO_NET_F_MQ); zero means
	// one. More than one needs a Tap backend: a hub has one queue.
	Queues int
}

// Config describes one VM test run. Zero values are documented per field.
type Config struct {
	// Package is the directory of the Go package whose test binary runs in the guest;
	// empty means "." (the calling test's package).
	Package string
	// Run is the -test.run pattern in the guest; empty means "^TestGuest".
	Run string
	// Args are extra arguments for the guest test binary (after -test.v).
	Args []string
	// NICs are the guest's virtio-net devices, in slot order.
	NICs []NIC
	// MemoryMB is the guest RAM; zero means 512.
	MemoryMB int
	// CPUs is the guest vCPU count; zero means 1.
	CPUs int
	// Timeout bounds the whole boot and test run; zero means 4 minutes.
	Timeout time.Duration
	// KernelArgs are appended to the kernel command line.
	KernelArgs []string
	// Netns is the network namespace QEMU runs in (through `ip netns exec`), where
	// the NICs' Tap devices are; empty means the caller's.
	Netns string
	// QEMUArgs are appended to QEMU's command line.
	QEMUArgs []string
}

// Validate reports a configuration error.
func (c *Config) Validate() error {
	if c.MemoryMB < 0 || c.CPUs < 0 || c.Timeout < 0 {
		return errors.New("vmtest: negative MemoryMB, CPUs or Timeout")
	}
	if _, err := regexp.Compile(c.Run); err != nil {
		return fmt.Errorf("vmtest: bad Run pattern: %w", err)
	}
	for i, n := range c.NICs {
		if n.Hub < 0 || n.Addr < 0 || n.Addr > 31 {
			return fmt.Errorf("vmtest: NIC %d: bad hub or slot", i)
		}
		if n.Queues < 0 || n.Queues > 16 || n.Queues > 1 && n.Tap == "" {
			return fmt.Errorf("vmtest: NIC %d: %d queues (more than one needs a Tap backend, at most 16)", i, n.Queues)
		}
	}
	return nil
}

// Result is what a VM run produced.
type Result struct {
	ExitCode int    // exit status of the guest test binary
	Console  string // the whole serial console output
	Output   string // the test binary's part of Console
}

var imageMu sync.Mutex

// CacheDir is where the kernel package, vmlinux and base initramfs are kept:
// $DPKIT_VM_CACHE, or .cache/vm at the module root.
func CacheDir() string {
	if d := os.Getenv("DPKIT_VM_CACHE"); d != "" {
		return d
	}
	return filepath.Join(srcDir(), "..", "..", ".cache", "vm")
}

func srcDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// Image builds (once, cached across runs and serialised across processes) the guest
// kernel and base initramfs, and returns their paths.
func Image() (vmlinux, basecpio string, err error) {
	imageMu.Lock()
	defer imageMu.Unlock()
	dir := CacheDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", os.NewSyscallError("flock", err)
	}
	cmd := exec.Command(filepath.Join(srcDir(), "mkimage.sh"), dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("vmtest: mkimage.sh: %v\n%s", err, out)
	}
	return filepath.Join(dir, "vmlinux"), filepath.Join(dir, "base.cpio"), nil
}

// Need gates a host-side VM test: root (for a predictable environment), QEMU, and the
// tools mkimage.sh uses.
func Need(t testing.TB) {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "apt-get", "apt-cache", "dpkg-deb", "cpio", "xz", "busybox", "go")
	if InGuest() {
		t.Skip("already inside the test VM")
	}
}

// Run builds the test binary of cfg.Package statically, boots it in a TCG guest with
// an Intel IOMMU, and fails t if the guest tests fail, the guest never reports, or the
// run times out. The guest output is logged.
func Run(t testing.TB, cfg Config) Result {
	t.Helper()
	Need(t)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := run(t, cfg)
	if res.Output != "" {
		t.Logf("guest test output:\n%s", res.Output)
	}
	if err != nil {
		if res.Output == "" && res.Console != "" {
			t.Logf("guest console:\n%s", tail(res.Console, 8000))
		}
		t.Fatal(err)
	}
	return res
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func run(t testing.TB, cfg Config) (Result, error) {
	var res Result
	vmlinux, base, err := Image()
	if err != nil {
		return res, err
	}
	tmp := t.TempDir()
	pkg := cfg.Package
	if pkg == "" {
		pkg = "."
	}
	bin := filepath.Join(tmp, "dpkit.test")
	build := exec.Command("go", "test", "-c", "-o", bin, pkg)
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		return res, fmt.Errorf("vmtest: go test -c %s: %v\n%s", pkg, err, out)
	}
	runPat := cfg.Run
	if runPat == "" {
		runPat = "^TestGuest"
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 4 * time.Minute
	}
	// The guest binary times out first, so a hang prints goroutine stacks.
	args := append([]string{"-test.v", "-test.count=1", "-test.run=" + runPat,
		"-test.timeout=" + (timeout * 3 / 4).String()}, cfg.Args...)
	for _, a := range args {
		if strings.ContainsAny(a, " \t\n") {
			return res, fmt.Errorf("vmtest: guest argument %q contains white space, which /init splits on", a)
		}
	}
	initrd := filepath.Join(tmp, "initrd.cpio")
	if err := writeInitrd(initrd, base, bin, strings.Join(args, " ")+"\n"); err != nil {
		return res, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	qargs := qemuArgs(cfg, vmlinux, initrd)
	t.Logf("qemu-system-x86_64 %s", strings.Join(qargs, " "))
	// (run inside cfg.Netns when set)
	qemu := "qemu-system-x86_64"
	if cfg.Netns != "" {
		qargs = append([]string{"netns", "exec", cfg.Netns, qemu}, qargs...)
		qemu = "ip"
	}
	q := exec.CommandContext(ctx, qemu, qargs...)
	var console bytes.Buffer
	q.Stdout = &console
	q.Stderr = &console
	q.WaitDelay = 5 * time.Second
	start := time.Now()
	qerr := child.Run(q) // no guest outlives a killed test binary
	res.Console = console.String()
	res.Output, res.ExitCode = parseConsole(res.Console)
	t.Logf("guest ran %.1fs", time.Since(start).Seconds())
	switch {
	case ctx.Err() != nil:
		return res, fmt.Errorf("vmtest: guest timed out after %v", timeout)
	case res.ExitCode < 0:
		return res, fmt.Errorf("vmtest: guest ended without an exit marker (qemu: %v)", qerr)
	case res.ExitCode != 0:
		return res, fmt.Errorf("vmtest: guest tests failed (exit status %d)", res.ExitCode)
	case qerr != nil:
		return res, fmt.Errorf("vmtest: qemu: %v", qerr)
	}
	return res, nil
}

// parseConsole returns the test binary's output and its exit status, or -1 if the
// guest never printed the exit marker.
func parseConsole(c string) (string, int) {
	c = strings.ReplaceAll(c, "\r\n", "\n")
	start := strings.Index(c, "dpkit-vmtest: running")
	out := c
	if start >= 0 {
		out = c[start:]
	}
	i := strings.LastIndex(out, exitMarker)
	if i < 0 {
		return out, -1
	}
	rest := out[i+len(exitMarker):]
	if j := strings.IndexByte(rest, '\n'); j >= 0 {
		rest = rest[:j]
	}
	code, err := strconv.Atoi(strings.TrimSpace(rest))
	if err != nil {
		return out[:i], -1
	}
	return out[:i], code
}

func qemuArgs(cfg Config, vmlinux, initrd string) []string {
	mem := cfg.MemoryMB
	if mem == 0 {
		mem = 512
	}
	cpus := cfg.CPUs
	if cpus == 0 {
		cpus = 1
	}
	cmdline := "console=ttyS0 intel_iommu=on panic=-1 quiet loglevel=4 rdinit=/init " + strings.Join(cfg.KernelArgs, " ")
	a := []string{
		"-accel", "tcg", "-nodefaults", "-no-user-config", "-no-reboot",
		"-machine", "q35,kernel-irqchip=split",
		"-device", "intel-iommu,intremap=on,caching-mode=on",
		"-cpu", "max", "-smp", strconv.Itoa(cpus), "-m", strconv.Itoa(mem),
		"-display", "none", "-serial", "stdio", "-monitor", "none",
		"-kernel", vmlinux, "-initrd", initrd, "-append", strings.TrimSpace(cmdline),
	}
	for i, n := range cfg.NICs {
		mac := n.MAC
		if mac == "" {
			mac = fmt.Sprintf("52:54:00:12:34:%02x", i+1)
		}
		slot := n.Addr
		if slot == 0 {
			slot = 4 + i
		}
		id := fmt.Sprintf("n%d", i)
		dev := fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,addr=%#x,disable-legacy=on,iommu_platform=on,ats=off", id, mac, slot)
		if n.Packed {
			dev += ",packed=on"
		}
		netdev := fmt.Sprintf("hubport,id=%s,hubid=%d", id, n.Hub)
		if n.Tap != "" {
			netdev = fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no,vhost=off", id, n.Tap)
			if n.Queues > 1 {
				// One MSI-X vector per queue plus config and control (QEMU's default).
				netdev += fmt.Sprintf(",queues=%d", n.Queues)
				dev += fmt.Sprintf(",mq=on,vectors=%d", 2*n.Queues+2)
			}
		}
		a = append(a, "-netdev", netdev, "-device", dev)
	}
	return append(a, cfg.QEMUArgs...)
}

// writeInitrd writes base followed by a newc cpio holding /dpkit.test and /dpkit.args.
// The kernel unpacks concatenated archives in order.
func writeInitrd(dst, base, bin, args string) error {
	b, err := os.ReadFile(base)
	if err != nil {
		return err
	}
	exe, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	var w bytes.Buffer
	w.Write(b)
	for w.Len()%4 != 0 {
		w.WriteByte(0)
	}
	ino := uint32(900000)
	add := func(name string, mode uint32, data []byte) {
		ino++
		fmt.Fprintf(&w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		w.WriteString(name)
		w.WriteByte(0)
		for w.Len()%4 != 0 {
			w.WriteByte(0)
		}
		w.Write(data)
		for w.Len()%4 != 0 {
			w.WriteByte(0)
		}
	}
	add("dpkit.test", 0o100755, exe)
	add("dpkit.args", 0o100644, []byte(args))
	add("TRAILER!!!", 0, nil)
	return os.WriteFile(dst, w.Bytes(), 0o644)
}
