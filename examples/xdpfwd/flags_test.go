package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main itself when the test binary is started as xdpfwd by
// TestBadFlagsExit2.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("XDPFWD_TEST_MAIN"); ok {
		os.Args = append([]string{"xdpfwd"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBadFlagsExit2: a bad command line is refused with a message naming what is wrong
// and exit status 2, before anything is opened, as flag's own errors are. Extra
// arguments, a -ring that is not a power of two, a negative -busy-poll and -b the
// same as -a exited with status 1, the last three only after the pool, the UMEM and
// (for -b = -a) the first interface's program were made.
func TestBadFlagsExit2(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"", "-a"},
		{"-a exnosuch0 exnosuch1", "-b"},
		{"-a exnosuch0 -ring 1000", "RxSize 1000"},
		{"-a exnosuch0 -ring 2097152", "RxSize 2097152"},
		{"-a exnosuch0 -busy-poll -1s", "busy-poll"},
		{"-a exnosuch0 -busy-poll 1ns", "BusyPoll"},
		{"-a exnosuch0 -b exnosuch0", "-a and -b"},
		{"-a exnosuch0 -burst 0", "-burst"},
		{"-a exnosuch0 -ring x", "-ring"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "XDPFWD_TEST_MAIN="+c.args)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("xdpfwd %s: %v, want exit status 2\n%s", c.args, err, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("xdpfwd %s: message does not name %q:\n%s", c.args, c.want, out)
		}
		if strings.Contains(string(out), "panic") || strings.Contains(string(out), "[running]") {
			t.Errorf("xdpfwd %s: a stack trace:\n%s", c.args, out)
		}
	}
}
