package main

import (
	"os"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestMain runs main itself when TestBadTapNameExit2 starts the test binary as
// vhostpod.
func TestMain(m *testing.M) {
	testenv.MainIfAsked("vhostpod", main)
	os.Exit(m.Run())
}

// TestBadTapNameExit2: a -tap the kernel cannot take as an interface name (empty,
// over 15 bytes, with a '/' or ':') is a bad flag: exit status 2 and a message
// naming -tap, before the pool is made. It exited with status 1 after making the
// pool, as "pmd: tap ...: invalid argument" or "TapOptions needs Name and Pool".
func TestBadTapNameExit2(t *testing.T) {
	for _, tap := range []string{"", "abcdefghijklmnop", "a/b", "a:b", ".."} {
		testenv.WantUsageExit(t, "-socket /nonexistent/x.sock -tap="+tap, "-tap")
	}
}
