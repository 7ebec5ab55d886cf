package vring_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

// popErr pops once and checks the error matches want and ErrBroken, and
// that the queue stays broken.
func popErr(t *testing.T, p *pair, want error) {
	t.Helper()
	c := makeChains(4, 4)
	n, err := p.dev.Pop(c)
	if !errors.Is(err, want) || !errors.Is(err, vring.ErrBroken) {
		t.Fatalf("pop: n=%d err=%v, want %v", n, err, want)
	}
	var qe *vring.QueueError
	if !errors.As(err, &qe) {
		t.Fatalf("not a QueueError: %T", err)
	}
	if _, err2 := p.dev.Pop(c); err2 != err || p.dev.Err() != err {
		t.Fatalf("queue not sticky broken: %v", err2)
	}
}

func popOK(t *testing.T, p *pair, want int) []vring.Chain {
	t.Helper()
	c := makeChains(4, 8)
	n, err := p.dev.Pop(c)
	if n != want || err != nil {
		t.Fatalf("pop: n=%d err=%v, want %d", n, err, want)
	}
	return c[:n]
}

func TestHardenChainLoop(t *testing.T) {
	t.Run("split", func(t *testing.T) {
		p := newDevice(t, "split", 8, vring.Options{})
		a := p.g.Alloc(64, 8)
		p.split.SetDesc(0, vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 1})
		p.split.SetDesc(1, vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 0})
		p.split.Offer(0)
		popErr(t, p, vring.ErrChainLoop)
	})
	t.Run("split-indirect", func(t *testing.T) {
		p := newDevice(t, "split", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		a := p.g.Alloc(64, 8)
		ta, tl := p.split.Indirect(
			vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 1},
			vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 0})
		p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		p.split.Offer(0)
		popErr(t, p, vring.ErrChainLoop)
	})
	t.Run("packed-ring-of-next", func(t *testing.T) {
		// Every descriptor available with NEXT: the walk must stop after
		// one lap.
		p := newDevice(t, "packed", 8, vring.Options{})
		a := p.g.Alloc(64, 8)
		ds := make([]vringtest.PackedDesc, 8)
		for i := range ds {
			ds[i] = vringtest.PackedDesc{Addr: a, Len: 1, Flags: vring.DescNext}
		}
		p.packed.Offer(ds...)
		// The next lap's head position 0 now looks available again only
		// with the other wrap counter, so the walk hits the TTL.
		popErr(t, p, vring.ErrChainLoop)
	})
}

func TestHardenChainTooLong(t *testing.T) {
	t.Run("bytes", func(t *testing.T) {
		for _, l := range layouts {
			p := newDevice(t, l, 8, vring.Options{MaxChainBytes: 100})
			a := p.g.Alloc(256, 8)
			segs := []vring.Seg{{Addr: a, Len: 64}, {Addr: a + 64, Len: 64, Write: true}}
			if l == "split" {
				p.split.Offer(p.split.Chain(segs...))
			} else {
				p.packed.Chain(0, segs...)
			}
			popErr(t, p, vring.ErrChainTooLong)
		}
	})
	t.Run("descriptors", func(t *testing.T) {
		// A direct descriptor followed by a full-size indirect table: more
		// descriptors than the queue size in total.
		p := newDevice(t, "split", 4, vring.Options{Features: vring.FeatureIndirectDesc})
		a := p.g.Alloc(64, 8)
		ds := make([]vringtest.Desc, 4)
		for i := range ds {
			ds[i] = vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: uint16(i + 1)}
		}
		ds[3].Flags = 0
		ta, tl := p.split.Indirect(ds...)
		p.split.SetDesc(0, vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 1})
		p.split.SetDesc(1, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		p.split.Offer(0)
		popErr(t, p, vring.ErrChainTooLong)
	})
	t.Run("MaxChainDescs", func(t *testing.T) {
		// A queue of 64 capped at 8 descriptors per chain: chains of 8 pass,
		// chains of 9 break the queue whether their descriptors are in the
		// ring or in an indirect table (of zero-length entries, the cheapest
		// way to make a long chain).
		const max = 8
		o := vring.Options{Features: vring.FeatureIndirectDesc, MaxChainDescs: max}
		for _, l := range layouts {
			for _, n := range []int{max, max + 1} {
				for _, indirect := range []bool{false, true} {
					name := fmt.Sprintf("%s/%d-descs", l, n)
					if indirect {
						name += "-indirect"
					}
					t.Run(name, func(t *testing.T) {
						p := newDevice(t, l, 64, o)
						a := p.g.Alloc(64, 8)
						segs := make([]vring.Seg, n)
						for i := range segs {
							segs[i] = vring.Seg{Addr: a, Len: 0, Write: true}
						}
						segs[0].Len = 64
						switch {
						case l == "split" && indirect:
							ds := make([]vringtest.Desc, n)
							for i, sg := range segs {
								ds[i] = vringtest.Desc{Addr: sg.Addr, Len: sg.Len, Flags: vring.DescWrite | vring.DescNext, Next: uint16(i + 1)}
							}
							ds[n-1].Flags = vring.DescWrite
							ta, tl := p.split.Indirect(ds...)
							p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
							p.split.Offer(0)
						case l == "split":
							p.split.Offer(p.split.Chain(segs...))
						case indirect:
							ds := make([]vringtest.PackedDesc, n)
							for i, sg := range segs {
								ds[i] = vringtest.PackedDesc{Addr: sg.Addr, Len: sg.Len, Flags: vring.DescWrite}
							}
							ta, tl := p.packed.Indirect(ds...)
							p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, ID: 3, Flags: vring.DescIndirect})
						default:
							p.packed.Chain(3, segs...)
						}
						if n > max {
							popErr(t, p, vring.ErrChainTooLong)
							return
						}
						c := popOK(t, p, 1)
						if len(c[0].Segs) != n || c[0].WriteLen != 64 {
							t.Fatalf("popped %d segments, %d writable bytes", len(c[0].Segs), c[0].WriteLen)
						}
					})
				}
			}
		}
	})
	t.Run("MaxChainDescs-invalid", func(t *testing.T) {
		o := vring.Options{Size: 8, MaxChainDescs: -1}
		if err := o.Validate(); !errors.Is(err, vring.ErrInvalid) {
			t.Fatalf("Validate: %v, want ErrInvalid", err)
		}
	})
}

func TestHardenIndirect(t *testing.T) {
	type build func(p *pair, a uint64)
	split := map[string]build{
		"nested": func(p *pair, a uint64) {
			inner, il := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1})
			ta, tl := p.split.Indirect(vringtest.Desc{Addr: inner, Len: il, Flags: vring.DescIndirect})
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		},
		"indirect-with-next": func(p *pair, a uint64) {
			ta, tl := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1})
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect | vring.DescNext, Next: 1})
			p.split.SetDesc(1, vringtest.Desc{Addr: a, Len: 1})
		},
		"larger-than-queue": func(p *pair, a uint64) {
			ds := make([]vringtest.Desc, 9)
			ta, tl := p.split.Indirect(ds...)
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		},
		"len-not-multiple-of-16": func(p *pair, a uint64) {
			ta, _ := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1})
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: 20, Flags: vring.DescIndirect})
		},
		"zero-len": func(p *pair, a uint64) {
			ta, _ := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1})
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: 0, Flags: vring.DescIndirect})
		},
		"next-out-of-table": func(p *pair, a uint64) {
			ta, tl := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 5})
			p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		},
		"table-in-gap": func(p *pair, a uint64) {
			p.split.SetDesc(0, vringtest.Desc{Addr: p.g.Gap(), Len: 16, Flags: vring.DescIndirect})
		},
		"table-across-region-end": func(p *pair, a uint64) {
			p.split.SetDesc(0, vringtest.Desc{Addr: p.g.AEnd() - 16, Len: 32, Flags: vring.DescIndirect})
		},
	}
	want := map[string]error{"next-out-of-table": vring.ErrDescriptor, "table-in-gap": vring.ErrAddress,
		"table-across-region-end": vring.ErrNotContiguous}
	for name, b := range split {
		t.Run("split/"+name, func(t *testing.T) {
			p := newDevice(t, "split", 8, vring.Options{Features: vring.FeatureIndirectDesc})
			b(p, p.g.Alloc(64, 8))
			p.split.Offer(0)
			w := want[name]
			if w == nil {
				w = vring.ErrIndirect
			}
			popErr(t, p, w)
		})
	}
	t.Run("split/not-negotiated", func(t *testing.T) {
		p := newDevice(t, "split", 8, vring.Options{})
		a := p.g.Alloc(64, 8)
		ta, tl := p.split.Indirect(vringtest.Desc{Addr: a, Len: 1})
		p.split.SetDesc(0, vringtest.Desc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		p.split.Offer(0)
		popErr(t, p, vring.ErrIndirect)
	})
	t.Run("packed/nested", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		a := p.g.Alloc(64, 8)
		inner, il := p.packed.Indirect(vringtest.PackedDesc{Addr: a, Len: 1})
		ta, tl := p.packed.Indirect(vringtest.PackedDesc{Addr: inner, Len: il, Flags: vring.DescIndirect})
		_ = a
		p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		// §2.8.7: INDIRECT inside a table is ignored: the entry is a plain
		// (range-checked) buffer, the inner table is never followed.
		c := popOK(t, p, 1)
		if len(c[0].Segs) != 1 || c[0].Segs[0].Addr != inner || c[0].Segs[0].Len != il {
			t.Fatalf("%+v", c[0])
		}
	})
	t.Run("packed/nested-out-of-range", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		ta, tl := p.packed.Indirect(vringtest.PackedDesc{Addr: p.g.Gap(), Len: 16, Flags: vring.DescIndirect})
		p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		popErr(t, p, vring.ErrAddress)
	})
	t.Run("packed/indirect-with-next", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		a := p.g.Alloc(64, 8)
		ta, tl := p.packed.Indirect(vringtest.PackedDesc{Addr: a, Len: 1})
		p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, Flags: vring.DescIndirect | vring.DescNext},
			vringtest.PackedDesc{Addr: a, Len: 1})
		popErr(t, p, vring.ErrIndirect)
	})
	t.Run("packed/larger-than-queue", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		ta, tl := p.packed.Indirect(make([]vringtest.PackedDesc, 9)...)
		p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, Flags: vring.DescIndirect})
		popErr(t, p, vring.ErrIndirect)
	})
	t.Run("packed/ok", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{Features: vring.FeatureIndirectDesc})
		a := p.g.Alloc(64, 8)
		ta, tl := p.packed.Indirect(vringtest.PackedDesc{Addr: a, Len: 3}, vringtest.PackedDesc{Addr: a + 8, Len: 5, Flags: vring.DescWrite})
		p.packed.Offer(vringtest.PackedDesc{Addr: ta, Len: tl, ID: 6, Flags: vring.DescIndirect})
		c := popOK(t, p, 1)
		if c[0].ID != 6 || c[0].Slots != 1 || c[0].ReadLen != 3 || c[0].WriteLen != 5 {
			t.Fatalf("%+v", c[0])
		}
	})
}

// TestHardenAddressRange: every descriptor range is checked after
// translation, including zero-length and wrapping ranges.
func TestHardenAddressRange(t *testing.T) {
	cases := []struct {
		name string
		addr func(g *vringtest.Guest) uint64
		len  uint32
		want error // nil: accepted
	}{
		{"in-gap", func(g *vringtest.Guest) uint64 { return g.Gap() }, 8, vring.ErrAddress},
		{"crossing-into-gap", func(g *vringtest.Guest) uint64 { return g.AEnd() - 4 }, 8, vring.ErrAddress},
		{"wrapping", func(g *vringtest.Guest) uint64 { return ^uint64(0) - 3 }, 8, vring.ErrOverflow},
		{"wrapping-from-mapped", func(g *vringtest.Guest) uint64 { return g.ABase }, 0xffffffff, vring.ErrAddress},
		{"zero-len-unmapped", func(g *vringtest.Guest) uint64 { return g.Gap() }, 0, vring.ErrAddress},
		{"zero-len-at-end", func(g *vringtest.Guest) uint64 { return g.AEnd() }, 0, vring.ErrAddress},
		{"zero-len-mapped", func(g *vringtest.Guest) uint64 { return g.ABase + 100 }, 0, nil},
		{"last-byte", func(g *vringtest.Guest) uint64 { return g.AEnd() - 1 }, 1, nil},
		{"below-all", func(g *vringtest.Guest) uint64 { return 0 }, 1, vring.ErrAddress},
	}
	for _, l := range layouts {
		for _, c := range cases {
			t.Run(l+"/"+c.name, func(t *testing.T) {
				p := newDevice(t, l, 8, vring.Options{})
				seg := vring.Seg{Addr: c.addr(p.g), Len: c.len, Write: true}
				if l == "split" {
					p.split.Offer(p.split.Chain(seg))
				} else {
					p.packed.Chain(0, seg)
				}
				if c.want == nil {
					ch := popOK(t, p, 1)
					if ch[0].Segs[0] != seg {
						t.Fatalf("%+v", ch[0].Segs[0])
					}
					return
				}
				popErr(t, p, c.want)
			})
		}
	}
	t.Run("split/desc-index", func(t *testing.T) {
		p := newDevice(t, "split", 8, vring.Options{})
		p.split.Offer(8) // head out of range
		popErr(t, p, vring.ErrDescriptor)
		p = newDevice(t, "split", 8, vring.Options{})
		a := p.g.Alloc(8, 8)
		p.split.SetDesc(0, vringtest.Desc{Addr: a, Len: 1, Flags: vring.DescNext, Next: 100})
		p.split.Offer(0)
		popErr(t, p, vring.ErrDescriptor)
	})
	t.Run("packed/next-not-available", func(t *testing.T) {
		p := newDevice(t, "packed", 8, vring.Options{})
		a := p.g.Alloc(8, 8)
		p.packed.Offer(vringtest.PackedDesc{Addr: a, Len: 1, Flags: vring.DescNext})
		popErr(t, p, vring.ErrDescriptor)
	})
}

func TestHardenQueueSize(t *testing.T) {
	g := vringtest.NewGuest(1<<21, 4096)
	for _, n := range []int{0, 3, 6, 65536, 1 << 20, -1} {
		if _, err := vring.NewSplitDevice(vring.SplitRing{}, g.Mem, vring.Options{Size: n}); !errors.Is(err, vring.ErrQueueSize) {
			t.Errorf("split size %d: %v", n, err)
		}
		if _, err := vring.NewSplitDriver(vring.SplitRing{}, g.Mem, vring.Options{Size: n}); !errors.Is(err, vring.ErrQueueSize) {
			t.Errorf("split driver size %d: %v", n, err)
		}
	}
	// 32768 (the maximum) works and its indices cover the whole ring.
	s := vringtest.NewSplit(g, 32768)
	if _, err := vring.NewSplitDevice(s.Ring, g.Mem, vring.Options{Size: 32768}); err != nil {
		t.Fatal(err)
	}
	// Ring memory one byte short, or misaligned, is refused.
	short := s.Ring
	short.Used = short.Used[:len(short.Used)-1]
	if _, err := vring.NewSplitDevice(short, g.Mem, vring.Options{Size: 32768}); !errors.Is(err, vring.ErrLayout) {
		t.Fatal(err)
	}
	// The device side takes an avail ring 2-aligned (§2.7) but not an odd one
	// (TestSplitDeviceAvail2Aligned); the driver side, which stores avail.flags
	// and avail.idx as one word, wants it 4-aligned.
	mis := s.Ring
	mis.Avail = g.A[1 : 1+len(mis.Avail)]
	if _, err := vring.NewSplitDevice(mis, g.Mem, vring.Options{Size: 32768}); !errors.Is(err, vring.ErrLayout) {
		t.Fatal(err)
	}
	mis.Avail = g.A[2 : 2+len(mis.Avail)]
	if _, err := vring.NewSplitDriver(mis, g.Mem, vring.Options{Size: 32768}); !errors.Is(err, vring.ErrLayout) {
		t.Fatal(err)
	}
	if _, err := vring.NewPackedDevice(vring.PackedRing{}, g.Mem, vring.Options{Size: 32769}); !errors.Is(err, vring.ErrQueueSize) {
		t.Fatal(err)
	}
	// At size 32768, avail.idx - last_avail == 32768 is valid and must not
	// be truncated to 0 (the largest legal distance).
	g.Reset()
	s = vringtest.NewSplit(g, 32768)
	dev, _ := vring.NewSplitDevice(s.Ring, g.Mem, vring.Options{Size: 32768})
	a := g.Alloc(8, 8)
	s.SetDesc(0, vringtest.Desc{Addr: a, Len: 8})
	s.SetAvailIdx(32768) // all ring entries are 0 (head 0)
	if n, err := dev.Pending(); n != 32768 || err != nil {
		t.Fatal(n, err)
	}
	c := makeChains(32768, 1)
	if n, err := dev.Pop(c); n != 32768 || err != nil {
		t.Fatal(n, err)
	}
}

// TestHardenAvailIdxAhead: an avail.idx more than the queue size ahead of
// the last seen index is rejected (replayed or forged index).
func TestHardenAvailIdxAhead(t *testing.T) {
	p := newDevice(t, "split", 8, vring.Options{})
	a := p.g.Alloc(8, 8)
	for i := 0; i < 8; i++ {
		p.split.SetDesc(i, vringtest.Desc{Addr: a, Len: 8})
	}
	p.split.SetAvailIdx(8) // exactly the queue size: fine
	c := makeChains(16, 1)
	if n, err := p.dev.Pop(c); n != 8 || err != nil {
		t.Fatal(n, err)
	}
	p.split.SetAvailIdx(8 + 9)
	popErr(t, p, vring.ErrAvailIdx)
	// Going backwards is "ahead" by almost 2^16: rejected too.
	p = newDevice(t, "split", 8, vring.Options{})
	p.split.SetAvailIdx(0xffff)
	popErr(t, p, vring.ErrAvailIdx)
}

// TestHardenUsed: the driver validates every id and length the device
// writes.
func TestHardenUsed(t *testing.T) {
	type hostile func(p *pair, ids []uint16)
	splitCases := map[string]struct {
		f    hostile
		want error
	}{
		"id-out-of-range": {func(p *pair, ids []uint16) { p.split.PutUsed(8, 0) }, vring.ErrUsedID},
		"id-huge":         {func(p *pair, ids []uint16) { p.split.PutUsed(0x10000+uint32(ids[0]), 0) }, vring.ErrUsedID},
		"id-not-in-flight": {func(p *pair, ids []uint16) {
			p.split.PutUsed(uint32(ids[0]+1), 0) // a non-head descriptor
		}, vring.ErrUsedID},
		"duplicate": {func(p *pair, ids []uint16) {
			p.split.PutUsed(uint32(ids[0]), 0)
			p.split.PutUsed(uint32(ids[0]), 0)
		}, vring.ErrUsedID},
		"len-too-big":  {func(p *pair, ids []uint16) { p.split.PutUsed(uint32(ids[0]), 65) }, vring.ErrUsedLen},
		"idx-too-far":  {func(p *pair, ids []uint16) { p.split.SetUsedIdx(3) }, vring.ErrUsedIdx},
		"idx-backward": {func(p *pair, ids []uint16) { p.split.SetUsedIdx(0xffff) }, vring.ErrUsedIdx},
	}
	for name, c := range splitCases {
		t.Run("split/"+name, func(t *testing.T) {
			p := newPair(t, "split", 8, 0)
			ids := addTwo(t, p)
			c.f(p, ids)
			collectErr(t, p, c.want)
		})
	}
	packedCases := map[string]struct {
		f    hostile
		want error
	}{
		"id-out-of-range":  {func(p *pair, ids []uint16) { p.packed.PutUsed(8, 0, 1) }, vring.ErrUsedID},
		"id-not-in-flight": {func(p *pair, ids []uint16) { p.packed.PutUsed(5, 0, 1) }, vring.ErrUsedID},
		"duplicate": {func(p *pair, ids []uint16) {
			p.packed.PutUsed(ids[0], 0, 2)
			p.packed.PutUsed(ids[0], 0, 2)
		}, vring.ErrUsedID},
		"len-too-big": {func(p *pair, ids []uint16) { p.packed.PutUsed(ids[1], 65, 2) }, vring.ErrUsedLen},
	}
	for name, c := range packedCases {
		t.Run("packed/"+name, func(t *testing.T) {
			p := newPair(t, "packed", 8, 0)
			ids := addTwo(t, p)
			c.f(p, ids)
			collectErr(t, p, c.want)
		})
	}
}

// addTwo adds two buffers of 2 descriptors (8 readable + 64 writable).
func addTwo(t *testing.T, p *pair) []uint16 {
	a := p.g.Alloc(256, 8)
	var ids []uint16
	for i := 0; i < 2; i++ {
		id, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 8}, {Addr: a + 64, Len: 64, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	p.drv.Publish()
	return ids
}

func collectErr(t *testing.T, p *pair, want error) {
	t.Helper()
	u := make([]vring.Used, 8)
	var err error
	for i := 0; i < 3 && err == nil; i++ {
		_, err = p.drv.Collect(u)
	}
	if !errors.Is(err, want) || !errors.Is(err, vring.ErrBroken) {
		t.Fatalf("collect: %v, want %v", err, want)
	}
	if _, err2 := p.drv.Add([]vring.Seg{{Addr: p.g.ABase, Len: 1}}); err2 != err {
		t.Fatalf("driver not sticky broken: %v", err2)
	}
}

// TestHardenUsedBatch: the same checks on one-descriptor buffers added with
// AddBatch, which Collect takes through its batch loops: a broken entry in
// the middle of a batch stops it there, the good ones before it are
// collected, and the queue breaks.
func TestHardenUsedBatch(t *testing.T) {
	type hostile func(p *pair, ids []uint16)
	cases := map[string]struct {
		split, packed hostile
		want          error
	}{
		"id-out-of-range": {
			func(p *pair, ids []uint16) { p.split.PutUsed(uint32(ids[0]), 64); p.split.PutUsed(9, 0) },
			func(p *pair, ids []uint16) { p.packed.PutUsed(ids[0], 64, 1); p.packed.PutUsed(9, 0, 1) },
			vring.ErrUsedID},
		"duplicate": {
			func(p *pair, ids []uint16) { p.split.PutUsed(uint32(ids[0]), 64); p.split.PutUsed(uint32(ids[0]), 64) },
			func(p *pair, ids []uint16) { p.packed.PutUsed(ids[0], 64, 1); p.packed.PutUsed(ids[0], 64, 1) },
			vring.ErrUsedID},
		"len-too-big": {
			func(p *pair, ids []uint16) { p.split.PutUsed(uint32(ids[0]), 64); p.split.PutUsed(uint32(ids[1]), 65) },
			func(p *pair, ids []uint16) { p.packed.PutUsed(ids[0], 64, 1); p.packed.PutUsed(ids[1], 65, 1) },
			vring.ErrUsedLen},
	}
	for name, c := range cases {
		for _, layout := range []string{"split", "packed"} {
			t.Run(layout+"/"+name, func(t *testing.T) {
				p := newPair(t, layout, 16, 0)
				a := p.g.Alloc(64*4, 64)
				bufs := make([]vring.Seg, 4)
				for i := range bufs {
					bufs[i] = vring.Seg{Addr: a + uint64(64*i), Len: 64, Write: true}
				}
				ids := make([]uint16, 4)
				if n, err := p.drv.AddBatch(bufs, ids); n != 4 || err != nil {
					t.Fatal(n, err)
				}
				p.drv.Publish()
				if layout == "split" {
					c.split(p, ids)
				} else {
					c.packed(p, ids)
				}
				u := make([]vring.Used, 8)
				n, err := p.drv.Collect(u)
				if n != 1 || u[0].ID != ids[0] || u[0].Len != 64 {
					t.Errorf("collected %d (%+v) before the bad entry, want the first buffer", n, u[:n])
				}
				if !errors.Is(err, c.want) || !errors.Is(err, vring.ErrBroken) {
					t.Fatalf("collect: %v, want %v", err, c.want)
				}
			})
		}
	}
}

// TestHardenPushAfterBadChain: Pop stops at a bad chain, returning the good
// chains before it and breaking the queue. Those chains were really popped:
// the device may have written into them already, so Push and PushInOrder
// still complete them (else the driver never gets its buffers back, and a
// vhost back-end loses the packets it copied in). Nothing more can be popped
// or pushed.
func TestHardenPushAfterBadChain(t *testing.T) {
	type inOrderPusher interface{ PushInOrder([]vring.Used) error }
	for _, l := range layouts {
		for _, inOrder := range []bool{false, true} {
			name := l + "/Push"
			o := vring.Options{}
			if inOrder {
				name = l + "/PushInOrder"
				o.Features = vring.FeatureInOrder
			}
			t.Run(name, func(t *testing.T) {
				p := newDevice(t, l, 8, o)
				a := p.g.Alloc(128, 8)
				good := []vring.Seg{{Addr: a, Len: 64, Write: true}, {Addr: a + 64, Len: 64, Write: true}}
				bad := vring.Seg{Addr: p.g.Gap(), Len: 16, Write: true}
				if l == "split" {
					h0, h1 := p.split.Chain(good[0]), p.split.Chain(good[1])
					p.split.Offer(h0, h1, p.split.Chain(bad))
				} else {
					p.packed.Chain(0, good[0])
					p.packed.Chain(1, good[1])
					p.packed.Chain(2, bad)
				}
				c := makeChains(4, 4)
				n, err := p.dev.Pop(c)
				if n != 2 || !errors.Is(err, vring.ErrAddress) || !errors.Is(err, vring.ErrBroken) {
					t.Fatalf("pop: n=%d err=%v, want the 2 good chains and ErrAddress", n, err)
				}
				push := p.dev.Push
				if inOrder {
					push = p.dev.(inOrderPusher).PushInOrder
				}
				used := []vring.Used{c[0].Used(10), c[1].Used(20), {ID: 2, Len: 0, Slots: 1}}
				if err := push(used); !errors.Is(err, vring.ErrInvalid) {
					t.Fatalf("pushing the bad chain too: %v, want ErrInvalid", err)
				}
				if err := push(used[:2]); err != nil {
					t.Fatalf("pushing the chains popped before the bad one: %v", err)
				}
				if l == "split" {
					// used.idx counts both; in order, one entry for both, at the
					// first's position (§2.7.9).
					pos := uint16(1)
					if inOrder {
						pos = 0
					}
					id, n := p.split.UsedElem(pos)
					if p.split.UsedIdx() != 2 || id != uint32(c[1].ID) || n != 20 {
						t.Fatalf("used.idx %d, last entry id %d len %d", p.split.UsedIdx(), id, n)
					}
				} else {
					last := 1
					if inOrder {
						last = 0 // one descriptor for both (§2.8.8)
					}
					d := p.packed.GetDesc(last)
					if d.Flags&vringtest.UsedBits(true) != vringtest.UsedBits(true) || d.ID != c[1].ID || d.Len != 20 {
						t.Fatalf("used descriptor %d: %+v", last, d)
					}
					if _, _, _, ok := p.dev.(*vring.PackedDevice).PeekDirect(); ok {
						t.Fatal("PeekDirect took a buffer from a broken queue")
					}
				}
				if err := push(used[:1]); !errors.Is(err, vring.ErrInvalid) {
					t.Fatalf("pushing a third entry: %v, want ErrInvalid", err)
				}
				if n, err2 := p.dev.Pop(c); n != 0 || err2 != err {
					t.Fatalf("pop after: n=%d err=%v, want the sticky %v", n, err2, err)
				}
			})
		}
	}
}

// TestHardenInOrderBatchPastUsedIdx: with IN_ORDER a used entry completes the
// buffers up to its id and used.idx moves on by their number (§2.7.9). A device
// whose entry names a buffer beyond its used.idx advance breaks the queue once the
// buffers the advance covers are completed, instead of the driver reading past
// used.idx.
func TestHardenInOrderBatchPastUsedIdx(t *testing.T) {
	p := newPair(t, "split", 8, vring.FeatureInOrder)
	a := p.g.Alloc(1024, 64)
	var ids []uint16
	for i := 0; i < 3; i++ {
		id, err := p.drv.Add([]vring.Seg{{Addr: a + uint64(64*i), Len: 64, Write: true}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	p.drv.Publish()
	p.split.PutUsedBatch(uint32(ids[2]), 10, 2) // names the third, counts two
	u := make([]vring.Used, 8)
	n, err := p.drv.Collect(u)
	if !errors.Is(err, vring.ErrUsedIdx) || !errors.Is(err, vring.ErrBroken) {
		t.Fatalf("Collect: %d, %v; want ErrUsedIdx", n, err)
	}
	if n != 2 || u[0].ID != ids[0] || u[1].ID != ids[1] {
		t.Fatalf("completed %v, want the two buffers used.idx covers", u[:n])
	}
}

// TestHardenAvailBeyondInFlight: chains popped and not yet pushed count
// against the queue size; an avail.idx that would have more than the size
// outstanding with them is rejected, one that brings it to exactly the size is
// not.
func TestHardenAvailBeyondInFlight(t *testing.T) {
	p := newDevice(t, "split", 8, vring.Options{})
	a := p.g.Alloc(8, 8)
	for i := 0; i < 8; i++ {
		p.split.SetDesc(i, vringtest.Desc{Addr: a, Len: 8})
	}
	p.split.SetAvailIdx(3)
	c := makeChains(16, 1)
	if n, err := p.dev.Pop(c); n != 3 || err != nil {
		t.Fatal(n, err)
	}
	p.split.SetAvailIdx(3 + 5) // 8 outstanding with the 3 in flight: fine
	if n, err := p.dev.Pop(c); n != 5 || err != nil {
		t.Fatal(n, err)
	}
	if err := p.dev.Push([]vring.Used{c[0].Used(0)}); err != nil {
		t.Fatal(err)
	}
	p.split.SetAvailIdx(8 + 2) // 9 outstanding: heads in flight would come round
	popErr(t, p, vring.ErrAvailIdx)
}

// TestHardenUsedUnpublished: a buffer added after the last Publish is in
// flight but was never made available, so the device cannot have used it. A
// used entry (or a used.idx advance) that claims it breaks the queue instead
// of handing it back: after Publish the device would be offered a buffer the
// driver had already reused. A buffer that really was published is still
// collected when its old position aliases the unpublished ones (split: 2^16
// positions later; packed: its slot reused).
func TestHardenUsedUnpublished(t *testing.T) {
	for _, l := range layouts {
		for _, feat := range []uint64{0, vring.FeatureInOrder} {
			t.Run(fmt.Sprintf("%s/%#x", l, feat), func(t *testing.T) {
				p := newPair(t, l, 8, feat)
				a := p.g.Alloc(128, 8)
				if _, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 64, Write: true}}); err != nil {
					t.Fatal(err)
				}
				p.drv.Publish()
				unpub, err := p.drv.Add([]vring.Seg{{Addr: a + 64, Len: 64, Write: true}})
				if err != nil {
					t.Fatal(err)
				}
				if l == "split" {
					p.split.PutUsed(uint32(unpub), 10) // used.idx 1: one buffer is published
				} else {
					p.packed.PutUsed(unpub, 10, 1)
				}
				u := make([]vring.Used, 4)
				n, err := p.drv.Collect(u)
				if n != 0 || !errors.Is(err, vring.ErrUsedID) || !errors.Is(err, vring.ErrBroken) {
					t.Fatalf("collect: %d %v, want ErrUsedID", n, err)
				}
				if p.drv.InFlight() != 2 || p.drv.Free() != 6 {
					t.Fatalf("in flight %d free %d, want 2 and 6", p.drv.InFlight(), p.drv.Free())
				}
			})
		}
		t.Run(l+"/idx-counts-unpublished", func(t *testing.T) {
			if l != "split" {
				return // no used index
			}
			p := newPair(t, l, 8, 0)
			a := p.g.Alloc(128, 8)
			pub, _ := p.drv.Add([]vring.Seg{{Addr: a, Len: 64, Write: true}})
			p.drv.Publish()
			if _, err := p.drv.Add([]vring.Seg{{Addr: a + 64, Len: 64, Write: true}}); err != nil {
				t.Fatal(err)
			}
			p.split.PutUsed(uint32(pub), 10)
			p.split.PutUsed(uint32(pub), 10) // used.idx 2, one buffer published
			u := make([]vring.Used, 4)
			if n, err := p.drv.Collect(u); n != 0 || !errors.Is(err, vring.ErrUsedIdx) {
				t.Fatalf("collect: %d %v, want ErrUsedIdx", n, err)
			}
		})
		t.Run(l+"/alias", func(t *testing.T) {
			p := newPair(t, l, 2, 0)
			a := p.g.Alloc(128, 8)
			old, _ := p.drv.Add([]vring.Seg{{Addr: a, Len: 64, Write: true}})
			p.drv.Publish()
			u := make([]vring.Used, 2)
			rounds := 1<<16 - 1 // split: the next add reuses old's position mod 2^16
			if l == "packed" {
				rounds = 1 // packed: the next add reuses old's slot
			}
			for i := 0; i < rounds; i++ {
				id, err := p.drv.Add([]vring.Seg{{Addr: a + 64, Len: 64, Write: true}})
				if err != nil {
					t.Fatal(err)
				}
				p.drv.Publish()
				if l == "split" {
					p.split.PutUsed(uint32(id), 1)
				} else {
					p.packed.PutUsed(id, 1, 1)
				}
				if n, err := p.drv.Collect(u); n != 1 || err != nil || u[0].ID != id {
					t.Fatalf("round %d: %d %v %+v", i, n, err, u[0])
				}
			}
			if _, err := p.drv.Add([]vring.Seg{{Addr: a + 64, Len: 64, Write: true}}); err != nil {
				t.Fatal(err)
			}
			if l == "split" {
				p.split.PutUsed(uint32(old), 2)
			} else {
				p.packed.PutUsed(old, 2, 1)
			}
			if n, err := p.drv.Collect(u); n != 1 || err != nil || u[0].ID != old || u[0].Len != 2 {
				t.Fatalf("collect of the published buffer: %d %v %+v", n, err, u[0])
			}
		})
	}
}
