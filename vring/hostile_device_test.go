package vring_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

// TestHostileDevice: a device that writes any used entry (split: any id and
// length, used.idx moved by any amount; packed: any id and length, wrong wrap
// bits, any skip) between random driver operations (Add, AddIndirect,
// AddBatch, Publish, Collect, Enable/DisableInterrupts). The driver must not
// panic, must fail only with typed errors, and must hand back only buffers
// that were published and in flight, each once, with a length within their
// writable capacity; InFlight and Free must match what the caller holds.
func TestHostileDevice(t *testing.T) {
	for _, l := range layouts {
		for _, n := range []int{1, 2, 3, 4, 8} {
			if l == "split" && n == 3 {
				continue
			}
			for seed := uint64(0); seed < 150; seed++ {
				r := rand.New(rand.NewPCG(seed, uint64(n)))
				hostileDeviceRun(t, fmt.Sprint("seed ", seed), l, n, r.IntN, 300)
			}
		}
	}
}

// FuzzHostileDevice is TestHostileDevice driven by the fuzzer's bytes.
func FuzzHostileDevice(f *testing.F) {
	f.Add([]byte{0, 4, 0, 1, 3, 7, 4, 0, 2, 1, 1, 0, 1, 7, 9, 1})
	f.Add([]byte{1, 2, 8, 0, 0, 0, 0, 1, 6, 3, 0, 0, 5, 0, 0, 2, 7, 0})
	f.Add([]byte{0, 3, 0, 0, 1, 0, 0, 3, 0, 0, 4, 0, 7, 2, 5, 2, 1, 0, 7, 0})
	f.Add([]byte{1, 3, 9, 2, 2, 3, 6, 4, 0, 0, 0, 0, 4, 0, 3, 7, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 2 {
			return
		}
		i := 2
		intn := func(k int) int {
			if i >= len(data) {
				return 0
			}
			i++
			return int(data[i-1]) % k
		}
		n := []int{1, 2, 4, 8, 3, 5}[int(data[1])%6]
		layout := layouts[data[0]&1]
		if layout == "split" && n&(n-1) != 0 {
			n = 4
		}
		hostileDeviceRun(t, "fuzz", layout, n, intn, len(data))
	})
}

type hostileDevBuf struct {
	wcap  uint32
	slots int
	pub   bool
}

func hostileDeviceRun(t *testing.T, name, layout string, n int, intn func(int) int, steps int) {
	r := struct{ IntN func(int) int }{intn} // the same calls for rand and the fuzzer's bytes
	feat := uint64(r.IntN(8)) << 28
	if r.IntN(2) == 0 {
		feat |= vring.FeatureInOrder
	}
	p := newPair(t, layout, n, feat)
	bufs := p.g.Alloc(4096, 64)
	tables := p.g.Alloc(16*n*n, 16)
	tableOf := map[uint16]int{}
	busy := make([]bool, n)
	model := map[uint16]hostileDevBuf{}
	col := make([]vring.Used, n+2)
	broken := false
	var ops []int
	fatal := func(f string, a ...any) {
		t.Helper()
		t.Logf("last ops: %v", ops[max(0, len(ops)-30):])
		t.Fatalf("%s n=%d feat=%#x %s: %s", layout, n, feat, name, fmt.Sprintf(f, a...))
	}
	// The mock device's used position and wrap counter (packed).
	var dPos int
	dWrap := true
	for step := 0; step < steps; step++ {
		op := r.IntN(10)
		ops = append(ops, op)
		switch op {
		case 0, 1:
			k := 1 + r.IntN(min(n, 3))
			segs := make([]vring.Seg, k)
			var wc uint32
			nw := r.IntN(k + 1)
			for j := range segs {
				segs[j] = vring.Seg{Addr: bufs + uint64(64*j), Len: uint32(1 + r.IntN(64)), Write: j >= k-nw}
				if segs[j].Write {
					wc += segs[j].Len
				}
			}
			var id uint16
			var err error
			slots := k
			if op == 1 && feat&vring.FeatureIndirectDesc != 0 {
				s := 0
				for s < n && busy[s] {
					s++
				}
				if s == n {
					continue
				}
				ta := tables + uint64(16*n*s)
				id, err = p.drv.AddIndirect(segs, vring.IndirectTable{Addr: ta, Host: p.g.Bytes(ta, 16*n)})
				if err == nil {
					busy[s], tableOf[id] = true, s+1
				}
				slots = 1
			} else {
				id, err = p.drv.Add(segs)
			}
			if err != nil {
				if !broken && !errors.Is(err, vring.ErrFull) {
					fatal("add: %v", err)
				}
				continue
			}
			if _, dup := model[id]; dup {
				fatal("add returned in-flight id %d", id)
			}
			model[id] = hostileDevBuf{wcap: wc, slots: slots}
		case 2:
			k := r.IntN(n + 1)
			segs := make([]vring.Seg, k)
			for j := range segs {
				segs[j] = vring.Seg{Addr: bufs, Len: 64, Write: r.IntN(2) == 0}
			}
			ids := make([]uint16, k)
			m, err := p.drv.AddBatch(segs, ids)
			if err != nil && !broken {
				fatal("addbatch: %v", err)
			}
			for j := 0; j < m; j++ {
				if _, dup := model[ids[j]]; dup {
					fatal("addbatch returned in-flight id %d", ids[j])
				}
				wc := uint32(0)
				if segs[j].Write {
					wc = 64
				}
				model[ids[j]] = hostileDevBuf{wcap: wc, slots: 1}
			}
		case 3:
			p.drv.Publish()
			for id, b := range model {
				b.pub = true
				model[id] = b
			}
		case 4, 5, 6: // the device writes a used entry: good, bad or forged
			var id uint32
			switch r.IntN(5) {
			case 0:
				id = uint32(r.IntN(n + 2))
			case 1:
				id = uint32(r.IntN(1<<16)) << uint(r.IntN(17))
			default:
				// an in-flight id (published or not)
				if len(model) > 0 {
					ids := make([]int, 0, len(model))
					for k := range model {
						ids = append(ids, int(k))
					}
					sort.Ints(ids)
					id = uint32(ids[r.IntN(len(ids))])
				}
			}
			ln := uint32(r.IntN(70))
			if p.split != nil {
				adv := uint16(1)
				if r.IntN(4) == 0 {
					adv = uint16(r.IntN(n + 2))
				}
				p.split.PutUsedBatch(id, ln, adv)
			} else {
				f := vringtest.UsedBits(dWrap)
				if r.IntN(6) == 0 {
					// Any AVAIL/USED combination, the wrong wrap included.
					f = uint16(r.IntN(2))*vring.DescAvail | uint16(r.IntN(2))*vring.DescUsed
				}
				if ln > 0 {
					f |= vring.DescWrite
				}
				p.packed.SetDesc(dPos, vringtest.PackedDesc{Len: ln, ID: uint16(id), Flags: f})
				skip := 1
				if b, ok := model[uint16(id)]; ok {
					skip = b.slots
				}
				if r.IntN(4) == 0 {
					skip = r.IntN(n + 1)
				}
				dPos += skip
				for dPos >= n {
					dPos -= n
					dWrap = !dWrap
				}
			}
		case 7:
			k, err := p.drv.Collect(col[:1+r.IntN(n+1)])
			for _, u := range col[:k] {
				b, ok := model[u.ID]
				if !ok {
					fatal("collected %d not in flight", u.ID)
				}
				if !b.pub {
					fatal("collected %d never published", u.ID)
				}
				if u.Len > b.wcap {
					fatal("collected %d len %d > cap %d", u.ID, u.Len, b.wcap)
				}
				if int(u.Slots) != b.slots {
					fatal("collected %d slots %d want %d", u.ID, u.Slots, b.slots)
				}
				delete(model, u.ID)
				if s := tableOf[u.ID]; s > 0 {
					busy[s-1] = false
					delete(tableOf, u.ID)
				}
			}
			if err != nil {
				if !errors.Is(err, vring.ErrBroken) {
					fatal("untyped %v", err)
				}
				broken = true
			}
		case 8:
			if r.IntN(2) == 0 {
				p.drv.EnableInterrupts()
			} else {
				p.drv.DisableInterrupts()
			}
		case 9:
			if p.split != nil && r.IntN(3) == 0 {
				p.split.SetUsedIdx(uint16(r.IntN(1 << 16)))
			}
		}
		slots := 0
		for _, b := range model {
			slots += b.slots
		}
		if p.drv.InFlight() != len(model) || p.drv.Free() != n-slots {
			fatal("bookkeeping: InFlight %d model %d, Free %d want %d", p.drv.InFlight(), len(model), p.drv.Free(), n-slots)
		}
	}
}
