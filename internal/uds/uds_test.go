package uds

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// TestListenVisibleMeansListening: a peer that connects as soon as the socket file
// appears is accepted. Bound at path directly, the file appeared before listen(2) and
// such a peer was refused now and then (more often on a loaded machine).
func TestListenVisibleMeansListening(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	for round := range 300 {
		var wg sync.WaitGroup
		var derr error
		stop := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := os.Lstat(path); err != nil {
					continue
				}
				c, err := net.Dial("unix", path)
				if err == nil {
					c.Close()
				}
				derr = err
				return
			}
		}()
		l, err := Listen(path, 0o600, "")
		if err != nil {
			close(stop)
			wg.Wait()
			t.Fatal(err)
		}
		wg.Wait() // the watcher has dialled: the file exists now
		close(stop)
		l.Close()
		if derr != nil {
			t.Fatalf("round %d: a peer that saw the socket file could not connect: %v", round, derr)
		}
	}
}

func TestListenFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")

	// Mode applied; Close removes the file and leaves no temporary name behind.
	l, err := Listen(path, 0o640, "0")
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o640 {
		t.Fatalf("socket file %v, %v", fi, err)
	}
	if _, err := Listen(path, 0, ""); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen on a live socket: %v", err)
	}
	l.Close()
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left after Close: %v", ents)
	}

	// A stale socket is replaced.
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ul.SetUnlinkOnClose(false)
	ul.Close()
	if l, err = Listen(path, 0, ""); err != nil {
		t.Fatalf("stale socket: %v", err)
	}

	// Close leaves alone a socket that took the path over meanwhile.
	os.Remove(path)
	l2, err := Listen(path, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("the successor's socket went with the first listener's Close: %v", err)
	}
	c.Close()
	l2.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after the last Close: %v", err)
	}

	// Anything else at the path is left alone.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, 0, ""); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "x" {
		t.Fatal("regular file changed")
	}

	// A bad group fails cleanly, leaving nothing behind.
	os.Remove(path)
	if _, err := Listen(path, 0, "no-such-group-dpkit"); err == nil {
		t.Fatal("unknown group accepted")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Fatalf("left after a failed Listen: %v", ents)
	}
}

// TestListenLongPath: a path too long for a temporary name beside it is bound
// directly.
func TestListenLongPath(t *testing.T) {
	dir := t.TempDir()
	var sa syscall.RawSockaddrUnix
	n := len(sa.Path) - 1 - len(dir) - 1 // the longest name bind accepts
	name := make([]byte, n)
	for i := range name {
		name[i] = 'a'
	}
	path := filepath.Join(dir, string(name))
	l, err := Listen(path, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	l.Close()
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("socket file after Close: %v", err)
	}
}

// TestListenBusyListenerInUse: a live listener whose accept queue is full refuses a
// connect with EAGAIN, not ECONNREFUSED; Listen reports it as in use. Before, the probe's
// EAGAIN came back as a plain error, not ErrInUse (found in review).
func TestListenBusyListenerInUse(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	// Fill the accept queue (a backlog of 0 holds one connection).
	for {
		c, err := net.Dial("unix", path)
		if err != nil {
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatal(err)
			}
			break
		}
		defer c.Close()
	}
	if _, err := Listen(path, 0, ""); !errors.Is(err, ErrInUse) {
		t.Fatalf("Listen on a live socket with a full accept queue: %v, want ErrInUse", err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("the live socket's file: %v", err)
	}
}

// TestChmodSocketNoFollow: the socket's mode is set on the socket itself; a symbolic
// link put in its place is refused and its target keeps its mode.
func TestChmodSocketNoFollow(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := chmodSocket(sock, 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(sock); fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	target, link := filepath.Join(dir, "target"), filepath.Join(dir, "link")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if err := chmodSocket(link, 0o666); err == nil {
		t.Fatal("chmod through a symbolic link accepted")
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Fatalf("the link's target changed mode to %v", fi.Mode().Perm())
	}
}
