package xsk

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

// blast sends 64-byte frames from an XSK on B's queue 0 to A until ctx ends.
func (e *env) blast(t *testing.T, ctx context.Context) *sync.WaitGroup {
	t.Helper()
	s := e.sendersB(t, 1)[0]
	frame := udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 9, 9, make([]byte, 64-42))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pool := s.UMEMPool()
		cache := pool.NewCache(0)
		defer cache.Flush()
		var b pmd.Batch
		for ctx.Err() == nil {
			k := cache.Alloc(b.Room())
			for _, pk := range b.Room()[:k] {
				copy(pool.Bytes(pk.Frame)[pk.Off:], frame)
			}
			for i := range b.Room()[:k] {
				b.Room()[i].Len = uint16(len(frame))
			}
			b.Grow(k)
			b.Tx(s)
			if b.Len() > 0 {
				cache.Free(b.Pkts())
				b.Reset()
			}
		}
	}()
	return &wg
}

// macswap turns a received frame back towards its sender.
func macswap(d []byte) {
	var m [6]byte
	copy(m[:], d[0:6])
	copy(d[0:6], d[6:12])
	copy(d[6:12], m[:])
}

// TestMillionPacketsEveryFrameAccounted forwards a million packets back to their sender
// and checks, after Close, that every UMEM frame is back in the pool exactly once.
func TestMillionPacketsEveryFrameAccounted(t *testing.T) {
	testenv.Short(t, "forwards a million packets")
	e := newEnv(t, 1, 0)
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8192, Name: "xsk-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	p := e.openA(t, 0, Options{UMEMOptions: UMEMOptions{Pool: pool}})
	ctx, cancel := context.WithCancel(context.Background())
	wg := e.blast(t, ctx)

	held := make([]bool, pool.Frames()) // frames the application holds now
	cache := pool.NewCache(0)
	var b pmd.Batch
	var rx uint64
	deadline := time.Now().Add(60 * time.Second)
	for rx < 1_000_000 && time.Now().Before(deadline) {
		n := b.Rx(p)
		for i := range b.Pkts()[b.Len()-n:] {
			pk := &b.Pkts()[b.Len()-n+i]
			if held[pk.Frame] {
				t.Fatalf("frame %d received while the application holds it", pk.Frame)
			}
			held[pk.Frame] = true
			macswap(pool.Data(pk))
		}
		rx += uint64(n)
		for _, pk := range b.Pkts() {
			held[pk.Frame] = false
		}
		b.Tx(p)
		if b.Len() > 0 { // tx ring full: drop the rest, as a forwarder would
			cache.Free(b.Pkts())
			b.Reset()
		}
	}
	cancel()
	wg.Wait()
	if rx < 1_000_000 {
		t.Fatalf("only %d packets in 60s", rx)
	}
	st := p.Stats()
	kst, _ := p.Socket().Stats()
	t.Logf("rx %d, port %+v, kernel %+v", rx, st, kst)
	if st.Drops[pmd.DropInvalid] != 0 {
		t.Errorf("%d invalid descriptors from the kernel", st.Drops[pmd.DropInvalid])
	}
	cache.Flush()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	ps := pool.Stats()
	if ps.Free != ps.Frames || ps.BadFrees != 0 {
		t.Errorf("after Close: %d of %d frames free, %d bad frees", ps.Free, ps.Frames, ps.BadFrees)
	}
}

// TestRxTxAllocFree checks the forwarding hot path allocates nothing.
func TestRxTxAllocFree(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{})
	defer p.Close()
	ctx, cancel := context.WithCancel(context.Background())
	wg := e.blast(t, ctx)
	defer wg.Wait()
	defer cancel()
	cache := p.UMEMPool().NewCache(0)
	defer cache.Flush()
	var b pmd.Batch
	moved := 0
	step := func() {
		moved += b.Rx(p)
		b.Tx(p)
		if b.Len() > 0 {
			cache.Free(b.Pkts())
			b.Reset()
		}
	}
	// Warm up until traffic flows (caches, rings, the sender's start).
	for deadline := time.Now().Add(10 * time.Second); moved < 10000 && time.Now().Before(deadline); {
		step()
	}
	if moved == 0 {
		t.Fatal("no traffic")
	}
	for try := 0; ; try++ {
		moved = 0
		if a := testing.AllocsPerRun(5000, step); a != 0 {
			t.Errorf("Rx+Tx allocate %v per call", a)
		}
		if moved > 0 {
			break
		}
		if try == 5 {
			t.Fatal("no packets moved while measuring")
		}
	}
}

// countMaps counts the process's mappings of AF_XDP rings (socket:[N]) and of UMEM
// pools (hugepages or memfd), which the Go runtime never makes itself.
func countMaps(t *testing.T) int {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, "socket:[") || strings.Contains(l, "anon_hugepage") || strings.Contains(l, "memfd:") {
			n++
		}
	}
	return n
}

func countFds(t *testing.T) int {
	t.Helper()
	return testenv.Fds(t)
}

// countObjFds counts this process's descriptors of BPF objects and sockets, what
// Open and Close create and must release.
func countObjFds(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err == nil && (strings.HasPrefix(l, "anon_inode:bpf") || strings.HasPrefix(l, "socket:")) {
			n++
		}
	}
	return n
}

// TestOpenClose200 opens and closes a port 200 times and checks that no descriptor,
// mapping or attached XDP program is left.
func TestOpenClose200(t *testing.T) {
	e := newEnv(t, 1, 0)
	e.openA(t, 0, Options{}).Close() // warm up the runtime's own descriptors
	fds, maps := countFds(t), countMaps(t)
	for i := range 200 {
		p := e.openA(t, 0, Options{})
		if i == 0 {
			if n := countMaps(t); n < maps+5 {
				t.Fatalf("mapping count blind: %d while open, %d closed", n, maps)
			}
			if x := e.a.Link(t, e.v.A).Attrs().Xdp; x == nil || !x.Attached {
				t.Fatal("no XDP program attached while open")
			}
		}
		if err := p.Close(); err != nil {
			t.Fatalf("close %d: %v", i, err)
		}
	}
	if n := countFds(t); n > fds {
		t.Errorf("%d descriptors before, %d after", fds, n)
	}
	if n := countMaps(t); n != maps {
		t.Errorf("%d mappings before, %d after", maps, n)
	}
	if x := e.a.Link(t, e.v.A).Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("XDP program %d still attached", x.ProgId)
	}
}

// TestRxTxSeparateGoroutines drives a port's Rx and Tx from two goroutines, as
// pmd.Port allows; run with -race.
func TestRxTxSeparateGoroutines(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	wg := e.blast(t, ctx)
	pool := p.UMEMPool()
	ch := make(chan pmd.Batch, 16)
	var txDone sync.WaitGroup
	txDone.Add(1)
	go func() {
		defer txDone.Done()
		cache := pool.NewCache(0)
		defer cache.Flush()
		for b := range ch {
			b.Tx(p)
			cache.Free(b.Pkts())
		}
	}()
	cache := pool.NewCache(0)
	var got int
	deadline := time.Now().Add(20 * time.Second)
	for got < 100_000 && time.Now().Before(deadline) {
		var b pmd.Batch
		if n := b.Rx(p); n > 0 {
			for i := range b.Pkts() {
				macswap(pool.Data(&b.Pkts()[i]))
			}
			got += n
			ch <- b
		}
	}
	close(ch)
	txDone.Wait()
	cancel()
	wg.Wait()
	cache.Flush()
	if got < 100_000 {
		t.Fatalf("only %d packets", got)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if st := p.Stats(); st.Drops[pmd.DropInvalid] != 0 || st.TxPackets == 0 {
		t.Errorf("stats %+v", st)
	}
}
