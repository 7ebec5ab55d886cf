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
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

// listeningPod runs a pod with -listen in a namespace of its own until ctx ends; done
// gets what run returned.
func listeningPod(t *testing.T, ctx context.Context) (sock string, done chan error) {
	testenv.NeedRoot(t)
	ns := nettest.NewNS(t)
	sock = filepath.Join(t.TempDir(), "pod.sock")
	done = make(chan error, 1)
	go func() {
		done <- ns.Do(func() error {
			return run(ctx, slog.New(slog.DiscardHandler), sock, true, "eth0", false, 1)
		})
	}()
	return sock, done
}

// TestStopWhileListening: a pod told to stop while it waits for its back-end (-listen)
// stops cleanly, as it does once attached, and removes its socket. It used to end
// with exit status 1 and "vhost: accept: ... use of closed network connection".
func TestStopWhileListening(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, done := listeningPod(t, ctx)
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

// TestReattach: a listening pod whose back-end hangs up (a vRouter restarting) listens
// again and attaches to the next one. It used to go on polling the dead connection,
// unreachable and silent, until killed. The first back-end counts as attached from its
// side before the pod's handshake ends, so it may hang up during the handshake too,
// which the pod must survive as well.
func TestReattach(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, done := listeningPod(t, ctx)
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for i := range 2 {
		be, err := vhost.NewBackend(vhost.Options{Path: sock, Client: true, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		bctx, bcancel := context.WithCancel(ctx)
		served := make(chan struct{})
		go func() { be.Serve(bctx); close(served) }()
		deadline := time.Now().Add(10 * time.Second)
		for !be.Attached() && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		attached := be.Attached()
		bcancel()
		<-served
		if !attached {
			select {
			case err := <-done:
				t.Fatalf("back-end %d: the pod did not attach; it ended: %v", i+1, err)
			default:
			}
			t.Fatalf("back-end %d: the pod did not attach", i+1)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestListenWaitsForever: a listening pod waits for its back-end however long it
// takes, as virtio-user with server=1 does; it used to give up after Dial's minute
// (here dialTimeout, made short) and exit with an error.
func TestListenWaitsForever(t *testing.T) {
	defer func(d time.Duration) { dialTimeout = d }(dialTimeout)
	dialTimeout = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sock, done := listeningPod(t, ctx)
	select {
	case err := <-done:
		t.Fatalf("the pod stopped listening after %v: %v", dialTimeout, err)
	case <-time.After(300 * time.Millisecond):
	}
	if _, err := os.Lstat(sock); err != nil {
		t.Fatalf("socket gone: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
