package xsk

import (
	"math"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// TestKickNotBehindControlLock: the wakeups of the rx and tx paths (Kick, KickIfNeeded,
// the rx wakeup) never take the socket's lock, which Stats holds across its
// XDP_STATISTICS getsockopt and Close across munmap and close; with the lock held
// elsewhere they still return at once. A hot path that took it would stall behind
// any slow control call.
func TestKickNotBehindControlLock(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p, _ := newFakePort(t, pool, false)
	defer p.Close()
	s := p.Socket()
	s.busyPoll = true // KickIfNeeded and Receive then always make their syscall
	if s.Transmit([]Desc{{Addr: 0, Len: 60}}) != 1 {
		t.Fatal("tx ring took nothing")
	}
	s.mu.Lock() // a Stats or Close in the middle of its syscall
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Kick()
		s.KickIfNeeded()
		s.Receive(make([]Desc, 1))
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		s.mu.Unlock()
		<-done
		t.Fatal("a wakeup waited for the socket's lock")
	}
	s.mu.Unlock()
	if st, _ := s.Stats(); st.Kicks < 3 {
		t.Errorf("%d wakeups counted, want at least 3", st.Kicks)
	}
}

// TestPollMillis: Poll's timeout in poll(2)'s milliseconds. Before, a timeout under
// a millisecond became 0, a return at once (a caller waiting 500 µs at a time spun),
// and one beyond 2^31 ms wrapped in the kernel's int.
func TestPollMillis(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{-time.Second, -1}, {0, 0}, {time.Nanosecond, 1}, {500 * time.Microsecond, 1},
		{time.Millisecond, 1}, {time.Millisecond + 1, 2}, {time.Second, 1000},
		{math.MaxInt32 * time.Millisecond, math.MaxInt32}, {math.MaxInt64, math.MaxInt32},
	} {
		if got := pollMillis(c.d); got != c.want {
			t.Errorf("pollMillis(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}
