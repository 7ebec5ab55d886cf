package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain runs main itself when the test binary is started as vhostpod by
// TestBadTapNameExit2.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("VHOSTPOD_TEST_MAIN"); ok {
		os.Args = append([]string{"vhostpod"}, strings.Fields(args)...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestBadTapNameExit2: a -tap the kernel cannot take as an interface name (empty,
// over 15 bytes, with a '/' or ':') is a bad flag: exit status 2 and a message
// naming -tap, before the pool is made. It exited with status 1 after making the
// pool, as "pmd: tap ...: invalid argument" or "TapOptions needs Name and Pool".
func TestBadTapNameExit2(t *testing.T) {
	for _, tap := range []string{"", "abcdefghijklmnop", "a/b", "a:b", ".."} {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "VHOSTPOD_TEST_MAIN=-socket /nonexistent/x.sock -tap="+tap)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("-tap %q: %v, want exit status 2\n%s", tap, err, out)
			continue
		}
		if !strings.Contains(string(out), "-tap") {
			t.Errorf("-tap %q: message does not name -tap:\n%s", tap, out)
		}
	}
}
