package xsk

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// openFds returns this process's descriptors and what they point to, leaving out
// files under /proc and /sys, which the runtime opens and closes on its own.
func openFds(t *testing.T) map[int]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || strings.HasPrefix(l, "/proc/") || strings.HasPrefix(l, "/sys/") {
			continue
		}
		fds[fd] = l
	}
	return fds
}

// TestPortFdsCloseOnExec: every descriptor a port holds (the AF_XDP socket, the
// XSKMAP, the program and its bpf_link) is close-on-exec. One that is not would be
// inherited by any child the process forks, and an inherited XDP socket keeps its
// queue bound, and an inherited link the program attached, until the child execs or
// exits.
func TestPortFdsCloseOnExec(t *testing.T) {
	e := newEnv(t, 1, 0)
	before := openFds(t)
	p := e.openA(t, 0, Options{Socket: Config{Bind: BindCopy}, Attach: AttachGeneric})
	defer p.Close()
	check := func(what string, fd int) {
		t.Helper()
		v, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Errorf("%s (fd %d): F_GETFD: %v", what, fd, err)
		} else if v&unix.FD_CLOEXEC == 0 {
			t.Errorf("%s (fd %d) is not close-on-exec", what, fd)
		}
	}
	check("AF_XDP socket", p.Socket().FD())
	check("XSKMAP", p.Program().Map().FD())
	check("XDP program", p.Program().prog.FD())
	n := 0
	for fd, what := range openFds(t) {
		if _, ok := before[fd]; !ok {
			check(what, fd) // the bpf_link and anything else Open left open
			n++
		}
	}
	if n < 4 {
		t.Errorf("Open left %d new descriptors, want at least socket, map, program and link", n)
	}
}
