package vring_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/dpkit/dpkit/vring"
)

// TestPackedDirect drives a packed device with PeekDirect/UseDirect where it can
// and Pop/Push where it cannot (chains, read-only buffers, a buffer in flight),
// across several laps of an odd-sized ring, and checks that the driver gets every
// buffer back once, in ring order, with the length the device gave, and that
// PeekDirect refuses what it must.
func TestPackedDirect(t *testing.T) {
	const n = 6 // not a power of two: the wrap is not on a cache line boundary
	p := newPair(t, "packed", n, 0)
	dev := p.dev.(*vring.PackedDevice)
	bufs := p.g.Alloc(64*n, 64)
	chains := makeChains(1, 4)
	used := make([]vring.Used, n)

	if err := dev.UseDirect(1); !errors.Is(err, vring.ErrInvalid) {
		t.Fatalf("UseDirect without PeekDirect: %v", err)
	}
	if _, _, _, ok := dev.PeekDirect(); ok {
		t.Fatal("PeekDirect on an empty ring")
	}
	seq := 0
	for lap := 0; lap < 7; lap++ {
		// What the driver offers this lap, by kind: w a writable buffer, r a
		// read-only one, c a two-descriptor chain.
		kinds := []string{"wwwwww", "wrwcw", "cwwwr", "wwc", "rrwww", "wwwww", "ccww"}[lap]
		type want struct {
			id     uint16
			length uint32
		}
		var wants []want
		for i, k := range kinds {
			a := bufs + uint64(64*(i%n))
			var segs []vring.Seg
			switch k {
			case 'w':
				segs = []vring.Seg{{Addr: a, Len: 64, Write: true}}
			case 'r':
				segs = []vring.Seg{{Addr: a, Len: 64}}
			case 'c':
				segs = []vring.Seg{{Addr: a, Len: 16}, {Addr: a + 16, Len: 48, Write: true}}
			}
			id, err := p.drv.Add(segs)
			if err != nil {
				t.Fatalf("lap %d: add %c: %v", lap, k, err)
			}
			wants = append(wants, want{id: id})
		}
		p.drv.Publish()
		// The device: direct where it can, in ring order.
		for i, k := range kinds {
			addr, ln, write, ok := dev.PeekDirect()
			if ok != (k != 'c') {
				t.Fatalf("lap %d buffer %d (%c): PeekDirect ok=%v", lap, i, k, ok)
			}
			if ok && write == (k == 'w') && ln == 64 {
				if k == 'w' {
					b, err := p.g.Mem.Slice(addr, 8)
					if err != nil {
						t.Fatal(err)
					}
					binary.LittleEndian.PutUint64(b, uint64(seq))
				}
				wants[i].length = uint32(8 + seq%7)
				if k == 'r' {
					wants[i].length = 0
				}
				if err := dev.UseDirect(wants[i].length); err != nil {
					t.Fatal(err)
				}
				if err := dev.UseDirect(1); !errors.Is(err, vring.ErrInvalid) {
					t.Fatalf("second UseDirect for one PeekDirect: %v", err)
				}
				seq++
				continue
			}
			if ok {
				t.Fatalf("lap %d buffer %d (%c): write=%v len=%d", lap, i, k, write, ln)
			}
			if c, err := dev.Pop(chains); c != 1 || err != nil {
				t.Fatalf("lap %d buffer %d: pop %d %v", lap, i, c, err)
			}
			if _, _, _, ok := dev.PeekDirect(); ok {
				t.Fatal("PeekDirect with a chain in flight")
			}
			wants[i].length = 48
			used[0] = chains[0].Used(48)
			if err := dev.Push(used[:1]); err != nil {
				t.Fatal(err)
			}
		}
		if lap%2 == 0 {
			dev.NeedNotify()
		} else {
			dev.Base() // publishes too, as GET_VRING_BASE needs
		}
		got := 0
		for got < len(wants) {
			k, err := p.drv.Collect(used)
			if err != nil || k == 0 {
				t.Fatalf("lap %d: collected %d of %d: %v", lap, got, len(wants), err)
			}
			for _, u := range used[:k] {
				if w := wants[got]; u.ID != w.id || u.Len != w.length {
					t.Fatalf("lap %d: used %d is id %d len %d, want %d %d", lap, got, u.ID, u.Len, w.id, w.length)
				}
				got++
			}
		}
	}
}

// TestPackedDirectLimits checks that PeekDirect leaves a buffer longer than the
// queue's byte limit to Pop, which refuses it.
func TestPackedDirectLimits(t *testing.T) {
	p := newDevice(t, "packed", 4, vring.Options{MaxChainBytes: 1000})
	dev := p.dev.(*vring.PackedDevice)
	a := p.g.Alloc(4096, 64)
	p.packed.Chain(0, vring.Seg{Addr: a, Len: 1001, Write: true})
	if _, _, _, ok := dev.PeekDirect(); ok {
		t.Fatal("PeekDirect took a buffer over the byte limit")
	}
	if _, err := dev.Pop(makeChains(1, 2)); err == nil {
		t.Fatal("Pop took a buffer over the byte limit")
	}
}

// TestPackedDirectConcurrent runs the direct path against a driver on another
// goroutine: the device writes a sequence number into each buffer and the driver
// checks them in order, with the lengths.
func TestPackedDirectConcurrent(t *testing.T) {
	count := 2_000_000
	if testing.Short() || raceEnabled {
		count = 200_000
	}
	p := newPair(t, "packed", 256, vring.FeatureEventIdx)
	dev := p.dev.(*vring.PackedDevice)
	n := p.drv.Free()
	base := p.g.Alloc(16*n, 16)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for seq := 0; seq < count; {
			took := 0
			for ; took < 32 && seq < count; took++ {
				addr, ln, write, ok := dev.PeekDirect()
				if !ok {
					break
				}
				b, err := p.g.Mem.Slice(addr, 8)
				if err != nil || !write || ln != 16 {
					errc <- fmt.Errorf("buffer %d: %v write=%v len=%d", seq, err, write, ln)
					return
				}
				binary.LittleEndian.PutUint64(b, uint64(seq)^magic)
				if err := dev.UseDirect(uint32(8 + seq%8)); err != nil {
					errc <- err
					return
				}
				seq++
			}
			dev.NeedNotify()
			if took == 0 {
				runtime.Gosched()
			}
		}
	}()
	slotOf := make([]int, n)
	free := make([]int, 0, n)
	for s := n - 1; s >= 0; s-- {
		free = append(free, s)
	}
	done := make([]vring.Used, 64)
	recv := 0
	for recv < count {
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
		for len(free) > 0 {
			s := free[len(free)-1]
			id, err := p.drv.Add([]vring.Seg{{Addr: base + uint64(16*s), Len: 16, Write: true}})
			if err != nil {
				break
			}
			free = free[:len(free)-1]
			slotOf[id] = s
		}
		p.drv.Publish()
		k, err := p.drv.Collect(done)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range done[:k] {
			s := slotOf[u.ID]
			got := binary.LittleEndian.Uint64(p.g.Bytes(base+uint64(16*s), 8))
			if got != uint64(recv)^magic || u.Len != uint32(8+recv%8) {
				t.Fatalf("buffer %d: value %#x len %d", recv, got^magic, u.Len)
			}
			free = append(free, s)
			recv++
		}
		if k == 0 {
			runtime.Gosched()
		}
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestPackedDirectSizes runs the direct path alone over several laps of rings of
// odd sizes (1 included), publishing after every few buffers, and checks what the
// driver collects: nothing before the publication, then every buffer once, in
// order.
func TestPackedDirectSizes(t *testing.T) {
	for _, n := range []int{1, 3, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			p := newPair(t, "packed", n, 0)
			dev := p.dev.(*vring.PackedDevice)
			a := p.g.Alloc(64, 64)
			used := make([]vring.Used, n)
			for lap := 0; lap < 4*n+3; lap++ {
				k := 1 + lap%n
				ids := make([]uint16, k)
				for i := range ids {
					id, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 64, Write: true}})
					if err != nil {
						t.Fatal(err)
					}
					ids[i] = id
				}
				p.drv.Publish()
				for i := range ids {
					if _, _, _, ok := dev.PeekDirect(); !ok {
						t.Fatalf("lap %d: buffer %d not offered", lap, i)
					}
					if err := dev.UseDirect(uint32(i + 1)); err != nil {
						t.Fatal(err)
					}
				}
				if _, _, _, ok := dev.PeekDirect(); ok {
					t.Fatalf("lap %d: a buffer beyond those offered", lap)
				}
				if c, err := p.drv.Collect(used); c != 0 || err != nil {
					t.Fatalf("lap %d: collected %d before the publication (%v)", lap, c, err)
				}
				dev.NeedNotify()
				c, err := p.drv.Collect(used)
				if c != k || err != nil {
					t.Fatalf("lap %d: collected %d of %d: %v", lap, c, k, err)
				}
				for i, u := range used[:c] {
					if u.ID != ids[i] || u.Len != uint32(i+1) {
						t.Fatalf("lap %d: used %d is %+v, want id %d len %d", lap, i, u, ids[i], i+1)
					}
				}
			}
		})
	}
}

// TestPackedDirectRefusals covers the states PeekDirect and UseDirect must refuse:
// used and available positions set apart by SetBase (SET_VRING_BASE), where the
// used descriptor would not go into the buffer's own slot, and a PeekDirect
// followed by a Pop, after which the peeked buffer is the Pop's.
func TestPackedDirectRefusals(t *testing.T) {
	t.Run("positions-apart", func(t *testing.T) {
		p := newDevice(t, "packed", 4, vring.Options{})
		dev := p.dev.(*vring.PackedDevice)
		a := p.g.Alloc(64, 64)
		p.packed.Chain(3, vring.Seg{Addr: a, Len: 64, Write: true})
		p.packed.Chain(5, vring.Seg{Addr: a, Len: 64, Write: true})
		p.packed.Chain(7, vring.Seg{Addr: a, Len: 64, Write: true})
		dev.SetBase(2, true, 0, true)
		if _, _, _, ok := dev.PeekDirect(); ok {
			t.Fatal("PeekDirect with the used position apart from the available one")
		}
		// Pop and Push still serve it, writing the used descriptor at slot 0.
		c := makeChains(1, 1)
		if k, err := dev.Pop(c); k != 1 || err != nil || c[0].ID != 7 {
			t.Fatalf("pop %d %v id %d", k, err, c[0].ID)
		}
		if err := dev.Push([]vring.Used{c[0].Used(9)}); err != nil {
			t.Fatal(err)
		}
		if d := p.packed.GetDesc(0); d.ID != 7 || d.Len != 9 {
			t.Fatalf("slot 0 after push: %+v", d)
		}
	})
	t.Run("peek-then-pop", func(t *testing.T) {
		p := newPair(t, "packed", 4, 0)
		dev := p.dev.(*vring.PackedDevice)
		a := p.g.Alloc(64, 64)
		for i := 0; i < 2; i++ {
			if _, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 64, Write: true}}); err != nil {
				t.Fatal(err)
			}
		}
		p.drv.Publish()
		if _, _, _, ok := dev.PeekDirect(); !ok {
			t.Fatal("no buffer")
		}
		c := makeChains(1, 1)
		if k, err := dev.Pop(c); k != 1 || err != nil {
			t.Fatal(k, err)
		}
		if err := dev.UseDirect(10); !errors.Is(err, vring.ErrInvalid) {
			t.Fatalf("UseDirect after Pop: %v", err)
		}
		if err := dev.Push([]vring.Used{c[0].Used(20)}); err != nil {
			t.Fatal(err)
		}
		dev.NeedNotify()
		used := make([]vring.Used, 4)
		if k, err := p.drv.Collect(used); k != 1 || err != nil || used[0].Len != 20 {
			t.Fatalf("collected %d %v %+v", k, err, used[:k])
		}
	})
}
