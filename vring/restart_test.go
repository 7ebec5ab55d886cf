package vring_test

import (
	"testing"

	"github.com/dpkit/dpkit/vring"
)

// TestSetBaseNotifies: a device restarted with SetBase (vhost-user
// SET_VRING_BASE after a reconnect or a stop) cannot know whether its
// predecessor signalled the used entries it published. With EVENT_IDX the
// driver may be asleep on a used_event (split) or driver event offset
// (packed) that those entries already passed; the first push of the new
// instance must notify, as Linux's vhost (signalled_used_valid), QEMU and
// DPDK's vhost do, or the driver never wakes.
func TestSetBaseNotifies(t *testing.T) {
	o := vring.Options{Features: vring.FeatureEventIdx}
	t.Run("split", func(t *testing.T) {
		p := newDevice(t, "split", 8, o)
		a := p.g.Alloc(64, 8)
		for i := 0; i < 4; i++ {
			p.split.Offer(p.split.Chain(vring.Seg{Addr: a, Len: 8, Write: true}))
		}
		p.split.SetUsedEvent(0) // the driver sleeps until entry 0 is used
		c := makeChains(4, 1)
		if n, err := p.dev.Pop(c); n != 4 || err != nil {
			t.Fatal(n, err)
		}
		// The first instance publishes two entries and stops before it
		// decides on a notification.
		if err := p.dev.Push([]vring.Used{c[0].Used(8), c[1].Used(8)}); err != nil {
			t.Fatal(err)
		}
		// A new instance takes over the ring where the first one stopped.
		dev, err := vring.NewSplitDevice(p.split.Ring, p.g.Mem, vring.Options{Size: 8, Features: o.Features})
		if err != nil {
			t.Fatal(err)
		}
		dev.SetBase(2)
		if n, err := dev.Pop(c[:2]); n != 2 || err != nil {
			t.Fatal(n, err)
		}
		if err := dev.Push([]vring.Used{c[0].Used(8)}); err != nil {
			t.Fatal(err)
		}
		if !dev.NeedNotify() {
			t.Fatal("no notification after a restart: the driver waits on used_event 0 for ever")
		}
		// Then the window applies again.
		if err := dev.Push([]vring.Used{c[1].Used(8)}); err != nil {
			t.Fatal(err)
		}
		if dev.NeedNotify() {
			t.Fatal("notification past used_event")
		}
	})
	t.Run("packed", func(t *testing.T) {
		p := newDevice(t, "packed", 8, o)
		a := p.g.Alloc(64, 8)
		for i := 0; i < 4; i++ {
			p.packed.Chain(uint16(i), vring.Seg{Addr: a, Len: 8, Write: true})
		}
		p.packed.SetDriverEvent(0|1<<15, vring.EventDesc) // position 0, wrap 1
		c := makeChains(4, 1)
		if n, err := p.dev.Pop(c); n != 4 || err != nil {
			t.Fatal(n, err)
		}
		if err := p.dev.Push([]vring.Used{c[0].Used(8), c[1].Used(8)}); err != nil {
			t.Fatal(err)
		}
		dev, err := vring.NewPackedDevice(p.packed.Ring, p.g.Mem, vring.Options{Size: 8, Features: o.Features})
		if err != nil {
			t.Fatal(err)
		}
		dev.SetBase(2, true, 2, true)
		if n, err := dev.Pop(c[:2]); n != 2 || err != nil {
			t.Fatal(n, err)
		}
		if err := dev.Push([]vring.Used{c[0].Used(8)}); err != nil {
			t.Fatal(err)
		}
		if !dev.NeedNotify() {
			t.Fatal("no notification after a restart: the driver waits on event position 0 for ever")
		}
		if err := dev.Push([]vring.Used{c[1].Used(8)}); err != nil {
			t.Fatal(err)
		}
		if dev.NeedNotify() {
			t.Fatal("notification past the event position")
		}
	})
}
