package vring_test

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

const fuzzN = 8

// checkChains asserts every popped segment lies inside the guest regions
// and the chain bookkeeping adds up.
func checkChains(t *testing.T, m *vring.Memory, cs []vring.Chain) {
	for i := range cs {
		c := &cs[i]
		var r, w uint64
		if len(c.Segs) > fuzzN || len(c.Segs) == 0 {
			t.Fatalf("chain with %d segs", len(c.Segs))
		}
		for _, s := range c.Segs {
			if err := m.Check(s.Addr, uint64(s.Len)); err != nil {
				t.Fatalf("segment %+v outside regions: %v", s, err)
			}
			if s.Write {
				w += uint64(s.Len)
			} else {
				r += uint64(s.Len)
			}
		}
		if r != uint64(c.ReadLen) || w != uint64(c.WriteLen) {
			t.Fatalf("totals %d/%d vs %+v", r, w, c)
		}
	}
}

func popAll(t *testing.T, dev device, m *vring.Memory) {
	chains := makeChains(3, 2)
	for round := 0; round < 8; round++ {
		n, err := dev.Pop(chains)
		checkChains(t, m, chains[:n])
		if err != nil {
			if !errors.Is(err, vring.ErrBroken) {
				t.Fatalf("error not ErrBroken: %v", err)
			}
			return
		}
		used := make([]vring.Used, n)
		for i := range used {
			used[i] = chains[i].Used(chains[i].WriteLen)
		}
		if err := dev.Push(used); err != nil {
			t.Fatal(err)
		}
		dev.NeedNotify()
		if n == 0 {
			return
		}
	}
}

// splitSeed lays data over the avail ring, the descriptor table and a
// scratch area (indirect tables): the fuzzer controls every driver-written
// byte of a split ring.
func FuzzSplitChains(f *testing.F) {
	seed := func(build func(s *vringtest.Split, scratch uint64)) []byte {
		g := vringtest.NewGuest(1<<16, 4096)
		s := vringtest.NewSplit(g, fuzzN)
		scratch := g.Alloc(256, 16)
		build(s, scratch)
		out := append([]byte(nil), s.Ring.Avail[:4+2*fuzzN]...)
		out = append(out, s.Ring.Desc...)
		return append(out, g.Bytes(scratch, 256)...)
	}
	f.Add(seed(func(s *vringtest.Split, sc uint64) {
		s.Offer(s.Chain(vring.Seg{Addr: sc, Len: 16}, vring.Seg{Addr: sc + 16, Len: 32, Write: true}))
	}))
	f.Add(seed(func(s *vringtest.Split, sc uint64) {
		s.SetDesc(0, vringtest.Desc{Addr: sc + 128, Len: 32, Flags: vring.DescIndirect})
		s.Offer(0, 0, 0)
	}))
	f.Add(seed(func(s *vringtest.Split, sc uint64) {
		s.SetDesc(0, vringtest.Desc{Addr: sc, Len: 1, Flags: vring.DescNext, Next: 0})
		s.Offer(0)
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := vringtest.NewGuest(1<<16, 4096)
		s := vringtest.NewSplit(g, fuzzN)
		scratch := g.Alloc(256, 16)
		k := copy(s.Ring.Avail[:4+2*fuzzN], data)
		k += copy(s.Ring.Desc, data[k:])
		copy(g.Bytes(scratch, 256), data[k:])
		dev, err := vring.NewSplitDevice(s.Ring, g.Mem, vring.Options{Size: fuzzN,
			Features: vring.FeatureIndirectDesc | vring.FeatureEventIdx, MaxChainBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		popAll(t, dev, g.Mem)
	})
}

func FuzzPackedChains(f *testing.F) {
	seed := func(build func(p *vringtest.Packed, scratch uint64)) []byte {
		g := vringtest.NewGuest(1<<16, 4096)
		p := vringtest.NewPacked(g, fuzzN)
		scratch := g.Alloc(256, 16)
		build(p, scratch)
		return append(append([]byte(nil), p.Ring.Desc...), g.Bytes(scratch, 256)...)
	}
	f.Add(seed(func(p *vringtest.Packed, sc uint64) {
		p.Chain(3, vring.Seg{Addr: sc, Len: 16}, vring.Seg{Addr: sc + 16, Len: 32, Write: true})
		p.Chain(1, vring.Seg{Addr: sc, Len: 16})
	}))
	f.Add(seed(func(p *vringtest.Packed, sc uint64) {
		p.Offer(vringtest.PackedDesc{Addr: sc + 128, Len: 32, Flags: vring.DescIndirect})
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		g := vringtest.NewGuest(1<<16, 4096)
		p := vringtest.NewPacked(g, fuzzN)
		scratch := g.Alloc(256, 16)
		k := copy(p.Ring.Desc, data)
		copy(g.Bytes(scratch, 256), data[k:])
		dev, err := vring.NewPackedDevice(p.Ring, g.Mem, vring.Options{Size: fuzzN,
			Features: vring.FeatureIndirectDesc | vring.FeatureEventIdx, MaxChainBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		popAll(t, dev, g.Mem)
	})
}

// FuzzOps drives a real driver and a real device over one ring with a
// random sequence of operations. While no byte of the ring has been
// corrupted, both sides must agree exactly (ids, lengths, payload lengths)
// and never fail; after a corruption op, only "no panic, errors are typed"
// is required.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0, 2, 2, 3, 4, 0, 5})
	f.Add([]byte{1, 1, 0, 3, 0, 3, 1, 2, 3, 4, 1, 5, 6, 2, 3, 4, 2, 5})
	f.Add([]byte{0, 7, 0, 1, 1, 2, 2, 3, 7, 9, 9, 9, 3, 4, 0, 5})
	f.Add([]byte{1, 6, 0, 0, 0, 0, 0, 0, 2, 3, 4, 3, 5, 0, 1, 0, 1, 2, 3, 4, 7, 5})
	f.Add([]byte{0, 4, 0, 1, 0, 0, 1, 0, 0, 1, 0, 2, 3, 7, 4, 0x23, 5})
	f.Add([]byte{1, 4, 0, 1, 0, 0, 1, 0, 0, 1, 0, 2, 3, 7, 4, 0x23, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		layout := layouts[data[0]&1]
		var feat uint64
		if data[1]&1 != 0 {
			feat |= vring.FeatureEventIdx
		}
		if data[1]&2 != 0 {
			feat |= vring.FeatureIndirectDesc
		}
		inOrderF := data[1]&4 != 0
		if inOrderF {
			feat |= vring.FeatureInOrder
		}
		p := newPair(t, layout, fuzzN, feat)
		buf := p.g.Alloc(4096, 64)
		tables := p.g.Alloc(16*fuzzN*fuzzN, 16)
		corrupt := false
		wcap := map[uint16]uint32{}   // added, not collected: writable capacity
		pushed := map[uint16]uint32{} // pushed, not collected: length
		var popped []vring.Chain
		var tableBusy [fuzzN + 1]bool
		tableOf := map[uint16]int{} // id -> table slot+1
		chains := makeChains(fuzzN, fuzzN)
		used := make([]vring.Used, fuzzN)
		col := make([]vring.Used, fuzzN)
		ok := func(err error) {
			if err == nil {
				return
			}
			if !corrupt {
				t.Fatalf("unexpected error on an honest ring: %v", err)
			}
			if !errors.Is(err, vring.ErrBroken) && !errors.Is(err, vring.ErrInvalid) &&
				!errors.Is(err, vring.ErrFull) {
				t.Fatalf("untyped error %v", err)
			}
		}
		arg := func(i int) byte {
			if i < len(data) {
				return data[i]
			}
			return 0
		}
		for i := 2; i < len(data); i++ {
			switch data[i] % 8 {
			case 0, 1: // add a chain of 1..4 segments; op 1 indirect
				k := int(arg(i+1)%4) + 1
				bits := arg(i + 2)
				i += 2
				segs := make([]vring.Seg, k)
				var wc uint32
				nw := int(bits>>4) % (k + 1) // writable ones last
				for j := range segs {
					segs[j] = vring.Seg{Addr: buf + uint64(64*j), Len: uint32(8 * (j + 1)), Write: j >= k-nw}
					if segs[j].Write {
						wc += segs[j].Len
					}
				}
				var id uint16
				var err error
				if data[i-2]%8 == 1 && feat&vring.FeatureIndirectDesc != 0 {
					// A table is reused only after its buffer is collected.
					slot := 0
					for tableBusy[slot] {
						slot++
					}
					ta := tables + uint64(slot)*16*fuzzN
					id, err = p.drv.AddIndirect(segs, vring.IndirectTable{Addr: ta, Host: p.g.Bytes(ta, 16*fuzzN)})
					if err == nil {
						tableBusy[slot], tableOf[id] = true, slot+1
					}
				} else {
					id, err = p.drv.Add(segs)
				}
				if errors.Is(err, vring.ErrFull) {
					continue
				}
				ok(err)
				if err == nil {
					wcap[id] = wc
				}
			case 2:
				p.drv.Publish()
			case 3:
				n, err := p.dev.Pop(chains[:int(arg(i+1))%fuzzN+1])
				i++
				ok(err)
				if !corrupt {
					checkChains(t, p.g.Mem, chains[:n])
				}
				for _, c := range chains[:n] {
					cc := c
					cc.Segs = nil
					popped = append(popped, cc)
				}
			case 4: // push some popped chains, maybe out of order
				sel := arg(i + 1)
				i++
				k := min(len(popped), int(sel%4)+1)
				if k == 0 {
					continue
				}
				if !inOrderF && sel&0x80 != 0 {
					reversed(popped[:k])
				}
				for j := 0; j < k; j++ {
					ln := popped[j].WriteLen
					if sel&0x40 != 0 {
						ln /= 2
					}
					used[j] = popped[j].Used(ln)
					pushed[popped[j].ID] = ln
				}
				if inOrderF && sel&0x20 != 0 {
					// One used entry for the batch: the driver reports
					// the earlier ones as used completely.
					for j := 0; j < k-1; j++ {
						pushed[popped[j].ID] = popped[j].WriteLen
					}
					ok(p.dev.(interface{ PushInOrder([]vring.Used) error }).PushInOrder(used[:k]))
				} else {
					ok(p.dev.Push(used[:k]))
				}
				popped = popped[k:]
				p.dev.NeedNotify()
			case 5:
				n, err := p.drv.Collect(col)
				ok(err)
				for _, u := range col[:n] {
					if !corrupt {
						ln, was := pushed[u.ID]
						if !was {
							t.Fatalf("collected %d never pushed", u.ID)
						}
						if u.Len != ln {
							t.Fatalf("id %d len %d want %d", u.ID, u.Len, ln)
						}
						delete(pushed, u.ID)
					}
					delete(wcap, u.ID)
					if ts := tableOf[u.ID]; ts > 0 {
						tableBusy[ts-1] = false
						delete(tableOf, u.ID)
					}
				}
			case 6:
				if arg(i+1)&1 != 0 {
					p.dev.EnableNotify()
					p.drv.EnableInterrupts()
				} else {
					p.dev.DisableNotify()
					p.drv.DisableInterrupts()
				}
				i++
			case 7: // corrupt one byte of shared ring memory
				var mem []byte
				if p.split != nil {
					switch arg(i+1) % 3 {
					case 0:
						mem = p.split.Ring.Desc
					case 1:
						mem = p.split.Ring.Avail
					default:
						mem = p.split.Ring.Used
					}
				} else {
					mem = p.packed.Ring.Desc
				}
				off := int(binary.LittleEndian.Uint16([]byte{arg(i + 2), arg(i + 3)})) % len(mem)
				mem[off] = arg(i + 4)
				i += 4
				corrupt = true
			}
		}
		if corrupt {
			return
		}
		// Drain: everything added must come back exactly once.
		p.drv.Publish()
		for round := 0; round < 4*fuzzN && len(wcap) > 0; round++ {
			n, err := p.dev.Pop(chains)
			ok(err)
			for _, c := range chains[:n] {
				cc := c
				cc.Segs = nil
				popped = append(popped, cc)
			}
			for j := range popped {
				used[0] = popped[j].Used(0)
				pushed[popped[j].ID] = 0
				ok(p.dev.Push(used[:1]))
			}
			popped = popped[:0]
			k, err := p.drv.Collect(col)
			ok(err)
			for _, u := range col[:k] {
				if _, was := wcap[u.ID]; !was {
					t.Fatalf("collected %d not in flight", u.ID)
				}
				delete(wcap, u.ID)
			}
		}
		if len(wcap) != 0 || p.drv.InFlight() != 0 {
			t.Fatalf("%d buffers never came back (in flight %d)", len(wcap), p.drv.InFlight())
		}
	})
}
