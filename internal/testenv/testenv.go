// Package testenv gates tests on what the machine offers: root, kernel features,
// commands, QEMU. Outside CI a missing feature skips the test with the reason; with
// CI=true it fails the test, so a green CI run never hides a skipped suite. It also
// counts descriptors for the leak checks.
package testenv

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool {
	v, _ := strconv.ParseBool(os.Getenv("CI"))
	return v
}

// Unavailable skips t with reason, or fails it under CI.
func Unavailable(t testing.TB, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("required in CI but unavailable: %s", reason)
	}
	t.Skipf("unavailable: %s", reason)
}

// NeedRoot requires euid 0.
func NeedRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Unavailable(t, "needs root")
	}
}

// NeedCommand requires each named program on PATH.
func NeedCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			Unavailable(t, "needs command "+n+" (see make deps)")
		}
	}
}

// NeedFile requires a path to exist (a device node, a sysfs or procfs file).
func NeedFile(t testing.TB, path, what string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Unavailable(t, "needs "+what+" ("+path+")")
	}
}

// NeedQEMU requires qemu-system-x86_64.
func NeedQEMU(t testing.TB) {
	t.Helper()
	NeedCommand(t, "qemu-system-x86_64")
}

// NeedFeature runs probe, which reports whether a kernel feature works (by trying it),
// and marks the test unavailable with its error if not.
func NeedFeature(t testing.TB, what string, probe func() error) {
	t.Helper()
	if err := probe(); err != nil {
		Unavailable(t, what+": "+err.Error())
	}
}

// Short skips a long test under -short. It never fails, in CI or not: -short is asked
// for by whoever runs the tests.
func Short(t testing.TB, why string) {
	t.Helper()
	if testing.Short() {
		t.Skipf("skipped in -short mode: %s", why)
	}
}

// Fds counts this process's open descriptors for leak checks, leaving out files under
// /proc and /sys: the Go runtime opens and closes some of those on its own at any
// moment (its cgroup CPU limit), which made exact counts fail now and then.
func Fds(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(l, "/proc/") || strings.HasPrefix(l, "/sys/") {
			continue // closed meanwhile (the directory's own descriptor too), or the runtime's
		}
		n++
	}
	return n
}

// mainEnv carries a program's arguments to its test binary started by RunMain.
const mainEnv = "DPKIT_TEST_MAIN"

// MainIfAsked, called first from a command package's TestMain, runs the command's
// main as name, in place of the tests, when RunMain started the binary; otherwise it
// returns.
func MainIfAsked(name string, main func()) {
	if args, ok := os.LookupEnv(mainEnv); ok {
		os.Args = append([]string{name}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
}

// WantUsageExit runs the test binary as its command (see MainIfAsked) with args, split
// at spaces, and reports an error on t unless the command exits with status 2 (a bad
// command line, as package flag exits) and a message containing want, without a
// stack trace. It returns the output.
func WantUsageExit(t testing.TB, args, want string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), mainEnv+"="+args)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Errorf("%q: %v, want exit status 2\n%s", args, err, out)
		return string(out)
	}
	if !strings.Contains(string(out), want) {
		t.Errorf("%q: message does not name %q:\n%s", args, want, out)
	}
	if strings.HasPrefix(string(out), "panic: ") || strings.Contains(string(out), "\npanic: ") ||
		strings.Contains(string(out), "[running]:") {
		t.Errorf("%q: a stack trace:\n%s", args, out)
	}
	return string(out)
}
