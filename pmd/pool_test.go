package pmd

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
)

func newTestPool(t testing.TB, frames int) *Pool {
	t.Helper()
	p, err := NewPool(PoolOptions{Frames: frames, Huge: HugeNever, Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func TestPoolOptions(t *testing.T) {
	bad := []PoolOptions{
		{},
		{Frames: -1},
		{Frames: 8, FrameSize: 1000},
		{Frames: 8, FrameSize: 256},
		{Frames: 8, FrameSize: 1 << 17},
		{Frames: 8, Headroom: 64},
		{Frames: 8, FrameSize: 512, Headroom: 500},
		{Frames: 8, Huge: 7},
	}
	for _, o := range bad {
		if _, err := NewPool(o); !errors.Is(err, ErrPoolOptions) {
			t.Errorf("NewPool(%+v): err %v, want ErrPoolOptions", o, err)
		}
	}
}

func TestPoolLayout(t *testing.T) {
	p := newTestPool(t, 100)
	if p.Frames() != 100 || p.FrameSize() != 2048 || p.Headroom() != 256 {
		t.Fatalf("geometry %d/%d/%d", p.Frames(), p.FrameSize(), p.Headroom())
	}
	if len(p.Region()) != 100*2048 {
		t.Fatalf("region %d bytes", len(p.Region()))
	}
	c := p.NewCache(8)
	var pk [1]Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("alloc failed")
	}
	if pk[0].Off != 256 || pk[0].Len != 0 {
		t.Fatalf("fresh pkt %+v", pk[0])
	}
	if !p.Append(&pk[0], 60) || p.Append(&pk[0], 2048) {
		t.Fatal("Append bounds")
	}
	copy(p.Data(&pk[0]), "hello")
	if !pk[0].Prepend(14) || pk[0].Len != 74 || pk[0].Off != 242 {
		t.Fatalf("Prepend: %+v", pk[0])
	}
	if string(p.Data(&pk[0])[14:19]) != "hello" {
		t.Fatal("data moved")
	}
	if pk[0].Prepend(1000) || !pk[0].Adj(14) || pk[0].Adj(1000) || !pk[0].Trim(10) || pk[0].Len != 50 {
		t.Fatalf("Adj/Trim/Prepend bounds: %+v", pk[0])
	}
	addr := p.Addr(pk[0].Frame) + uint64(pk[0].Off)
	if f, ok := p.FrameAt(addr); !ok || f != pk[0].Frame {
		t.Fatalf("FrameAt(%d) = %d,%v", addr, f, ok)
	}
	if _, ok := p.FrameAt(100 * 2048); ok {
		t.Fatal("FrameAt past the region")
	}
	c.Free(pk[:])
	c.Flush()
}

func TestPoolExhaustion(t *testing.T) {
	p := newTestPool(t, 64)
	c := p.NewCache(16)
	buf := make([]Frame, 100)
	if n := c.Get(buf); n != 64 {
		t.Fatalf("got %d of 64 frames", n)
	}
	if n := c.Get(buf[:1]); n != 0 {
		t.Fatalf("got %d from an empty pool", n)
	}
	if s := p.Stats(); s.Exhausted != 2 || s.Free != 0 {
		t.Fatalf("stats %+v", s)
	}
	c.Put(buf[:64])
	c.Flush()
	if s := p.Stats(); s.Free != 64 {
		t.Fatalf("stats after return %+v", s)
	}
}

func TestPoolDoubleFree(t *testing.T) {
	p := newTestPool(t, 32)
	c := p.NewCache(8)
	var f [2]Frame
	c.Get(f[:])
	c.Put(f[:1])
	c.Put(f[:1])                // the same frame again: refused
	c.Put([]Frame{Frame(1000)}) // not of this pool: refused
	p.Put(f[:1])                // double free straight to the pool: refused
	if s := p.Stats(); s.BadFrees != 3 {
		t.Fatalf("BadFrees %d, want 3", s.BadFrees)
	}
	c.Put(f[1:])
	c.Flush()
	// Every frame is back exactly once.
	all := make([]Frame, 64)
	n := p.Get(all)
	if n != 32 {
		t.Fatalf("pool returned %d frames, want 32", n)
	}
	seen := map[Frame]bool{}
	for _, fr := range all[:n] {
		if seen[fr] {
			t.Fatalf("frame %d twice in the free list", fr)
		}
		seen[fr] = true
	}
	p.Put(all[:n])
}

// TestPoolAccounting runs workers that get and put frames through their own caches
// and hand frames to each other through a ring, then checks that every frame is back
// exactly once.
func TestPoolAccounting(t *testing.T) {
	const frames = 4096
	p := newTestPool(t, frames)
	handoff, _ := NewRing[Frame](8192, RingMPMC)
	iters := 20000
	if raceEnabled {
		iters = 4000
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := p.NewCache(64)
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			var held []Frame
			buf := make([]Frame, 64)
			for i := 0; i < iters; i++ {
				switch rng.IntN(4) {
				case 0: // take
					n := c.Get(buf[:1+rng.IntN(64)])
					for _, f := range buf[:n] {
						p.Bytes(f)[0] = byte(w) // own it: write to it
					}
					held = append(held, buf[:n]...)
				case 1: // give back
					k := rng.IntN(len(held) + 1)
					c.Put(held[len(held)-k:])
					held = held[:len(held)-k]
				case 2: // hand to another worker
					k := rng.IntN(len(held) + 1)
					n := handoff.Enqueue(held[len(held)-k:])
					held = held[:len(held)-k+(k-n)]
					_ = n
				case 3: // take from another worker
					n := handoff.Dequeue(buf[:rng.IntN(64)])
					held = append(held, buf[:n]...)
				}
			}
			c.Put(held)
			c.Flush()
		}()
	}
	wg.Wait()
	rest := make([]Frame, 8192)
	n := handoff.Dequeue(rest)
	p.Put(rest[:n])

	s := p.Stats()
	if s.Free != frames || s.BadFrees != 0 {
		t.Fatalf("after the run: %+v, want all %d free and no bad frees", s, frames)
	}
	all := make([]Frame, frames)
	if p.Get(all) != frames {
		t.Fatal("could not take every frame back")
	}
	seen := make([]bool, frames)
	for _, f := range all {
		if seen[f] {
			t.Fatalf("frame %d twice", f)
		}
		seen[f] = true
	}
	p.Put(all)
}

func TestPoolCloseReportsLeak(t *testing.T) {
	p, err := NewPool(PoolOptions{Frames: 8, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	var f [1]Frame
	p.Get(f[:])
	if err := p.Close(); err == nil {
		t.Fatal("Close with a frame out: no error")
	}
}

func TestPoolZeroAlloc(t *testing.T) {
	p := newTestPool(t, 1024)
	c := p.NewCache(128)
	var frames [32]Frame
	var pkts [32]Pkt
	allocs := testing.AllocsPerRun(1000, func() {
		n := c.Get(frames[:])
		c.Put(frames[:n])
		n = c.Alloc(pkts[:])
		c.Free(pkts[:n])
		n = p.Get(frames[:])
		p.Put(frames[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per round, want 0", allocs)
	}
	c.Flush()
}

func TestPoolSharedFd(t *testing.T) {
	p, err := NewPool(PoolOptions{Frames: 16, Shared: true, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	if p.Fd() < 0 {
		t.Fatal("shared pool has no fd")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestPoolHugepages(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFeature(t, "free 2 MiB hugepages (make deps reserves them)", func() error {
		free, err := os.ReadFile("/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages")
		if err != nil {
			return err
		}
		if n, _ := strconv.Atoi(strings.TrimSpace(string(free))); n < 4 {
			return fmt.Errorf("nr_hugepages is %d", n)
		}
		return nil
	})
	p, err := NewPool(PoolOptions{Frames: 2048, Huge: HugeRequire, Shared: true})
	if err != nil {
		t.Fatalf("hugepage pool: %v", err)
	}
	if !p.Huge() {
		t.Fatal("pool not on hugepages")
	}
	var f [1]Frame
	p.Get(f[:])
	p.Bytes(f[0])[0] = 1
	p.Put(f[:])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// cachePort is a port that only uses PortCaches.
type cachePort struct {
	RingPort
	c PortCaches
}

func (p *cachePort) UseCaches(rx, tx *Cache) error { return p.c.Use(rx, tx) }

func TestShareCache(t *testing.T) {
	pool, err := NewPool(PoolOptions{Frames: 256, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	other, err := NewPool(PoolOptions{Frames: 64, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	p := &cachePort{c: NewPortCaches(pool, 16)}
	// The port's own caches hold frames; taking a shared cache returns them.
	var fr [8]Frame
	if p.c.Rx.Get(fr[:]) != 8 {
		t.Fatal("get")
	}
	p.c.Tx.Put(fr[:])
	if p.c.Rx.Len() == 0 || p.c.Tx.Len() == 0 {
		t.Fatal("own caches empty")
	}
	if err := ShareCache(other.NewCache(0), p); err != ErrForeignCache {
		t.Fatalf("a cache of another pool: %v", err)
	}
	w := pool.NewCache(0)
	// Through a capture wrapper too, as the vRouter wraps every port.
	if err := ShareCache(w, NewCapturePort(p, pool), NewCapturePort(&RingPort{}, pool)); err != nil {
		t.Fatal(err)
	}
	if p.c.Rx != w || p.c.Tx != w || pool.Stats().Free != pool.Frames() {
		t.Fatalf("after ShareCache: rx %p tx %p worker %p, %d of %d free", p.c.Rx, p.c.Tx, w, pool.Stats().Free, pool.Frames())
	}
	// Close leaves the worker's cache alone.
	if w.Get(fr[:4]) != 4 {
		t.Fatal("get")
	}
	w.Put(fr[:4])
	n := w.Len()
	p.c.Close()
	if w.Len() != n {
		t.Fatal("Close flushed a shared cache")
	}
	w.Flush()
}

// TestAppendLenLimit: in a 64 KiB frame a packet starting at offset 0 cannot grow to
// 65536 bytes, which Pkt.Len (16 bits) cannot hold; Append refuses instead of
// wrapping the length to 0. Found in review.
func TestAppendLenLimit(t *testing.T) {
	p, err := NewPool(PoolOptions{Frames: 1, FrameSize: MaxFrameSize, Headroom: 128, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := p.NewCache(1)
	var pk [1]Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("alloc")
	}
	defer func() { c.Free(pk[:]); c.Flush() }()
	if !pk[0].Prepend(128) { // Off 0, Len 128
		t.Fatal("prepend")
	}
	if p.Append(&pk[0], MaxFrameSize-128) {
		t.Fatalf("Append to %d bytes succeeded; Len is now %d", MaxFrameSize, pk[0].Len)
	}
	if pk[0].Len != 128 {
		t.Fatalf("a refused Append changed Len to %d", pk[0].Len)
	}
	if !p.Append(&pk[0], MaxFrameSize-129) || pk[0].Len != 0xffff {
		t.Fatalf("Append to 65535 bytes: Len %d", pk[0].Len)
	}
}

// TestPortCachesSmallPool: a port with caches of its own (NewPortCaches, default size)
// on a pool of 256 frames receives into frames of its Rx cache and frees what it sent
// to its Tx cache. That cache spilled only once it held twice DefaultCacheSize (512)
// frames, more than the pool has, so after eight bursts it held every frame and Rx
// found none, for ever, with no frame in use. Every round must get frames.
func TestPortCachesSmallPool(t *testing.T) {
	p := newTestPool(t, 256)
	pc := NewPortCaches(p, 0)
	defer pc.Close()
	var pkts [32]Pkt
	for round := 0; round < 100; round++ {
		n := pc.Rx.Alloc(pkts[:])
		if n == 0 {
			t.Fatalf("round %d: no frame for Rx with none in use: Rx cache %d, Tx cache %d, pool %d",
				round, pc.Rx.Len(), pc.Tx.Len(), p.Stats().Free)
		}
		pc.Tx.Free(pkts[:n])
	}
}

// TestAppendHugeN: Append summed offset, length and n in an int, so an n near
// math.MaxInt overflowed both bounds checks to negative sums, and Append said yes
// and wrapped Len. It must refuse any n past the frame's end.
func TestAppendHugeN(t *testing.T) {
	p := newTestPool(t, 4)
	c := p.NewCache(1)
	var pk [1]Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("alloc")
	}
	defer func() { c.Free(pk[:]); c.Flush() }()
	if !p.Append(&pk[0], 1) {
		t.Fatal("Append 1")
	}
	for _, n := range []int{math.MaxInt, math.MaxInt - 100, math.MaxInt - p.FrameSize()} {
		if p.Append(&pk[0], n) {
			t.Errorf("Append(%d) to a 1-byte packet succeeded; Len is now %d", n, pk[0].Len)
		}
		if pk[0].Len != 1 {
			t.Fatalf("a refused Append changed Len to %d", pk[0].Len)
		}
	}
}

// TestBatchGrowOverflow: Grow's capacity check added n to the batch's length, which
// overflows for an n near math.MaxInt; the check passed and the length went
// negative, where it should panic as for any n beyond the room.
func TestBatchGrowOverflow(t *testing.T) {
	var b Batch
	b.Push(Pkt{})
	defer func() {
		if recover() == nil {
			t.Errorf("Grow(math.MaxInt) did not panic; Len is %d", b.Len())
		}
	}()
	b.Grow(math.MaxInt)
}

// TestPoolStatsFreeWithinFrames reads Stats while goroutines take and return frames:
// Free must never exceed Frames. Ring.Len read the consumer tail, then the producer
// tail; frames taken and returned between the two loads counted twice, so a pool of
// 5 frames (a free ring of 8) reported hundreds free.
func TestPoolStatsFreeWithinFrames(t *testing.T) {
	p := newTestPool(t, 5)
	var stop sync.WaitGroup
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		stop.Add(1)
		go func() {
			defer stop.Done()
			var f [1]Frame
			for {
				select {
				case <-done:
					return
				default:
				}
				if p.Get(f[:]) == 1 {
					p.Put(f[:])
				}
			}
		}()
	}
	worst := 0
	for i := 0; i < 1000000; i++ {
		worst = max(worst, p.Stats().Free)
	}
	close(done)
	stop.Wait()
	if worst > 5 {
		t.Errorf("Stats().Free reached %d in a pool of 5 frames", worst)
	}
	if f := p.Stats().Free; f != 5 {
		t.Errorf("after the run %d frames free, want 5", f)
	}
}
