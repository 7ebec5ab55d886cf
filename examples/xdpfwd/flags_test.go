package main

import (
	"os"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestMain runs main itself when TestBadFlagsExit2 starts the test binary as xdpfwd.
func TestMain(m *testing.M) {
	testenv.MainIfAsked("xdpfwd", main)
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
		testenv.WantUsageExit(t, c.args, c.want)
	}
}
