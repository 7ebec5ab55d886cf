package vring_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

const benchN = 256

var benchBatches = []int{1, 32}

func perDesc(b *testing.B, batch int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batch), "ns/desc")
}

// deviceLoop returns a function that re-offers batch descriptors with a
// minimal fake driver (one store per descriptor or per batch) and runs the
// device's Pop+Push on them.
func deviceLoop(tb testing.TB, layout string, batch int) func() {
	p := newDevice(tb, layout, benchN, vring.Options{})
	buf := p.g.Alloc(64*benchN, 64)
	chains := makeChains(batch, 1)
	used := make([]vring.Used, batch)
	if layout == "split" {
		for i := 0; i < benchN; i++ {
			p.split.SetDesc(i, vringtest.Desc{Addr: buf + uint64(64*i), Len: 64, Flags: vring.DescWrite})
			binary.LittleEndian.PutUint16(p.split.Ring.Avail[4+2*i:], uint16(i))
		}
		avail := p.split.Ring.Avail
		var idx uint16
		return func() {
			idx += uint16(batch)
			binary.LittleEndian.PutUint32(avail[0:], uint32(idx)<<16) // fake driver: flags+idx
			n, err := p.dev.Pop(chains)
			if n != batch || err != nil {
				panic(fmt.Sprint(n, err))
			}
			for i := range used {
				used[i] = chains[i].Used(64)
			}
			p.dev.Push(used)
		}
	}
	for i := 0; i < benchN; i++ {
		p.packed.SetDesc(i, vringtest.PackedDesc{Addr: buf + uint64(64*i), Len: 64, ID: uint16(i)})
	}
	desc := p.packed.Ring.Desc
	pos, wrap := 0, true
	return func() {
		for k := 0; k < batch; k++ { // fake driver: flip the flags
			// id+flags as one 32-bit store, as PackedDriver does.
			binary.LittleEndian.PutUint32(desc[16*pos+12:], uint32(pos)|uint32(vringtest.AvailBits(wrap)|vring.DescWrite)<<16)
			if pos++; pos == benchN {
				pos, wrap = 0, !wrap
			}
		}
		n, err := p.dev.Pop(chains)
		if n != batch || err != nil {
			panic(fmt.Sprint(n, err))
		}
		for i := range used {
			used[i] = chains[i].Used(64)
		}
		p.dev.Push(used)
	}
}

// driverLoop runs the driver's Add+Publish+Collect against a minimal fake
// device that marks each buffer used with one store per descriptor.
func driverLoop(tb testing.TB, layout string, batch int) func() {
	p := newPair(tb, layout, benchN, 0)
	buf := p.g.Alloc(64*benchN, 64)
	segs := []vring.Seg{{Addr: buf, Len: 64, Write: true}}
	bufs := make([]vring.Seg, batch)
	for i := range bufs {
		bufs[i] = vring.Seg{Addr: buf + uint64(64*i), Len: 64, Write: true}
	}
	ids := make([]uint16, batch)
	col := make([]vring.Used, batch)
	if layout == "split" {
		avail, usedRing := p.split.Ring.Avail, p.split.Ring.Used
		var last uint16
		return func() {
			addBatch(p.drv, segs, bufs, ids)
			p.drv.Publish()
			for k := 0; k < batch; k++ { // fake device: echo heads
				h := binary.LittleEndian.Uint16(avail[4+2*int(last%benchN):])
				e := usedRing[4+8*int(last%benchN):]
				binary.LittleEndian.PutUint32(e, uint32(h))
				binary.LittleEndian.PutUint32(e[4:], 64)
				last++
			}
			binary.LittleEndian.PutUint32(usedRing[0:], uint32(last)<<16)
			if n, err := p.drv.Collect(col); n != batch || err != nil {
				panic(fmt.Sprint(n, err))
			}
		}
	}
	desc := p.packed.Ring.Desc
	pos, wrap := 0, true
	return func() {
		addBatch(p.drv, segs, bufs, ids)
		p.drv.Publish()
		for k := 0; k < batch; k++ { // fake device: mark used in place
			w := binary.LittleEndian.Uint32(desc[16*pos+12:])
			binary.LittleEndian.PutUint32(desc[16*pos+12:], w&0xffff|uint32(vringtest.UsedBits(wrap))<<16)
			if pos++; pos == benchN {
				pos, wrap = 0, !wrap
			}
		}
		if n, err := p.drv.Collect(col); n != batch || err != nil {
			panic(fmt.Sprint(n, err))
		}
	}
}

// addBatch adds one-descriptor buffers: Add for a batch of 1, AddBatch
// otherwise (the refill API a PMD uses).
func addBatch(d driver, one, bufs []vring.Seg, ids []uint16) {
	if len(bufs) == 1 {
		if _, err := d.Add(one); err != nil {
			panic(err)
		}
		return
	}
	if n, err := d.AddBatch(bufs, ids); n != len(bufs) || err != nil {
		panic(fmt.Sprint(n, err))
	}
}

// roundTrip runs the real driver and the real device on one goroutine.
func roundTrip(tb testing.TB, layout string, batch int) func() {
	p := newPair(tb, layout, benchN, vring.FeatureEventIdx)
	buf := p.g.Alloc(64*benchN, 64)
	segs := []vring.Seg{{Addr: buf, Len: 64, Write: true}}
	bufs := make([]vring.Seg, batch)
	for i := range bufs {
		bufs[i] = vring.Seg{Addr: buf + uint64(64*i), Len: 64, Write: true}
	}
	ids := make([]uint16, batch)
	chains := makeChains(batch, 1)
	used := make([]vring.Used, batch)
	col := make([]vring.Used, batch)
	return func() {
		addBatch(p.drv, segs, bufs, ids)
		p.drv.Publish()
		n, err := p.dev.Pop(chains)
		if n != batch || err != nil {
			panic(fmt.Sprint(n, err))
		}
		for i := range used {
			used[i] = chains[i].Used(64)
		}
		p.dev.Push(used)
		p.dev.NeedNotify()
		if n, err := p.drv.Collect(col); n != batch || err != nil {
			panic(fmt.Sprint(n, err))
		}
	}
}

func benchLoops(b *testing.B, name string, mk func(testing.TB, string, int) func()) {
	for _, l := range layouts {
		for _, batch := range benchBatches {
			b.Run(fmt.Sprintf("%s/%s/batch=%d", name, l, batch), func(b *testing.B) {
				f := mk(b, l, batch)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					f()
				}
				perDesc(b, batch)
			})
		}
	}
}

// BenchmarkDevice: device-side Pop+Push per descriptor.
func BenchmarkDevice(b *testing.B) { benchLoops(b, "pop+push", deviceLoop) }

// BenchmarkDriver: driver-side Add+Publish+Collect per descriptor.
func BenchmarkDriver(b *testing.B) { benchLoops(b, "add+collect", driverLoop) }

// BenchmarkRoundTrip: both real sides on one goroutine.
func BenchmarkRoundTrip(b *testing.B) { benchLoops(b, "roundtrip", roundTrip) }

// TestZeroAllocs proves the hot paths allocate nothing.
func TestZeroAllocs(t *testing.T) {
	for name, mk := range map[string]func(testing.TB, string, int) func(){
		"device": deviceLoop, "driver": driverLoop, "roundtrip": roundTrip} {
		for _, l := range layouts {
			for _, batch := range benchBatches {
				f := mk(t, l, batch)
				if a := testing.AllocsPerRun(1000, f); a != 0 {
					t.Errorf("%s/%s/%d: %v allocs per run", name, l, batch, a)
				}
			}
		}
	}
}

// BenchmarkFakePeer measures the fake peers of BenchmarkDevice and
// BenchmarkDriver alone (batch 32), so their cost can be subtracted.
func BenchmarkFakePeer(b *testing.B) {
	const batch = 32
	g := vringtest.NewGuest(1<<20, 4096)
	s := vringtest.NewSplit(g, benchN)
	pk := vringtest.NewPacked(g, benchN)
	b.Run("split-device-echo", func(b *testing.B) {
		avail, usedRing := s.Ring.Avail, s.Ring.Used
		var last uint16
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for k := 0; k < batch; k++ {
				h := binary.LittleEndian.Uint16(avail[4+2*int(last%benchN):])
				e := usedRing[4+8*int(last%benchN):]
				binary.LittleEndian.PutUint32(e, uint32(h))
				binary.LittleEndian.PutUint32(e[4:], 64)
				last++
			}
			binary.LittleEndian.PutUint32(usedRing[0:], uint32(last)<<16)
		}
		perDesc(b, batch)
	})
	b.Run("packed-driver-flip", func(b *testing.B) {
		desc := pk.Ring.Desc
		pos, wrap := 0, true
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for k := 0; k < batch; k++ {
				binary.LittleEndian.PutUint32(desc[16*pos+12:], uint32(pos)|uint32(vringtest.AvailBits(wrap)|vring.DescWrite)<<16)
				if pos++; pos == benchN {
					pos, wrap = 0, !wrap
				}
			}
		}
		perDesc(b, batch)
	})
	b.Run("packed-device-flip", func(b *testing.B) {
		desc := pk.Ring.Desc
		pos, wrap := 0, true
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			for k := 0; k < batch; k++ {
				w := binary.LittleEndian.Uint32(desc[16*pos+12:])
				binary.LittleEndian.PutUint32(desc[16*pos+12:], w&0xffff|uint32(vringtest.UsedBits(wrap))<<16)
				if pos++; pos == benchN {
					pos, wrap = 0, !wrap
				}
			}
		}
		perDesc(b, batch)
	})
}
