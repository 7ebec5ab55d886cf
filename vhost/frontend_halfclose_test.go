package vhost

import (
	"context"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/uds"
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
	read := func(c *uds.Conn) error { return c.CloseRead() }
	write := func(c *uds.Conn) error { return c.CloseWrite() }
	t.Run("rings-run-on", func(t *testing.T) { halfClosedBackend(t, read, false) })
	t.Run("closes-after-stopping", func(t *testing.T) { halfClosedBackend(t, read, true) })
	t.Run("write-shut/rings-run-on", func(t *testing.T) { halfClosedBackend(t, write, false) })
	t.Run("write-shut/closes-after-stopping", func(t *testing.T) { halfClosedBackend(t, write, true) })
}

func halfClosedBackend(t *testing.T, shut func(*uds.Conn) error, closes bool) {
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
	stop, done := floodFromBackend(b, bc, 100*time.Microsecond)
	time.Sleep(5 * time.Millisecond)
	// The back-end side stops reading (as Backend.Close does first) or writing; its
	// rings run on.
	if err := shut(front); err != nil {
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
