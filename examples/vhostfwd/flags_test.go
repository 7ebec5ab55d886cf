package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain runs main itself when the test binary is started as vhostfwd by
// TestBadFlagsExit2.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("VHOSTFWD_TEST_MAIN"); ok {
		os.Args = append([]string{"vhostfwd"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBadFlagsExit2: a bad command line is refused with a message naming what is
// wrong and exit status 2, before any socket file is made. Extra arguments, a
// negative -stats and a -mode without its leading 0 exited with status 1, and the
// same path for -a and -b (or an empty one) was found only when the second
// back-end failed to listen, after the pool and the first socket were made.
func TestBadFlagsExit2(t *testing.T) {
	dir := t.TempDir()
	s := filepath.Join(dir, "x.sock")
	for _, c := range []struct{ args, want string }{
		{"-a " + s + " -b " + s + "b extra", "extra"},
		{"-a " + s + " -b " + s + "b -stats -1s", "-stats"},
		{"-a " + s + " -b " + s + "b -mode 660", "-mode"},
		{"-a " + s + " -b " + s, "-a and -b"},
		{"-a " + s + " -b " + dir + "/./x.sock", "-a and -b"},
		{"-a " + s + " -b", "-b"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VHOSTFWD_TEST_MAIN="+c.args)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("vhostfwd %s: %v, want exit status 2\n%s", c.args, err, out)
			continue
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("vhostfwd %s: message does not name %q:\n%s", c.args, c.want, out)
		}
		if _, err := os.Lstat(s); err == nil {
			t.Errorf("vhostfwd %s: made %s", c.args, s)
			os.Remove(s)
		}
	}
}
