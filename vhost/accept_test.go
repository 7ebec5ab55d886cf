package vhost

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"golang.org/x/sys/unix"
)

// TestListenAcceptOutOfFds: a listening back-end whose process runs out of
// descriptors for a moment (accept fails with EMFILE while a front-end connects)
// must go on listening, as it goes on dialling in client mode after a failed dial.
// Before, Serve returned on any accept error that was not a timeout: the Backend
// closed and removed its socket, and no front-end could attach again.
func TestListenAcceptOutOfFds(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever, Name: "vhost-accept"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	path := shortTempDir(t) + "/vhost.sock"
	b, err := NewBackend(Options{Path: path, Pool: pool, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- b.Serve(context.Background()) }()
	defer func() {
		b.Close()
		<-served
	}()
	waitFor(t, "the socket", func() bool { _, err := os.Stat(path); return err == nil })

	// A socket made before the descriptors run out, connected after.
	sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 1024
	if low.Cur > lim.Cur {
		low.Cur = lim.Cur
	}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var fill []int
	for {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				t.Error(err)
			}
			break
		}
		fill = append(fill, fd)
	}
	cerr := unix.Connect(sfd, &unix.SockaddrUnix{Name: path})
	time.Sleep(100 * time.Millisecond) // the back-end's accept fails meanwhile
	for _, fd := range fill {
		unix.Close(fd)
	}
	unix.Setrlimit(unix.RLIMIT_NOFILE, &lim)
	unix.Close(sfd)
	if cerr != nil {
		t.Fatalf("connect: %v", cerr)
	}
	select {
	case err := <-served:
		served <- err
		t.Fatalf("Serve returned after a failed accept: %v", err)
	default:
	}
	// The back-end still serves a front-end.
	f := newFakeFront(t, path)
	if feats := f.get(ReqGetFeatures, nil); feats&FeatureVersion1 == 0 {
		t.Fatalf("features %#x", feats)
	}
}
