package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestMain runs main itself when TestBadFlagsExit2 starts the test binary as
// vhostfwd.
func TestMain(m *testing.M) {
	testenv.MainIfAsked("vhostfwd", main)
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
		testenv.WantUsageExit(t, c.args, c.want)
		if _, err := os.Lstat(s); err == nil {
			t.Errorf("vhostfwd %s: made %s", c.args, s)
			os.Remove(s)
		}
	}
}
