package vhost

import (
	"context"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// TestFrontendRefillAfterPoolEmpty: the application holds every frame of the
// front-end's pool for a while, so the receive queue drains to no posted buffer at
// all. Once the frames are back in the pool, Rx must post buffers again and receive:
// with nothing posted the back-end completes nothing, so a refill that waits for a
// used buffer never comes.
func TestFrontendRefillAfterPoolEmpty(t *testing.T) {
	for _, dis := range []uint64{0, FeatureRingPacked} {
		b, path := testBackend(t, nil)
		pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Huge: pmd.HugeNever, Shared: true, Name: "vhost-refill"})
		if err != nil {
			t.Fatal(err)
		}
		f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, QueueSize: 64, DisableFeatures: dis})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "queues", b.ready)
		// The application takes every free frame.
		held := make([]pmd.Frame, pool.Frames())
		held = held[:pool.Get(held)]
		bc := b.opts.Pool.NewCache(0)
		send := func() int {
			var pk [8]pmd.Pkt
			n := bc.Alloc(pk[:])
			for i := range pk[:n] {
				pk[i].Len = 100
			}
			s := b.Port(0).Tx(pk[:n])
			bc.Free(pk[s:n])
			return s
		}
		// Drain the receive queue: the back-end fills what is posted and the
		// application keeps what it receives, so refill finds no frame.
		var rx [32]pmd.Pkt
		var kept []pmd.Frame
		for t0 := time.Now(); time.Since(t0) < 200*time.Millisecond; {
			send()
			n := f.Port(0).Rx(rx[:])
			kept = append(kept, frames(rx[:n])...)
		}
		if send() != 0 {
			t.Fatalf("disable=%#x: the receive queue still has buffers; the test did not drain it", dis)
		}
		// The application gives everything back.
		pool.Put(held)
		pool.Put(kept)
		got := 0
		for t0 := time.Now(); time.Since(t0) < 500*time.Millisecond && got == 0; {
			send()
			n := f.Port(0).Rx(rx[:])
			pool.Put(frames(rx[:n]))
			got += n
		}
		if got == 0 {
			t.Errorf("disable=%#x: no packet received after the frames returned to the pool: the receive queue was never refilled", dis)
		}
		if err := f.Close(); err != nil {
			t.Error(err)
		}
		bc.Flush()
		b.Close()
		pool.Close()
	}
}
