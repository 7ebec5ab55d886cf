package nettest

import (
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestNewNamedFailureRestoresThread: when netns.NewNamed fails after it has
// unshared (here: the name already exists), newNamed still switches the thread back;
// before, its deferred UnlockOSThread handed the thread, inside a fresh anonymous
// namespace, back to the scheduler (found in review).
func TestNewNamedFailureRestoresThread(t *testing.T) {
	testenv.NeedRoot(t)
	name := Name("x")
	os.MkdirAll("/var/run/netns", 0o755)
	if err := os.WriteFile("/var/run/netns/"+name, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	defer os.Remove("/var/run/netns/" + name)
	runtime.LockOSThread() // hold the thread so we can look at it afterwards; never unlocked
	before, _ := os.Readlink("/proc/thread-self/ns/net")
	_, err := newNamed(name)
	after, _ := os.Readlink("/proc/thread-self/ns/net")
	if err == nil {
		t.Fatal("newNamed over an existing name succeeded")
	}
	if before != after {
		t.Fatalf("newNamed failed (%v) and left the thread in %s (was %s); without our own lock that thread goes back to the scheduler", err, after, before)
	}
}

// TestOpenRawOnlyItsInterface: a raw socket returns only its interface's frames;
// before, it was created for ETH_P_ALL before bind and queued every interface's
// frames in between (found in review).
func TestOpenRawOnlyItsInterface(t *testing.T) {
	testenv.NeedRoot(t)
	a, b := NewNS(t), NewNS(t)
	v := NewVeth(t, a, b, VethOptions{})
	var fd int
	if err := a.Do(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // loopback traffic in a's namespace
		defer close(done)
		to := &unix.SockaddrInet4{Port: 9, Addr: [4]byte{127, 0, 0, 1}}
		msg := []byte("loopback-not-veth")
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Sendto(fd, msg, unix.MSG_DONTWAIT, to)
		}
	}()
	defer func() { close(stop); <-done }()
	time.Sleep(10 * time.Millisecond)
	buf := make([]byte, 2048)
	for i := 0; i < 50; i++ {
		r := a.OpenRaw(t, v.A)
		n, err := r.Recv(buf, 20*time.Millisecond, nil)
		unix.Close(r.fd)
		r.fd = -1
		if err == nil && strings.Contains(string(buf[:n]), "loopback-not-veth") {
			t.Fatalf("raw socket bound to %s returned a loopback frame (try %d)", v.A, i)
		}
	}
}
