package vhost

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// proxy forwards vhost-user messages (with their descriptors) between one front-end
// and the back-end at backPath; it returns the front-end side's connection so that a
// test can inject bytes as a misbehaving back-end would.
func frontProxy(t *testing.T, backPath string) (string, chan *uds.Conn) {
	path := filepath.Join(shortTempDir(t), "proxy.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan *uds.Conn, 1)
	go func() {
		fc, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		bc0, err := net.Dial("unix", backPath)
		if err != nil {
			return
		}
		front, back := uds.NewConn(fc), uds.NewConn(bc0.(*net.UnixConn))
		t.Cleanup(func() { fc.Close(); bc0.Close() })
		fwd := func(from, to *uds.Conn) {
			for {
				var h [hdrSize]byte
				fds, err := from.ReadFull(h[:])
				if err != nil {
					return // keep the other side open: the back-end stays attached
				}
				p := make([]byte, le.Uint32(h[8:]))
				if len(p) > 0 {
					more, err := from.ReadFull(p)
					fds = append(fds, more...)
					if err != nil {
						return
					}
				}
				to.Write(append(h[:], p...), fds...)
				uds.CloseAll(fds)
			}
		}
		go fwd(front, back)
		go fwd(back, front)
		ch <- front
	}()
	return path, ch
}

// TestFrontendUnsolicitedMessage: a back-end that sends one unasked message (and
// keeps its rings running) takes the device down, but is not taken for stopped:
// Close must still ask it to stop its rings (the header carries no payload, so the
// stream stays in step and the back-end answers) rather than return frames the
// back-end still writes into to the pool. Before, watch took any read for a hang-up.
func TestFrontendUnsolicitedMessage(t *testing.T) {
	for _, inject := range []bool{false, true} {
		t.Run(map[bool]string{false: "control", true: "inject"}[inject], func(t *testing.T) { unsolicitedMessage(t, inject) })
	}
}

func unsolicitedMessage(t *testing.T, inject bool) {
	b, bpath := testBackend(t, nil)
	path, ch := frontProxy(t, bpath)
	pool := sharedPool(t)
	f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	front := <-ch
	waitFor(t, "queues", b.ready)
	bc := b.opts.Pool.NewCache(0)
	stop, done := floodFromBackend(b, bc, 100*time.Microsecond)
	// The back-end sends an unasked 12-byte header (no back-end channel exists).
	time.Sleep(5 * time.Millisecond)
	if inject {
		var h [hdrSize]byte
		encodeHeader(h[:], header{req: ReqGetFeatures, flags: flagVersion})
		if err := front.Write(h[:]); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "front-end to mark the back-end down", f.Down)
	}
	if err := f.Close(); err != nil {
		t.Logf("Close: %v", err)
	}
	all := make([]pmd.Frame, pool.Frames())
	got := pool.Get(all)
	for _, x := range all[:got] {
		clear(pool.Bytes(x))
	}
	time.Sleep(20 * time.Millisecond)
	close(stop)
	<-done
	hit := 0
	for _, x := range all[:got] {
		if pool.Bytes(x)[pool.Headroom()+100] == 0xab {
			hit++
		}
	}
	pool.Put(all[:got])
	bc.Flush()
	if hit > 0 {
		t.Fatalf("%d of %d frames back in the pool after Close were written by the still-running back-end", hit, got)
	}
}

// TestFrontendNoMrgRxbufNumBuffers: without MRG_RXBUF, DPDK's vhost leaves
// num_buffers (header bytes 10-11) as the buffer had them (it writes the field only
// when mergeable); the front-end must not read it. Before, stale bytes joined
// unrelated packets into chains.
func TestFrontendNoMrgRxbufNumBuffers(t *testing.T) {
	needTestpmd(t)
	path := shortTempDir(t) + "/nv.sock"
	pool := sharedPool(t)
	// Frames that earlier carried a packet with headers pushed in front of the
	// headroom (encapsulation): the two bytes before the data are packet bytes.
	all := make([]pmd.Frame, pool.Frames())
	got := pool.Get(all)
	h := pool.Headroom()
	for _, x := range all[:got] {
		b := pool.Bytes(x)
		b[h-2], b[h-1] = 0x03, 0x00
	}
	pool.Put(all[:got])
	tp := startTestpmd(t, "net_vhost0,iface="+path+",client=0,queues=1")
	var f *Frontend
	var err error
	for i := 0; i < 100; i++ {
		if f, err = Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, DisableFeatures: FeatureMrgRxbuf | FeatureRingPacked}); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tp.Run("set fwd io")
	tp.Run("start")
	defer tp.Run("stop")
	sendEcho(t, f.Port(0), f.Port(0), pool, pool, 50, 0)
}

// TestFrontendBrokenRingRace: Rx and Tx may run on two goroutines; a back-end that
// corrupts a ring breaks the port, and recording that must not race with the other
// direction (the race detector failed it when both shared one broken flag and error).
func TestFrontendBrokenRingRace(t *testing.T) {
	b, path := testBackend(t, nil)
	pool := sharedPool(t)
	f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, DisableFeatures: FeatureRingPacked})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "queues", b.ready)
	p := f.Port(0)
	stop := make(chan struct{})
	done := make(chan struct{}, 2)
	go func() { // Tx goroutine
		defer func() { done <- struct{}{} }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p.Tx(nil)
			time.Sleep(10 * time.Microsecond)
		}
	}()
	go func() { // Rx goroutine
		defer func() { done <- struct{}{} }()
		var in [32]pmd.Pkt
		for {
			select {
			case <-stop:
				return
			default:
			}
			n := p.Rx(in[:])
			pool.Put(frames(in[:n]))
			time.Sleep(10 * time.Microsecond)
		}
	}()
	time.Sleep(5 * time.Millisecond)
	// A misbehaving back-end: the receive ring's used.idx jumps far ahead.
	d, a, _ := vring.SplitSizes(256)
	usedOff := (d+63)&^63 + (a+63)&^63
	f.rings[usedOff+2], f.rings[usedOff+3] = 0x00, 0x80
	// Both directions keep running while the Rx goroutine finds the damage, however
	// late it gets a CPU.
	waitFor(t, "the receive ring to break", func() bool { return p.Err() != nil })
	time.Sleep(5 * time.Millisecond)
	close(stop)
	<-done
	<-done
	t.Logf("port error: %v", p.Err())
}

// TestBackendCloseStopsRingsFirst: Backend.Close ends the connection only after the
// device's rings are stopped, which waits for a datapath burst inside a ring to leave
// it: a front-end that sees the hang-up takes its posted buffers back, so it must not
// see it while the back-end may still write into them. Before, Close closed the
// socket at once.
func TestBackendCloseStopsRingsFirst(t *testing.T) {
	b, path := testBackend(t, nil)
	pool := sharedPool(t)
	f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	waitFor(t, "queues", b.ready)
	d := b.curDev.Load()
	if d == nil {
		t.Fatal("no device")
	}
	q := d.queues[0] // the guest's receive queue: a burst into it is in progress
	if q.acquire() == nil {
		t.Fatal("queue 0 not running")
	}
	closed := make(chan struct{})
	go func() { b.Close(); close(closed) }()
	time.Sleep(50 * time.Millisecond)
	if f.Down() {
		q.release()
		t.Fatal("the front-end saw the hang-up while a burst was inside the ring")
	}
	select {
	case <-closed:
		q.release()
		t.Fatal("Close returned while a burst was inside the ring")
	default:
	}
	q.release()
	<-closed
	if !f.Down() {
		// Close returns after the socket is closed, but the front-end's reader may
		// not have run yet.
		waitFor(t, "the front-end to see the hang-up", f.Down)
	}
}

// TestBackendCloseWaits: when Close returns, the connection is gone: the device is
// detached, the guest's memory unmapped and the socket file removed, so that a process
// exiting right after leaves nothing behind.
func TestBackendCloseWaits(t *testing.T) {
	for round := range 20 {
		b, path := testBackend(t, nil)
		f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: sharedPool(t)})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "queues", b.ready)
		b.Close()
		if b.Attached() {
			t.Fatalf("round %d: still attached after Close", round)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("round %d: socket file after Close: %v", round, err)
		}
		f.Close()
	}
}
