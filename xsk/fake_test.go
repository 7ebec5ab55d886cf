package xsk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/afxdp"
	"github.com/dpkit/dpkit/pmd"
	"golang.org/x/sys/unix"
)

// fakeKernel plays the kernel's side of a socket's four rings, laid over anonymous
// memory, so Port's handling of descriptors can be tested (and fuzzed) unprivileged.
type fakeKernel struct {
	fill *afxdp.ConsRing[uint64]
	comp *afxdp.ProdRing[uint64]
	rx   *afxdp.ProdRing[afxdp.Desc]
	tx   *afxdp.ConsRing[afxdp.Desc]
}

const fakeRing = 64

// fakePool is the 256-frame pool of the fake-kernel tests, closed when the test ends.
func fakePool(t testing.TB) *pmd.Pool {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	return pool
}

// poolWhole checks, after a port's Close, that every frame is back in the pool and
// none was freed twice.
func poolWhole(t testing.TB, pool *pmd.Pool) {
	t.Helper()
	if st := pool.Stats(); st.Free != st.Frames || st.BadFrees != 0 {
		t.Errorf("after Close %d of %d frames free, %d bad frees", st.Free, st.Frames, st.BadFrees)
	}
}

func newFakePort(t testing.TB, pool *pmd.Pool, sg bool) (*Port, *fakeKernel) {
	t.Helper()
	return newFakePortAt(t, pool, sg, 0)
}

// newFakePortAt is newFakePort with every ring's free-running producer and consumer
// indices starting at start (near 2^32 to test their wrap-around).
func newFakePortAt(t testing.TB, pool *pmd.Pool, sg bool, start uint32) (*Port, *fakeKernel) {
	t.Helper()
	const ringBytes = 64 + fakeRing*16
	mem, err := unix.Mmap(-1, 0, 4*ringBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	off := afxdp.RingOffsets{Producer: 0, Consumer: 8, Flags: 16, Desc: 64}
	part := func(i int) []byte { return mem[i*ringBytes : (i+1)*ringBytes] }
	for i := range 4 {
		binary.LittleEndian.PutUint32(part(i)[off.Producer:], start)
		binary.LittleEndian.PutUint32(part(i)[off.Consumer:], start)
	}
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	u, err := NewUMEM(UMEMOptions{Pool: pool})
	must(err)
	s := &Socket{fd: -1, umem: u, ifindex: 1, wakeup: true, sg: sg, maxSegs: txMaxSegs(1, sg, false)}
	s.maps[0] = mem
	k := &fakeKernel{}
	s.fill, err = afxdp.NewProdRing[uint64](part(0), off, fakeRing)
	must(err)
	k.fill, err = afxdp.NewConsRing[uint64](part(0), off, fakeRing)
	must(err)
	s.comp, err = afxdp.NewConsRing[uint64](part(1), off, fakeRing)
	must(err)
	k.comp, err = afxdp.NewProdRing[uint64](part(1), off, fakeRing)
	must(err)
	s.rx, err = afxdp.NewConsRing[afxdp.Desc](part(2), off, fakeRing)
	must(err)
	k.rx, err = afxdp.NewProdRing[afxdp.Desc](part(2), off, fakeRing)
	must(err)
	s.tx, err = afxdp.NewProdRing[afxdp.Desc](part(3), off, fakeRing)
	must(err)
	k.tx, err = afxdp.NewConsRing[afxdp.Desc](part(3), off, fakeRing)
	must(err)
	u.socks = append(u.socks, s)
	p := &Port{
		s: s, pool: pool, u: u, nframes: uint64(pool.Frames()), fsize: uint64(pool.FrameSize()),
		owner: make([]uint8, pool.Frames()), caches: pmd.NewPortCaches(pool, portCache),
		txSegs: txSegLimit(s),
	}
	p.refill()
	return p, k
}

// FuzzPortHostileKernel feeds a Port descriptors from a kernel that may lie: addresses
// it was never given, duplicates, lengths past the frame, stray continuation flags. The
// port must never panic, never hand out a frame twice, and after Close every frame must
// be back in the pool exactly once.
func FuzzPortHostileKernel(f *testing.F) {
	f.Add([]byte{0x01, 0x21, 0x41, 0x61, 0x81, 0x01, 0xa1, 0xc1})
	f.Add([]byte{0x05, 0x45, 0x85, 0xe5, 0x25, 0x10, 0x12, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99})
	f.Fuzz(func(t *testing.T, ops []byte) {
		pool := fakePool(t)
		sg := len(ops) > 0 && ops[0]&1 == 1
		p, k := newFakePort(t, pool, sg)
		held := map[pmd.Frame]bool{}
		var appBuf pmd.Batch
		cache := pool.NewCache(16)
		word := func(i int) uint64 {
			var b [8]byte
			copy(b[:], ops[min(i, len(ops)):])
			return binary.LittleEndian.Uint64(b[:])
		}
		for i, op := range ops {
			n := uint32(op>>5) + 1
			switch op & 7 {
			case 0, 1: // kernel receives n frames honestly
				got, idx := k.fill.Peek(n)
				r, ridx := k.rx.Reserve(got)
				for j := range r {
					a := k.fill.Get(idx + j)
					k.rx.Set(ridx+j, afxdp.Desc{Addr: a + 256, Len: 60})
				}
				k.fill.Release(r)
				k.rx.Submit()
			case 2: // kernel writes a forged rx descriptor
				r, ridx := k.rx.Reserve(1)
				if r == 1 {
					w := word(i + 1)
					k.rx.Set(ridx, afxdp.Desc{Addr: w % (1 << 20), Len: uint32(w >> 40), Options: uint32(w>>32) & 1})
					k.rx.Submit()
				}
			case 3: // application receives and holds
				m := p.Rx(appBuf.Room()[:min(int(n)*4, len(appBuf.Room()))])
				for _, pk := range appBuf.Room()[:m] {
					if held[pk.Frame] {
						t.Fatalf("frame %d handed out twice", pk.Frame)
					}
					if int(pk.Off)+int(pk.Len) > pool.FrameSize() {
						t.Fatalf("packet past its frame: %+v", pk)
					}
					held[pk.Frame] = true
				}
				appBuf.Grow(m)
			case 4: // application sends what it holds, some as chains, some forged
				if op&0x80 != 0 {
					w := word(i + 1)
					for j := range appBuf.Pkts() {
						appBuf.Pkts()[j].Flags ^= pmd.PktFlags(w>>j) & pmd.PktMore
					}
					appBuf.Push(pmd.Pkt{Frame: pmd.Frame(pool.Frames() + int(w%7)), Len: 60})
				}
				sent := appBuf.Len() - len(appBuf.Pkts()[p.Tx(appBuf.Pkts()):])
				for _, pk := range appBuf.Pkts()[:sent] {
					delete(held, pk.Frame)
				}
				rest := appBuf.Pkts()[sent:]
				appBuf.Reset()
				for _, pk := range rest {
					appBuf.Push(pk)
				}
			case 5: // kernel transmits and completes honestly
				got, idx := k.tx.Peek(n)
				c, cidx := k.comp.Reserve(got)
				for j := range c {
					k.comp.Set(cidx+j, k.tx.Get(idx+j).Addr)
				}
				k.tx.Release(c)
				k.comp.Submit()
			case 6: // kernel forges a completion
				c, cidx := k.comp.Reserve(1)
				if c == 1 {
					k.comp.Set(cidx, word(i+1)%(1<<20))
					k.comp.Submit()
				}
			case 7: // application frees what it holds
				for _, pk := range appBuf.Pkts() {
					delete(held, pk.Frame)
				}
				for _, pk := range appBuf.Pkts() {
					if int(pk.Frame) < pool.Frames() {
						cache.Free([]pmd.Pkt{pk})
					}
				}
				appBuf.Reset()
			}
		}
		for _, pk := range appBuf.Pkts() {
			if int(pk.Frame) >= pool.Frames() {
				continue
			}
			cache.Free([]pmd.Pkt{pk})
		}
		appBuf.Reset()
		cache.Free(appBuf.Pkts())
		cache.Flush()
		p.Close()
		if st := pool.Stats(); st.Free != st.Frames || st.BadFrees != 0 {
			t.Fatalf("after Close %d of %d frames free, %d bad frees", st.Free, st.Frames, st.BadFrees)
		}
	})
}

func TestOptionsValidate(t *testing.T) {
	bad := []Config{{Queue: -1}, {RxSize: 3}, {FillSize: -1}, {RxSize: -1, TxSize: -1}, {Bind: 7}, {BusyPoll: -1},
		{BusyPoll: 500 * time.Nanosecond}, {BusyPoll: math.MaxInt32*time.Microsecond + time.Microsecond}, {BusyPoll: time.Microsecond, BusyPollBudget: 1 << 16}}
	for _, c := range bad {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if err := (&Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	for _, o := range []UMEMOptions{{FrameSize: 1024}, {FrameSize: 8192}, {Frames: -1}, {Headroom: 4000}} {
		if err := o.Validate(); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if err := (&UMEMOptions{FrameSize: 4096, Unaligned: true}).Validate(); err != nil {
		t.Errorf("unaligned 4096: %v", err)
	}
	if err := (&UMEMOptions{FrameSize: 4096}).Validate(); err != nil {
		t.Errorf("aligned 4096: %v", err)
	}
	if err := (&ProgramOptions{MaxQueues: -1}).Validate(); err == nil {
		t.Error("MaxQueues -1 accepted")
	}
}

// TestFrameSizeAbovePage: the kernel refuses a UMEM chunk larger than a page in either
// mode (xdp_umem_reg), so Validate must refuse such a frame size, for the UMEM's own
// pool and for a caller's. Before, Unaligned let it through and the first socket failed.
func TestFrameSizeAbovePage(t *testing.T) {
	big := 2 * os.Getpagesize()
	for _, o := range []UMEMOptions{{FrameSize: big}, {FrameSize: big, Unaligned: true}} {
		if err := o.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: %v, want ErrOptions", o, err)
		}
	}
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64, FrameSize: big, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, unaligned := range []bool{false, true} {
		if _, err := NewUMEM(UMEMOptions{Pool: pool, Unaligned: unaligned}); !errors.Is(err, ErrOptions) {
			t.Errorf("pool of %d-byte frames, unaligned %v: %v, want ErrOptions", big, unaligned, err)
		}
	}
}

// BenchmarkFakeKernel measures the port's own per-packet cost, with the kernel's side
// played by plain ring operations (no syscalls): what dpkit adds on top of the kernel.
func BenchmarkFakeKernel(b *testing.B) {
	for _, burst := range []int{32, 64} {
		b.Run(fmt.Sprintf("rxdrop/burst%d", burst), func(b *testing.B) {
			pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Huge: pmd.HugeNever})
			if err != nil {
				b.Fatal(err)
			}
			p, k := newFakePort(b, pool, false)
			var pkts [pmd.MaxBurst]pmd.Pkt
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				got, idx := k.fill.Peek(uint32(burst))
				r, ridx := k.rx.Reserve(got)
				for j := range r {
					k.rx.Set(ridx+j, afxdp.Desc{Addr: k.fill.Get(idx+j) + 256, Len: 60})
				}
				k.fill.Release(r)
				k.rx.Submit()
				n := p.Rx(pkts[:burst])
				p.Recycle(pkts[:n])
				done += n
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/pkt")
		})
		b.Run(fmt.Sprintf("txonly/burst%d", burst), func(b *testing.B) {
			pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Huge: pmd.HugeNever})
			if err != nil {
				b.Fatal(err)
			}
			p, k := newFakePort(b, pool, false)
			cache := pool.NewCache(64)
			var bt pmd.Batch
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				room := bt.Room()[:burst-bt.Len()]
				got := cache.Alloc(room)
				for i := range room[:got] {
					room[i].Len = 60
				}
				bt.Grow(got)
				done += bt.Tx(p)
				t, tidx := k.tx.Peek(uint32(burst))
				c, cidx := k.comp.Reserve(t)
				for j := range c {
					k.comp.Set(cidx+j, k.tx.Get(tidx+j).Addr)
				}
				k.tx.Release(c)
				k.comp.Submit()
			}
		})
	}
}

// TestKickCounters: the rx and tx goroutines both wake the kernel, and a third reads
// Stats meanwhile; every wakeup is counted (run with -race).
func TestKickCounters(t *testing.T) {
	pool := fakePool(t)
	p, _ := newFakePort(t, pool, false)
	const each = 1000
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		for range each {
			p.s.wakeRx()
		}
	}()
	go func() {
		defer wg.Done()
		for range each {
			p.s.Kick()
		}
	}()
	go func() {
		defer wg.Done()
		for range each / 10 {
			p.s.Stats()
		}
	}()
	wg.Wait()
	if st, _ := p.s.Stats(); st.Kicks != 2*each {
		t.Fatalf("%d wakeups counted, %d made", st.Kicks, 2*each)
	}
}

// TestRecycleOverflowOwnership: Recycle with more frames than the fill ring has room
// for frees the rest to the pool only if they are the caller's to give: a frame the
// kernel holds, passed by mistake, must not also become free.
func TestRecycleOverflowOwnership(t *testing.T) {
	pool := fakePool(t)
	p, k := newFakePort(t, pool, false) // its fill ring is full
	n, idx := k.fill.Peek(1)
	if n != 1 {
		t.Fatal("fill ring empty")
	}
	held, ok := pool.FrameAt(k.fill.Get(idx))
	if !ok {
		t.Fatal("fill ring address outside the pool")
	}
	cache := pool.NewCache(0)
	var mine [1]pmd.Pkt
	if cache.Alloc(mine[:]) != 1 {
		t.Fatal("pool empty")
	}
	p.Recycle([]pmd.Pkt{{Frame: held}, mine[0]})
	var all [256]pmd.Pkt
	got := p.caches.Rx.Alloc(all[:])
	seen := false
	for _, pk := range all[:got] {
		if pk.Frame == held {
			t.Fatalf("frame %d, in the kernel's fill ring, was freed by Recycle", held)
		}
		seen = seen || pk.Frame == mine[0].Frame
	}
	if !seen {
		t.Errorf("the caller's frame %d did not go back to the pool", mine[0].Frame)
	}
	p.caches.Rx.Free(all[:got])
}

// TestUseAfterClose: the ring calls a caller may still make after Close (a worker's
// last Recycle, a low-level loop's Fill or Complete) do nothing instead of panicking on
// the unmapped rings, and frames handed to Recycle go back to the pool.
func TestUseAfterClose(t *testing.T) {
	pool := fakePool(t)
	p, _ := newFakePort(t, pool, false)
	var mine [2]pmd.Pkt
	cache := pool.NewCache(0)
	if cache.Alloc(mine[:]) != len(mine) {
		t.Fatal("pool empty")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	p.Recycle(mine[:])
	cache.Flush()
	if n := p.Socket().Fill([]uint64{0}); n != 0 {
		t.Errorf("Fill after Close took %d", n)
	}
	if n := p.Socket().Complete(make([]uint64, 4)); n != 0 {
		t.Errorf("Complete after Close returned %d", n)
	}
	if n := p.Rx(make([]pmd.Pkt, 4)); n != 0 {
		t.Errorf("Rx after Close returned %d", n)
	}
	if st := pool.Stats(); st.Free != st.Frames || st.BadFrees != 0 {
		t.Errorf("after Close and Recycle %d of %d frames free, %d bad frees", st.Free, st.Frames, st.BadFrees)
	}
}

// TestStatsCloseRace: Stats, which any goroutine may call, runs while the socket
// closes. Before, it read the closed flag and the descriptor unsynchronised, so it
// could ask whatever socket reused the number for its counters (run with -race).
func TestStatsCloseRace(t *testing.T) {
	pool := fakePool(t)
	for range 20 {
		p, _ := newFakePort(t, pool, false)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if _, err := p.Socket().Stats(); errors.Is(err, ErrClosed) {
					return
				}
			}
		}()
		p.Close()
		<-done
	}
}

// rxChain has the fake kernel receive one packet into len(lens) fill frames, a chain
// when there are several.
func (k *fakeKernel) rxChain(t testing.TB, lens ...uint32) {
	t.Helper()
	n := uint32(len(lens))
	got, idx := k.fill.Peek(n)
	r, ridx := k.rx.Reserve(got)
	if r != n {
		t.Fatalf("fake kernel: room for %d of %d segments", r, n)
	}
	for j := range r {
		d := afxdp.Desc{Addr: k.fill.Get(idx+j) + 256, Len: lens[j]}
		if j < n-1 {
			d.Options = OptMore
		}
		k.rx.Set(ridx+j, d)
	}
	k.fill.Release(r)
	k.rx.Submit()
}

// TestCountersCountPackets: a multi-buffer chain is one packet in RxPackets and
// TxPackets, as pmd's other ports count it; before, each segment counted.
func TestCountersCountPackets(t *testing.T) {
	pool := fakePool(t)
	p, k := newFakePort(t, pool, true)
	k.rxChain(t, 1000, 1000, 500) // one packet of three segments
	k.rxChain(t, 60)
	var pkts [8]pmd.Pkt
	n := p.Rx(pkts[:])
	if n != 4 {
		t.Fatalf("Rx returned %d segments, want 4", n)
	}
	st := p.Stats()
	if st.RxPackets != 2 || st.RxBytes != 2560 {
		t.Errorf("Rx counted %d packets, %d bytes; want 2, 2560", st.RxPackets, st.RxBytes)
	}
	if got := p.Tx(pkts[:n]); got != n {
		t.Fatalf("Tx took %d of %d", got, n)
	}
	st = p.Stats()
	if st.TxPackets != 2 || st.TxBytes != 2560 {
		t.Errorf("Tx counted %d packets, %d bytes; want 2, 2560", st.TxPackets, st.TxBytes)
	}
	p.Close()
}

// TestBusyPollKicks: with busy polling the kernel leaves the driver's NAPI to the
// socket's syscalls, so an empty Rx and every Tx must make one even when the rings'
// need_wakeup flags are clear; before, only the flags did, and busy polling never ran.
func TestBusyPollKicks(t *testing.T) {
	pool := fakePool(t)
	kicks := func(p *Port) uint64 {
		// The fake socket's descriptor is -1: each wakeup fails, but it is counted.
		return p.s.kicks.Load()
	}
	for _, busy := range []bool{false, true} {
		p, k := newFakePort(t, pool, false)
		p.s.busyPoll = busy
		p.s.zeroCopy = true
		var pkts [4]pmd.Pkt
		p.Rx(pkts[:]) // empty, need_wakeup flag clear
		rx := kicks(p)
		cache := pool.NewCache(0)
		if cache.Alloc(pkts[:1]) != 1 {
			t.Fatal("pool empty")
		}
		pkts[0].Len = 60
		if p.Tx(pkts[:1]) != 1 {
			t.Fatal("Tx took nothing")
		}
		tx := kicks(p) - rx
		// The frame sits in the kernel's tx path: a Tx with nothing to send must still
		// drive zero-copy completions.
		got, _ := k.tx.Peek(fakeRing)
		k.tx.Release(got)
		p.Tx(nil)
		comp := kicks(p) - rx - tx
		want := uint64(0)
		if busy {
			want = 1
		}
		if rx != want || tx != want || comp != want {
			t.Errorf("busy poll %v: %d rx, %d tx, %d completion kicks; want %d each", busy, rx, tx, comp, want)
		}
		cache.Flush()
		p.Close()
	}
}

// allocChain takes n frames from cache and flags all but the last PktMore.
func allocChain(t testing.TB, cache *pmd.Cache, n int) []pmd.Pkt {
	t.Helper()
	pkts := make([]pmd.Pkt, n)
	if cache.Alloc(pkts) != n {
		t.Fatalf("pool has no %d frames", n)
	}
	for i := range pkts {
		pkts[i].Len = 60
		if i < n-1 {
			pkts[i].Flags = pmd.PktMore
		}
	}
	return pkts
}

// TestTxChainLongerThanRing: a chain of more segments than the tx ring holds can never
// be reserved whole. Before, Tx returned 0 for it for ever, and a caller retrying held
// up everything behind it; now it is dropped (DropTooLong) and the next packet goes.
func TestTxChainLongerThanRing(t *testing.T) {
	pool := fakePool(t)
	p, _ := newFakePort(t, pool, true)
	// A zero-copy driver taking long chains: only the ring bounds them.
	p.s.maxSegs = 1 << 10
	p.txSegs = txSegLimit(p.s)
	cache := pool.NewCache(0)
	pkts := append(allocChain(t, cache, fakeRing+1), allocChain(t, cache, 1)...)
	got := 0
	for range 3 {
		if got = p.Tx(pkts); got != 0 {
			break
		}
	}
	if got != len(pkts) {
		t.Fatalf("Tx took %d of %d (a %d-segment chain, then a packet)", got, len(pkts), fakeRing+1)
	}
	st := p.Stats()
	if st.Drops[pmd.DropTooLong] != 1 || st.TxPackets != 1 {
		t.Errorf("%d too long, %d sent; want 1 and 1", st.Drops[pmd.DropTooLong], st.TxPackets)
	}
	cache.Flush()
	p.Close()
	poolWhole(t, pool)
}

// TestRxRewrittenContinuation: Rx cuts a multi-buffer burst after the last descriptor
// that ends a packet, and then reads the descriptors again to deliver them; a kernel
// that flips XDP_PKT_CONTD on a published descriptor between the two reads (here a
// goroutine flipping it on every rx slot) made Rx return a chain whose last Pkt still
// had PktMore, an unfinished packet for the caller to forward or mis-free. Now such a
// packet is dropped as invalid, and every frame is still accounted for.
func TestRxRewrittenContinuation(t *testing.T) {
	pool := fakePool(t)
	p, k := newFakePort(t, pool, true)
	const ringBytes = 64 + fakeRing*16
	rxSlots := p.s.maps[0][2*ringBytes+64 : 3*ringBytes] // newFakePort's rx ring
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stop.Load() {
			for i := 12; i < len(rxSlots); i += 16 { // the low byte of each Options
				rxSlots[i] ^= byte(OptMore)
			}
		}
	}()
	cache := pool.NewCache(0)
	var pkts [4]pmd.Pkt
	unfinished, rounds := 0, 0
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && unfinished == 0; rounds++ {
		if got, _ := k.fill.Peek(1); got == 1 {
			k.rxChain(t, 60)
		}
		n := p.Rx(pkts[:])
		if n > 0 && pkts[n-1].Flags&pmd.PktMore != 0 {
			unfinished++
		}
		cache.Free(pkts[:n])
	}
	stop.Store(true)
	wg.Wait()
	if unfinished > 0 {
		t.Errorf("Rx returned an unfinished chain (round %d)", rounds)
	}
	cache.Flush()
	p.Close()
	poolWhole(t, pool)
}

// TestPortIndexWrap runs packets, single and chained, through a port whose four
// rings' free-running indices start 16 short of 2^32, so every ring wraps: counts,
// order and frame ownership must come out as without the wrap.
func TestPortIndexWrap(t *testing.T) {
	pool := fakePool(t)
	p, k := newFakePortAt(t, pool, true, 0xFFFFFFF0)
	var pkts [16]pmd.Pkt
	const rounds = 200
	segs := 0
	for r := range rounds {
		lens := []uint32{60}
		if r%3 == 0 {
			lens = []uint32{1000, 1000, 500}
		}
		k.rxChain(t, lens...)
		n := p.Rx(pkts[:])
		if n != len(lens) {
			t.Fatalf("round %d: Rx returned %d segments, want %d", r, n, len(lens))
		}
		for i, l := range lens {
			if uint32(pkts[i].Len) != l || (pkts[i].Flags&pmd.PktMore != 0) != (i < len(lens)-1) {
				t.Fatalf("round %d: segment %d is %+v", r, i, pkts[i])
			}
		}
		segs += n
		if got := p.Tx(pkts[:n]); got != n {
			t.Fatalf("round %d: Tx took %d of %d", r, got, n)
		}
		got, idx := k.tx.Peek(fakeRing)
		c, cidx := k.comp.Reserve(got)
		for j := range c {
			k.comp.Set(cidx+j, k.tx.Get(idx+j).Addr)
		}
		k.tx.Release(c)
		k.comp.Submit()
	}
	p.Tx(nil) // reap the last completions
	if n := p.InKernelTx(); n != 0 {
		t.Errorf("%d frames still in the tx path", n)
	}
	st := p.Stats()
	if st.RxPackets != rounds || st.TxPackets != rounds || st.Drops != ([pmd.NumDropReasons]uint64{}) {
		t.Errorf("stats %+v after %d packets (%d segments)", st, rounds, segs)
	}
	p.Close()
	poolWhole(t, pool)
}

// TestTxDroppedFrameNotResent: a packet Tx drops has its frames freed, and the same
// frame given again later in the same call (a caller's mistake Tx must count, not
// act on) is not the caller's to give any more. Before, the port freed the frame and
// then queued it for sending as well, so it was free in the pool while the kernel
// read it (the kernel's completion then freed it a second time), and a chain naming
// a frame twice behind a bad segment freed it twice.
func TestTxDroppedFrameNotResent(t *testing.T) {
	pool := fakePool(t)
	p, k := newFakePort(t, pool, true)
	cache := pool.NewCache(0)
	for i := range 2 {
		var f [2]pmd.Pkt
		if cache.Alloc(f[:i+1]) != i+1 {
			t.Fatal("pool empty")
		}
		F, G := f[0].Frame, f[1].Frame
		pkts := []pmd.Pkt{{Frame: F}, {Frame: F, Len: 60}} // empty, so dropped; then F again
		if i == 1 {
			// A chain spoilt by an empty segment names F twice.
			pkts = []pmd.Pkt{{Frame: F, Len: 60, Flags: pmd.PktMore}, {Frame: G, Flags: pmd.PktMore}, {Frame: F, Len: 60}}
		}
		if got := p.Tx(pkts); got != len(pkts) {
			t.Fatalf("case %d: Tx took %d of %d", i, got, len(pkts))
		}
		if n := p.InKernelTx(); n != 0 {
			t.Errorf("case %d: %d freed frames queued for sending", i, n)
		}
		// The kernel completes whatever was queued.
		got, idx := k.tx.Peek(fakeRing)
		c, cidx := k.comp.Reserve(got)
		for j := range c {
			k.comp.Set(cidx+j, k.tx.Get(idx+j).Addr)
		}
		k.tx.Release(c)
		k.comp.Submit()
		p.Tx(nil)
	}
	if st := p.Stats(); st.TxPackets != 0 || st.Drops[pmd.DropInvalid] != 3 {
		t.Errorf("%d sent, %d invalid; want 0 and 3", st.TxPackets, st.Drops[pmd.DropInvalid])
	}
	cache.Flush()
	p.Close()
	poolWhole(t, pool)
}

// TestTxBudgetValidate: the kernel takes XDP_MAX_TX_SKB_BUDGET only from a socket with
// a tx ring, from 32 (TX_BATCH_SIZE) up to the tx ring's size, and refuses anything
// else with EACCES (xsk_setsockopt). Validate let such budgets through, so NewSocket
// failed after creating the socket with "permission denied", which reads like a
// missing privilege; Validate now names the field (ErrOptions).
func TestTxBudgetValidate(t *testing.T) {
	for _, c := range []Config{
		{TxBudget: 16},                  // below TX_BATCH_SIZE
		{TxBudget: 31},                  //
		{TxSize: 64, TxBudget: 128},     // past the tx ring
		{TxBudget: DefaultRingSize * 2}, // past the default tx ring
		{TxSize: -1, TxBudget: 64},      // no tx ring
	} {
		if err := c.Validate(); !errors.Is(err, ErrOptions) {
			t.Errorf("%+v: Validate %v, want ErrOptions", c, err)
		}
	}
	for _, c := range []Config{{TxBudget: 32}, {TxSize: 64, TxBudget: 64}, {TxBudget: DefaultRingSize}, {TxSize: -1}} {
		if err := c.Validate(); err != nil {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
