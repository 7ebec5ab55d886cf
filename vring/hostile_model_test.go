package vring_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

// TestHostileDriver: a guest that writes anything anywhere in its ring and
// indirect tables, between random device operations (Pop, Unpop, Push,
// PushInOrder, PeekDirect/UseDirect, NeedNotify, Enable/DisableNotify,
// Base/SetBase). The device must not panic or loop, must return only
// segments inside guest memory within the caps, and must take back every
// chain it popped.
func TestHostileDriver(t *testing.T) {
	for _, l := range layouts {
		for _, n := range []int{1, 2, 3, 4, 8} {
			if l == "split" && n == 3 {
				continue
			}
			t.Run(fmt.Sprintf("%s/%d", l, n), func(t *testing.T) {
				for seed := uint64(0); seed < 300; seed++ {
					hostileRun(t, l, n, seed, 2000)
				}
			})
		}
	}
}

func hostileRun(t *testing.T, layout string, n int, seed uint64, steps int) {
	r := rand.New(rand.NewPCG(seed, uint64(n)))
	g := vringtest.NewGuest(1<<16, 4096)
	feat := uint64(r.IntN(8)) << 28 // INDIRECT, EVENT_IDX
	if r.IntN(2) == 0 {
		feat |= vring.FeatureInOrder
	}
	o := vring.Options{Size: n, Features: feat, MaxChainDescs: 1 + r.IntN(n), MaxChainBytes: uint32(r.IntN(2) * 1000)}
	var dev device
	var mem [][]byte
	var err error
	scratch := g.Alloc(16*n*2, 16)
	if layout == "split" {
		s := vringtest.NewSplit(g, n)
		dev, err = vring.NewSplitDevice(s.Ring, g.Mem, o)
		mem = [][]byte{s.Ring.Desc, s.Ring.Avail, s.Ring.Used}
	} else {
		p := vringtest.NewPacked(g, n)
		dev, err = vring.NewPackedDevice(p.Ring, g.Mem, o)
		mem = [][]byte{p.Ring.Desc, p.Ring.DriverEvent, p.Ring.DeviceEvent}
	}
	if err != nil {
		t.Fatal(err)
	}
	mem = append(mem, g.Bytes(scratch, 16*n*2))
	chains := makeChains(n, n)
	var popped []vring.Chain
	used := make([]vring.Used, 2*n+2)
	maxDescs := o.MaxChainDescs
	maxBytes := uint64(o.MaxChainBytes)
	if maxBytes == 0 {
		maxBytes = 1<<32 - 1
	}
	type unpopper interface{ Unpop([]vring.Chain) error }
	type inOrderPusher interface{ PushInOrder([]vring.Used) error }
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("%s n=%d seed=%d: %s", layout, n, seed, fmt.Sprintf(format, args...))
	}
	words := []uint64{0, 1, 2, 3, 4, 5, 7, 0x80, 0x8000, 0x8080, 0x8001, uint64(n), uint64(n - 1),
		scratch, g.ABase, g.AEnd() - 16, g.BBase, 16, 32, 0xffff, 0xffffffff}
	for step := 0; step < steps; step++ {
		switch r.IntN(14) {
		case 10, 11, 12, 13, 1, 2: // the guest offers something plausible
			if layout == "split" {
				i := r.IntN(n)
				d := mem[0][16*i:]
				le64(d, scratch+uint64(16*r.IntN(2*n)))
				le32(d[8:], uint32(16*r.IntN(3)))
				le16(d[12:], uint16(r.IntN(8)))
				le16(d[14:], uint16(r.IntN(n+1)))
				ai := 4 + 2*r.IntN(n)
				le16(mem[1][ai:], uint16(r.IntN(n+1)))
				le16(mem[1][2:], uint16(int(leU16(mem[1][2:]))+r.IntN(3)-0))
			} else {
				i := r.IntN(n)
				d := mem[0][16*i:]
				le64(d, scratch+uint64(16*r.IntN(2*n)))
				le32(d[8:], uint32(16*r.IntN(3)))
				le16(d[12:], uint16(r.IntN(n+1)))
				f := uint16(r.IntN(8)) | uint16(r.IntN(4))<<14>>14<<7
				if r.IntN(2) == 0 {
					f = f&^(0x80|0x8000) | []uint16{0x80, 0x8000}[r.IntN(2)]
				}
				le16(d[14:], f)
			}
		case 0: // the guest writes
			b := mem[r.IntN(len(mem))]
			off := r.IntN(len(b))
			v := words[r.IntN(len(words))]
			if r.IntN(4) == 0 {
				v = r.Uint64()
			}
			for k := 0; k < 1+r.IntN(8) && off+k < len(b); k++ {
				b[off+k] = byte(v >> (8 * k))
			}
		case 3: // pop
			k, err := dev.Pop(chains[:1+r.IntN(n)])
			if err != nil && !errors.Is(err, vring.ErrBroken) {
				fail("pop: %v", err)
			}
			for _, c := range chains[:k] {
				if len(c.Segs) == 0 || len(c.Segs) > maxDescs {
					fail("chain with %d segs", len(c.Segs))
				}
				var tot uint64
				for _, s := range c.Segs {
					if err := g.Mem.Check(s.Addr, uint64(s.Len)); err != nil {
						fail("segment %+v: %v", s, err)
					}
					tot += uint64(s.Len)
				}
				if tot > maxBytes || uint64(c.ReadLen)+uint64(c.WriteLen) != tot {
					fail("chain %d bytes (%d+%d)", tot, c.ReadLen, c.WriteLen)
				}
				if c.Slots == 0 || int(c.Slots) > n {
					fail("chain slots %d", c.Slots)
				}
				cc := c
				cc.Segs = nil
				popped = append(popped, cc)
			}
		case 4: // unpop the newest
			if len(popped) == 0 {
				continue
			}
			k := 1 + r.IntN(len(popped))
			err := dev.(unpopper).Unpop(popped[len(popped)-k:])
			if err != nil && !errors.Is(err, vring.ErrInvalid) {
				fail("unpop: %v", err)
			}
			if err == nil {
				popped = popped[:len(popped)-k]
			}
		case 5, 6: // push the oldest
			if len(popped) == 0 {
				continue
			}
			k := 1 + r.IntN(min(len(popped), len(used)))
			for j := range popped[:k] {
				used[j] = popped[j].Used(popped[j].WriteLen / 2)
			}
			var err error
			if feat&vring.FeatureInOrder != 0 && r.IntN(2) == 0 {
				err = dev.(inOrderPusher).PushInOrder(used[:k])
			} else {
				err = dev.Push(used[:k])
			}
			if err != nil {
				// A popped chain must be taken back (PushInOrder refuses
				// a batch over the queue size: hostile rings can pop more).
				if !errors.Is(err, vring.ErrInvalid) {
					fail("push %d: %v", k, err)
				}
				continue
			}
			popped = popped[k:]
		case 7:
			dev.NeedNotify()
			if r.IntN(2) == 0 {
				dev.EnableNotify()
			} else {
				dev.DisableNotify()
			}
		case 8: // direct
			if d, ok := dev.(*vring.PackedDevice); ok {
				if _, _, _, ok := d.PeekDirect(); ok && r.IntN(4) != 0 {
					if err := d.UseDirect(uint32(r.IntN(100))); err != nil {
						fail("usedirect: %v", err)
					}
				}
			}
		case 9: // restart, sometimes with odd bases
			if len(popped) != 0 && r.IntN(4) != 0 && dev.Err() == nil {
				continue
			}
			popped = popped[:0]
			switch d := dev.(type) {
			case *vring.SplitDevice:
				b := d.Base()
				switch r.IntN(3) {
				case 0:
					b = uint16(r.Uint32())
				case 1:
					b = leU16(mem[1][2:]) - uint16(r.IntN(n+1))
				}
				d.SetBase(b)
			case *vring.PackedDevice:
				ap, aw, up, uw := d.Base()
				if r.IntN(3) == 0 {
					ap, up = uint16(r.Uint32()), uint16(r.Uint32())
				}
				d.SetBase(ap, aw, up, uw)
			}
		}
	}
}

func le64(b []byte, v uint64) { binary.LittleEndian.PutUint64(b, v) }
func le32(b []byte, v uint32) { binary.LittleEndian.PutUint32(b, v) }
func le16(b []byte, v uint16) { binary.LittleEndian.PutUint16(b, v) }
func leU16(b []byte) uint16   { return binary.LittleEndian.Uint16(b) }
