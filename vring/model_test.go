package vring_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/dpkit/dpkit/vring"
)

// TestModel drives a real driver and a real device over one ring with random
// operation sequences (Add/AddBatch/AddIndirect, Publish, Pop, Unpop, Push,
// PushInOrder, PeekDirect/UseDirect, NeedNotify, Enable/Disable on both sides,
// restarts through Base/SetBase) and checks them against a reference model: the
// device pops exactly what was published, in order, with the segments added;
// the driver collects each buffer once with the length pushed; and neither side
// sleeps through a notification it asked for.
func TestModel(t *testing.T) {
	seeds := 40
	steps := 3000
	if testing.Short() || raceEnabled {
		seeds = 8
	}
	t.Run("wrap", func(t *testing.T) {
		// Long runs: the split indices wrap at 65536 several times (about once in
		// 650000 steps). Under the race detector or -short, two feature sets and
		// fewer steps, still past a wrap.
		feats, n := []int{0, 1, 2, 3, 4, 5, 6, 7}, 2000000
		if testing.Short() || raceEnabled {
			feats, n = []int{0, 7}, 1000000
		}
		for _, feat := range feats {
			runModel(t, "split", 8, feat, 1000, n)
		}
	})
	for _, l := range layouts {
		sizes := []int{1, 2, 4, 8}
		if l == "packed" {
			sizes = []int{1, 2, 3, 5, 8}
		}
		for _, n := range sizes {
			for feat := 0; feat < 8; feat++ {
				t.Run(fmt.Sprintf("%s/%d/%d", l, n, feat), func(t *testing.T) {
					for s := 0; s < seeds; s++ {
						runModel(t, l, n, feat, uint64(s), steps)
						if t.Failed() {
							t.Fatalf("seed %d", s)
						}
					}
				})
			}
		}
	}
}

type modelBuf struct {
	id    uint16
	segs  []vring.Seg
	wcap  uint32
	table int // indirect table slot+1
}

func runModel(t *testing.T, layout string, n, featBits int, seed uint64, steps int) {
	var feat uint64
	if featBits&1 != 0 {
		feat |= vring.FeatureEventIdx
	}
	if featBits&2 != 0 {
		feat |= vring.FeatureIndirectDesc
	}
	inOrder := featBits&4 != 0
	if inOrder {
		feat |= vring.FeatureInOrder
	}
	r := rand.New(rand.NewPCG(seed, uint64(n)<<8|uint64(featBits)))
	p := newPair(t, layout, n, feat)
	o := vring.Options{Size: n, Features: feat}
	bufs := p.g.Alloc(4096, 64)
	tables := p.g.Alloc(16*n*n, 16)
	tableBusy := make([]bool, n)

	var (
		added     []modelBuf            // added, not published, in order
		availQ    []modelBuf            // published, not popped, in avail order
		popped    []modelBuf            // popped, not pushed, in pop order
		poppedCh  []vring.Chain         // the chains (Slots) for popped
		pushed    = map[uint16]uint32{} // pushed, not collected: len
		inflight  = map[uint16]modelBuf{}
		drvSleep  bool
		devSleep  bool
		peeked    bool
		peekedBuf modelBuf
		npend     int // UseDirect buffers not published yet
		tail      int // the last popped chains Unpop may return: nothing popped after them was pushed
	)
	chains := makeChains(n, n)
	used := make([]vring.Used, n)
	col := make([]vring.Used, n)
	ids := make([]uint16, n)
	type traceEntry struct {
		step, op, avail, popped, pushed int
		drvSleep, devSleep              bool
	}
	var trace [40]traceEntry
	step, progress := 0, 0 // progress: the last step that collected a buffer
	fatal := func(format string, args ...any) {
		t.Helper()
		for i := max(0, step-len(trace)+1); i <= step; i++ {
			t.Logf("%+v", trace[i%len(trace)])
		}
		t.Fatalf("%s n=%d feat=%d seed=%d: %s", layout, n, featBits, seed, fmt.Sprintf(format, args...))
	}
	check := func(what string, err error) {
		t.Helper()
		if err != nil {
			fatal("%s: %v", what, err)
		}
	}
	mkSegs := func() ([]vring.Seg, uint32) {
		k := 1 + r.IntN(min(n, 3))
		nw := r.IntN(k + 1)
		segs := make([]vring.Seg, k)
		var wc uint32
		for j := range segs {
			segs[j] = vring.Seg{Addr: bufs + uint64(64*r.IntN(60)), Len: uint32(1 + r.IntN(64)), Write: j >= k-nw}
			if segs[j].Write {
				wc += segs[j].Len
			}
		}
		return segs, wc
	}
	pdev := func() *vring.PackedDevice { d, _ := p.dev.(*vring.PackedDevice); return d }
	notify := func() {
		t.Helper()
		nn := p.dev.NeedNotify()
		npend = 0
		if nn {
			drvSleep = false
		}
		if drvSleep && len(pushed) > 0 {
			fatal("driver asleep with %d used buffers and no notification", len(pushed))
		}
	}
	collect := func() {
		t.Helper()
		k, err := p.drv.Collect(col)
		check("collect", err)
		for _, u := range col[:k] {
			ln, ok := pushed[u.ID]
			if !ok {
				fatal("collected %d not pushed", u.ID)
			}
			if u.Len != ln {
				fatal("collected %d len %d want %d", u.ID, u.Len, ln)
			}
			b := inflight[u.ID]
			if b.table > 0 {
				tableBusy[b.table-1] = false
			}
			delete(pushed, u.ID)
			delete(inflight, u.ID)
			progress = step
		}
	}
	restart := func() {
		t.Helper()
		switch d := p.dev.(type) {
		case *vring.SplitDevice:
			base := d.Base()
			nd, err := vring.NewSplitDevice(p.split.Ring, p.g.Mem, o)
			check("restart", err)
			nd.SetBase(base)
			p.dev = nd
		case *vring.PackedDevice:
			ap, aw, up, uw := d.Base()
			nd, err := vring.NewPackedDevice(p.packed.Ring, p.g.Mem, o)
			check("restart", err)
			nd.SetBase(ap, aw, up, uw)
			p.dev = nd
		}
		npend = 0 // Base published them
	}
	for ; step < steps; step++ {
		if step-progress > 5000 {
			fatal("no buffer collected for 5000 steps")
		}
		op := r.IntN(16)
		trace[step%len(trace)] = traceEntry{step, op, len(availQ), len(popped), len(pushed), drvSleep, devSleep}
		switch op {
		case 0, 1: // add
			s, wc := mkSegs()
			var id uint16
			var err error
			b := modelBuf{segs: s, wcap: wc}
			if op == 1 && feat&vring.FeatureIndirectDesc != 0 {
				slot := -1
				for i := range tableBusy {
					if !tableBusy[i] {
						slot = i
						break
					}
				}
				if slot < 0 {
					continue
				}
				ta := tables + uint64(slot*16*n)
				id, err = p.drv.AddIndirect(s, vring.IndirectTable{Addr: ta, Host: p.g.Bytes(ta, 16*n)})
				if err == nil {
					tableBusy[slot] = true
					b.table = slot + 1
				}
			} else {
				id, err = p.drv.Add(s)
			}
			if err == vring.ErrFull {
				continue
			}
			check("add", err)
			if _, dup := inflight[id]; dup {
				fatal("add returned id %d in flight", id)
			}
			b.id = id
			inflight[id] = b
			added = append(added, b)
		case 2: // add batch
			k := r.IntN(n + 1)
			segs := make([]vring.Seg, k)
			for i := range segs {
				segs[i] = vring.Seg{Addr: bufs + uint64(64*r.IntN(60)), Len: uint32(1 + r.IntN(64)), Write: r.IntN(4) != 0}
			}
			m, err := p.drv.AddBatch(segs, ids[:k])
			check("addbatch", err)
			for i := 0; i < m; i++ {
				var wc uint32
				if segs[i].Write {
					wc = segs[i].Len
				}
				if _, dup := inflight[ids[i]]; dup {
					fatal("addbatch returned id %d in flight", ids[i])
				}
				b := modelBuf{id: ids[i], segs: segs[i : i+1], wcap: wc}
				inflight[ids[i]] = b
				added = append(added, b)
			}
		case 3: // publish
			kick := p.drv.Publish()
			availQ = append(availQ, added...)
			added = added[:0]
			if kick {
				devSleep = false
			}
			if devSleep && len(availQ) > 0 {
				fatal("device asleep with %d available buffers and no kick", len(availQ))
			}
		case 4, 5: // pop
			if devSleep {
				continue
			}
			peeked = false
			want := r.IntN(n) + 1
			k, err := p.dev.Pop(chains[:want])
			check("pop", err)
			// Pop may stop short (it reloads the available index only
			// when it has consumed what it saw), but not at nothing.
			if k > min(want, len(availQ)) || k == 0 && len(availQ) > 0 {
				fatal("pop %d of %d available, asked %d", k, len(availQ), want)
			}
			for i := 0; i < k; i++ {
				c := chains[i]
				b := availQ[i]
				if c.ID != b.id || len(c.Segs) != len(b.segs) {
					fatal("popped id %d (%d segs), want %d (%d segs)", c.ID, len(c.Segs), b.id, len(b.segs))
				}
				for j := range c.Segs {
					if c.Segs[j] != b.segs[j] {
						fatal("popped id %d seg %d %+v want %+v", c.ID, j, c.Segs[j], b.segs[j])
					}
				}
				if c.WriteLen != b.wcap {
					fatal("popped id %d writelen %d want %d", c.ID, c.WriteLen, b.wcap)
				}
				cc := c
				cc.Segs = nil
				popped = append(popped, b)
				poppedCh = append(poppedCh, cc)
			}
			tail += k
			availQ = availQ[k:]
		case 6: // unpop the last k popped
			if tail == 0 || devSleep {
				continue
			}
			k := 1 + r.IntN(tail)
			tail -= k
			type unpopper interface{ Unpop([]vring.Chain) error }
			check("unpop", p.dev.(unpopper).Unpop(poppedCh[len(poppedCh)-k:]))
			back := append([]modelBuf(nil), popped[len(popped)-k:]...)
			availQ = append(back, availQ...)
			popped, poppedCh = popped[:len(popped)-k], poppedCh[:len(poppedCh)-k]
		case 7, 8: // push
			if len(popped) == 0 || devSleep {
				continue
			}
			k := 1 + r.IntN(len(popped))
			if !inOrder && r.IntN(2) == 0 {
				// Any k of them, in any order.
				tail = 0
				r.Shuffle(len(popped), func(i, j int) {
					popped[i], popped[j] = popped[j], popped[i]
					poppedCh[i], poppedCh[j] = poppedCh[j], poppedCh[i]
				})
			}
			for j := 0; j < k; j++ {
				ln := uint32(0)
				if popped[j].wcap > 0 {
					ln = uint32(r.IntN(int(popped[j].wcap) + 1))
				}
				used[j] = poppedCh[j].Used(ln)
				pushed[popped[j].id] = ln
			}
			if inOrder && r.IntN(2) == 0 {
				for j := 0; j < k-1; j++ {
					pushed[popped[j].id] = popped[j].wcap
				}
				type inOrderPusher interface{ PushInOrder([]vring.Used) error }
				check("pushinorder", p.dev.(inOrderPusher).PushInOrder(used[:k]))
			} else {
				check("push", p.dev.Push(used[:k]))
			}
			popped, poppedCh = popped[k:], poppedCh[k:]
			tail = min(tail, len(popped))
			npend = 0
		case 9: // direct
			d := pdev()
			if d == nil || devSleep {
				continue
			}
			if peeked && r.IntN(2) == 0 {
				ln := uint32(0)
				if peekedBuf.wcap > 0 {
					ln = uint32(r.IntN(int(peekedBuf.wcap) + 1))
				}
				check("usedirect", d.UseDirect(ln))
				pushed[peekedBuf.id] = ln
				npend++
				availQ = availQ[1:]
				peeked = false
				continue
			}
			addr, ln, w, ok := d.PeekDirect()
			peeked = false
			wantOK := len(popped) == 0 && len(availQ) > 0 && len(availQ[0].segs) == 1 && availQ[0].table == 0
			if ok != wantOK {
				fatal("PeekDirect ok %v want %v", ok, wantOK)
			}
			if ok {
				s := availQ[0].segs[0]
				if addr != s.Addr || ln != s.Len || w != s.Write {
					fatal("PeekDirect %x %d %v want %+v", addr, ln, w, s)
				}
				peeked, peekedBuf = true, availQ[0]
			}
		case 10, 11:
			if !devSleep {
				notify()
			}
		case 12: // driver: collect or sleep
			if drvSleep {
				continue
			}
			if r.IntN(3) == 0 {
				if !p.drv.EnableInterrupts() {
					drvSleep = true
					// Buffers UseDirect used are not published yet.
					if len(pushed) > npend {
						fatal("EnableInterrupts: nothing pending with %d used", len(pushed)-npend)
					}
				}
			} else {
				collect()
				if r.IntN(2) == 0 {
					p.drv.DisableInterrupts()
				}
			}
		case 13: // device: sleep or wake
			if devSleep || len(popped) > 0 {
				continue
			}
			if r.IntN(2) == 0 {
				notify() // a device decides on its pushes before it sleeps
				if !p.dev.EnableNotify() {
					peeked = false
					devSleep = true
					if len(availQ) > 0 {
						fatal("EnableNotify: nothing pending with %d available", len(availQ))
					}
				}
			} else {
				p.dev.DisableNotify()
			}
		case 14: // restart the device
			if len(popped) != 0 || devSleep || r.IntN(4) != 0 {
				continue
			}
			peeked = false
			notify() // the old instance stops cleanly
			restart()
		case 15:
			if drvSleep {
				continue
			}
			collect()
		}
	}
	// Drain: everything added comes back exactly once.
	p.drv.Publish()
	availQ = append(availQ, added...)
	added = nil
	devSleep, drvSleep = false, false
	for round := 0; round < 4*n+4 && len(inflight) > 0; round++ {
		k, err := p.dev.Pop(chains)
		check("drain pop", err)
		for i := 0; i < k; i++ {
			popped = append(popped, availQ[i])
			cc := chains[i]
			cc.Segs = nil
			poppedCh = append(poppedCh, cc)
		}
		availQ = availQ[k:]
		for j := range popped {
			used[0] = poppedCh[j].Used(0)
			pushed[popped[j].id] = 0
			check("drain push", p.dev.Push(used[:1]))
		}
		popped, poppedCh = popped[:0], poppedCh[:0]
		p.dev.NeedNotify()
		collect()
	}
	if len(inflight) != 0 || p.drv.InFlight() != 0 {
		fatal("%d buffers never came back (driver in flight %d)", len(inflight), p.drv.InFlight())
	}
}
