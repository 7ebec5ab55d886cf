package vhost

import (
	"context"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// TestFrontendCloseHalfClosedBackend: a back-end that has shut down only the reading
// side of its socket (the first step of Backend.Close, which then stops its rings and
// only after that closes the socket) has not let go of the rings yet. The front-end's
// GET_VRING_BASE then fails to send with EPIPE; Close must not take that for a
// hang-up and give the frames posted to the still-running rings back to the pool,
// but wait for the socket to close (here, through a proxy, the close is delayed at
// will; with Backend.Close the window is short).
//
// The same holds for a back-end that has shut down only its writing side
// (shutdown(SHUT_WR)): the front-end reads end of file, and the device goes down
// (the back-end can answer nothing more), but the back-end still reads and its rings
// may run on. Before, the front-end took the end of file for a hang-up, and Close
// gave the frames posted to the running rings back to the pool, where the back-end
// went on writing into them.
func TestFrontendCloseHalfClosedBackend(t *testing.T) {
	t.Run("rings-run-on", func(t *testing.T) { halfClosedBackend(t, false, false) })
	t.Run("closes-after-stopping", func(t *testing.T) { halfClosedBackend(t, false, true) })
	t.Run("write-shut/rings-run-on", func(t *testing.T) { halfClosedBackend(t, true, false) })
	t.Run("write-shut/closes-after-stopping", func(t *testing.T) { halfClosedBackend(t, true, true) })
}

// halfClosedBackend shuts down the back-end side's reading (or, with write, its
// writing) and, with closes, stops the back-end's rings and closes the socket 20 ms
// into the front-end's Close.
func halfClosedBackend(t *testing.T, write, closes bool) {
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
	defer bc.Flush()
	stop, done := floodFromBackend(b, bc, time.Millisecond) // 256 buffers last ~30 ms
	time.Sleep(2 * time.Millisecond)                        // started, the receive ring far from full
	// The back-end side stops reading (as Backend.Close does first) or writing; its
	// rings run on.
	if write {
		if err := front.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// The front-end reads end of file before Close: the device goes down.
		waitFor(t, "the front-end to see the end of file", f.Down)
	} else if err := front.CloseRead(); err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	if closes {
		// Then it stops its rings and closes the socket.
		go func() {
			time.Sleep(20 * time.Millisecond)
			close(stop)
			<-done
			front.Close()
			close(stopped)
		}()
	}
	err = f.Close()
	if closes {
		if err != nil {
			t.Errorf("Close: %v", err)
		}
		<-stopped
		if st := pool.Stats(); st.Free != st.Frames {
			t.Errorf("%d of %d frames back in the pool", st.Free, st.Frames)
		}
		return
	}
	t.Logf("Close: %v", err)
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
	if hit > 0 {
		t.Fatalf("%d of %d frames back in the pool after Close were written by the back-end, whose rings still ran", hit, got)
	}
}
