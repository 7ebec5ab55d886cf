package vring_test

import (
	"fmt"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

// A driver offers one buffer, a device fills it and returns it.
func Example() {
	g := vringtest.NewGuest(1<<16, 4096) // fake guest memory
	ring := vringtest.NewSplit(g, 8)     // ring areas inside it
	o := vring.Options{Size: 8, Features: vring.FeatureEventIdx}
	drv, _ := vring.NewSplitDriver(ring.Ring, g.Mem, o)
	dev, _ := vring.NewSplitDevice(ring.Ring, g.Mem, o)

	buf := g.Alloc(64, 8)
	dev.EnableNotify()
	id, _ := drv.Add([]vring.Seg{{Addr: buf, Len: 64, Write: true}})
	kick := drv.Publish()

	chains := []vring.Chain{{Segs: make([]vring.Seg, 0, 4)}}
	n, _ := dev.Pop(chains)
	w, _ := g.Mem.WriteChain([]byte("hello"), &chains[0])
	dev.Push([]vring.Used{chains[0].Used(uint32(w))})

	used := make([]vring.Used, 4)
	k, _ := drv.Collect(used)
	fmt.Println(kick, n, k, used[0].ID == id, used[0].Len, string(g.Bytes(buf, 5)))
	// Output: true 1 1 true 5 hello
}
