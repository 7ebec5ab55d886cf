package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestSocketsRemoved: vhostfwd removes its socket files when it stops, on SIGTERM and
// on a socket that fails, instead of leaving them for the next run to find.
func TestSocketsRemoved(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	gone := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s left behind", p)
			}
		}
	}

	// The same path twice: the second listen fails while the first is up.
	if err := run(a, a, false, 0o600, "", 0); err == nil {
		t.Error("the same socket twice accepted")
	}
	gone(a)

	done := make(chan error, 1)
	go func() { done <- run(a, b, false, 0o600, "", 0) }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, ea := os.Lstat(a)
		_, eb := os.Lstat(b)
		if ea == nil && eb == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("sockets not created")
		}
	}
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit on SIGTERM")
	}
	gone(a, b)
}

// TestSocketMode: -mode takes permission bits only; 660 without its leading 0 is
// decimal 660 (0o1224), which made the sockets -w--w-r--.
func TestSocketMode(t *testing.T) {
	if m, err := socketMode(0o660); err != nil || m != 0o660 {
		t.Errorf("socketMode(0660) = %v, %v", m, err)
	}
	for _, m := range []uint{660, 0o1777, 1<<32 | 0o660} {
		if _, err := socketMode(m); err == nil {
			t.Errorf("-mode %d accepted", m)
		}
	}
}
