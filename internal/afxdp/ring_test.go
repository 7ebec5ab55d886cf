package afxdp

import (
	"encoding/binary"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// testRing lays a producer ring and a consumer ring over one anonymous mapping: the
// consumer plays the kernel's part for the producer and vice versa.
func testRing(t testing.TB, n uint32) (*ProdRing[Desc], *ConsRing[Desc], []byte) {
	mem, err := unix.Mmap(-1, 0, 64+int(n)*SizeofDesc, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Munmap(mem) })
	off := RingOffsets{Producer: 0, Consumer: 8, Flags: 16, Desc: 64}
	p, err := NewProdRing[Desc](mem, off, n)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewConsRing[Desc](mem, off, n)
	if err != nil {
		t.Fatal(err)
	}
	return p, c, mem
}

func TestRingOffsetsChecked(t *testing.T) {
	mem := make([]byte, 256)
	for _, off := range []RingOffsets{
		{Producer: 256, Consumer: 8, Flags: 16, Desc: 64},
		{Producer: 0, Consumer: 8, Flags: 16, Desc: 200},     // slots past the end
		{Producer: 0, Consumer: 8, Flags: 16, Desc: 1 << 63}, // overflow
		{Producer: 2, Consumer: 8, Flags: 16, Desc: 64},      // misaligned
	} {
		if _, err := NewProdRing[Desc](mem, off, 8); err == nil {
			t.Errorf("offsets %+v accepted", off)
		}
	}
	if _, err := NewProdRing[uint64](mem, RingOffsets{0, 8, 64, 16}, 6); err == nil {
		t.Error("size 6 accepted")
	}
}

// FuzzRing drives a producer and a consumer over one ring with operations from the
// input and checks them against a FIFO model: every descriptor comes out once, in
// order, and neither side ever sees more than the ring holds. Some operations corrupt
// the shared indices as a hostile kernel could; the ring must then refuse, not panic or
// over-report.
func FuzzRing(f *testing.F) {
	f.Add([]byte{0x13, 0x82, 0x05, 0x91, 0x44, 0xff, 0x80})
	f.Add([]byte{0x1f, 0x1f, 0x1f, 0x9f, 0x9f})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const size = 16
		p, c, mem := testRing(t, size)
		var model []uint64
		next := uint64(1)
		corrupt := false
		for i, op := range ops {
			k := uint32(op & 0x1f)
			switch op >> 5 {
			case 0, 1, 2: // produce k
				got, idx := p.Reserve(k)
				if got > size || (!corrupt && got != min(k, uint32(size-len(model)))) {
					t.Fatalf("op %d: reserved %d of %d with %d queued", i, got, k, len(model))
				}
				for j := range got {
					p.Set(idx+j, Desc{Addr: next, Len: uint32(j)})
					model = append(model, next)
					next++
				}
				p.Submit()
			case 3, 4, 5: // consume k
				got, idx := c.Peek(k)
				if got > size {
					t.Fatalf("op %d: peeked %d", i, got)
				}
				if !corrupt {
					if got != min(k, uint32(len(model))) {
						t.Fatalf("op %d: peeked %d of %d with %d queued", i, got, k, len(model))
					}
					for j := range got {
						if d := c.Get(idx + j); d.Addr != model[j] {
							t.Fatalf("op %d: slot %d holds %d, want %d", i, j, d.Addr, model[j])
						}
					}
					model = model[got:]
				}
				c.Release(got)
			case 6: // a hostile peer rewrites the consumer index
				binary.LittleEndian.PutUint32(mem[8:], uint32(op)*0x01010101)
				corrupt = true
			case 7: // ... or the producer index
				binary.LittleEndian.PutUint32(mem[0:], uint32(op)*0x10101)
				corrupt = true
			}
			if !corrupt && int(p.Pending()) > size {
				t.Fatalf("pending %d", p.Pending())
			}
		}
	})
}

// TestRingConcurrent runs a producer and a consumer goroutine over one ring; run with
// -race, and check order and count.
func TestRingConcurrent(t *testing.T) {
	p, c, _ := testRing(t, 64)
	const total = 200000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for sent := uint64(0); sent < total; {
			got, idx := p.Reserve(uint32(min(17, total-sent)))
			for j := range got {
				p.Set(idx+j, Desc{Addr: sent + uint64(j)})
			}
			p.Submit()
			sent += uint64(got)
		}
	}()
	for want := uint64(0); want < total; {
		got, idx := c.Peek(13)
		for j := range got {
			if d := c.Get(idx + j); d.Addr != want {
				t.Fatalf("got %d, want %d", d.Addr, want)
			}
			want++
		}
		c.Release(got)
	}
	wg.Wait()
}

// TestRingHostileStart: the constructors read both shared indices once and later
// trust the cached copies until they run short, so indices that start inconsistent
// (a producer behind its consumer, or more than a ring ahead of it) must be refused
// there too. Before, a producer ring over a consumer 100 ahead reserved 116 slots of
// a 16-slot ring in bursts of 8, and a consumer ring over a producer 100 ahead peeked
// 8 slots that held nothing.
func TestRingHostileStart(t *testing.T) {
	_, _, mem := testRing(t, 16)
	binary.LittleEndian.PutUint32(mem[0:], 0)   // producer
	binary.LittleEndian.PutUint32(mem[8:], 100) // consumer
	off := RingOffsets{Producer: 0, Consumer: 8, Flags: 16, Desc: 64}
	p, err := NewProdRing[Desc](mem, off, 16)
	if err != nil {
		t.Fatal(err)
	}
	total := uint32(0)
	for range 20 {
		got, _ := p.Reserve(8)
		total += got
	}
	if total > 16 {
		t.Errorf("producer ring of 16 reserved %d slots", total)
	}
	if n := p.Pending(); n > 16 {
		t.Errorf("producer ring of 16 has %d pending", n)
	}
	binary.LittleEndian.PutUint32(mem[0:], 100) // producer
	binary.LittleEndian.PutUint32(mem[8:], 0)   // consumer
	c, err := NewConsRing[Desc](mem, off, 16)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Peek(8); got != 0 {
		t.Errorf("consumer ring of 16 with its producer 100 ahead peeked %d", got)
	}
}
