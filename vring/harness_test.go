package vring_test

import (
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

type device interface {
	Pop([]vring.Chain) (int, error)
	Push([]vring.Used) error
	NeedNotify() bool
	EnableNotify() bool
	DisableNotify()
	Err() error
}

type driver interface {
	Add([]vring.Seg) (uint16, error)
	AddBatch([]vring.Seg, []uint16) (int, error)
	AddIndirect([]vring.Seg, vring.IndirectTable) (uint16, error)
	Publish() bool
	Collect([]vring.Used) (int, error)
	EnableInterrupts() bool
	DisableInterrupts()
	Free() int
	InFlight() int
	Err() error
}

type pair struct {
	g      *vringtest.Guest
	split  *vringtest.Split
	packed *vringtest.Packed
	dev    device
	drv    driver
}

var layouts = []string{"split", "packed"}

// newPair builds a driver and a device on one ring in fake guest memory.
func newPair(tb testing.TB, layout string, n int, features uint64) *pair {
	tb.Helper()
	p := &pair{g: vringtest.NewGuest(1<<20, 1<<16)}
	o := vring.Options{Size: n, Features: features}
	var err error
	switch layout {
	case "split":
		p.split = vringtest.NewSplit(p.g, n)
		var drv *vring.SplitDriver
		drv, err = vring.NewSplitDriver(p.split.Ring, p.g.Mem, o)
		if err == nil {
			p.drv = drv
			p.dev, err = vring.NewSplitDevice(p.split.Ring, p.g.Mem, o)
		}
	case "packed":
		p.packed = vringtest.NewPacked(p.g, n)
		var drv *vring.PackedDriver
		drv, err = vring.NewPackedDriver(p.packed.Ring, p.g.Mem, o)
		if err == nil {
			p.drv = drv
			p.dev, err = vring.NewPackedDevice(p.packed.Ring, p.g.Mem, o)
		}
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// newDevice builds only a device on a mock ring (the mock is the driver).
func newDevice(tb testing.TB, layout string, n int, o vring.Options) *pair {
	tb.Helper()
	p := &pair{g: vringtest.NewGuest(1<<20, 1<<16)}
	o.Size = n
	var err error
	if layout == "split" {
		p.split = vringtest.NewSplit(p.g, n)
		p.dev, err = vring.NewSplitDevice(p.split.Ring, p.g.Mem, o)
	} else {
		p.packed = vringtest.NewPacked(p.g, n)
		p.dev, err = vring.NewPackedDevice(p.packed.Ring, p.g.Mem, o)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func makeChains(n, segs int) []vring.Chain {
	c := make([]vring.Chain, n)
	for i := range c {
		c[i].Segs = make([]vring.Seg, 0, segs)
	}
	return c
}
