package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
)

// TestStopWhileListening: a pod told to stop while it waits for its back-end (-listen)
// stops cleanly, as it does once attached, and removes its socket. It used to end
// with exit status 1 and "vhost: accept: ... use of closed network connection".
func TestStopWhileListening(t *testing.T) {
	testenv.NeedRoot(t)
	ns := nettest.NewNS(t)
	sock := filepath.Join(t.TempDir(), "pod.sock")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			return run(ctx, slog.New(slog.DiscardHandler), sock, true, "eth0", false, 1)
		})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Lstat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket not created")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("stopped while listening: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no return after cancel")
	}
	if _, err := os.Lstat(sock); err == nil {
		t.Error("socket left behind")
	}
}
