package vring_test

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/vring"
	"github.com/dpkit/dpkit/vring/vringtest"
)

// TestSplitDeviceAvail2Aligned: VIRTIO 1.2 §2.7 requires only 2-byte alignment of
// the available ring. A driver may place it at an address that is 2 mod 4; the
// device side must accept it and read avail.flags, avail.idx and used_event
// right. An odd address is still refused.
func TestSplitDeviceAvail2Aligned(t *testing.T) {
	for _, n := range []int{1, 2, 4, 256} {
		for _, ev := range []bool{false, true} {
			g := vringtest.NewGuest(1<<20, 4096)
			s := vringtest.NewSplit(g, n)
			_, a, _ := vring.SplitSizes(n)
			addr := g.Alloc(a+4, 4) + 2
			s.AvailAddr = addr
			s.Ring.Avail = g.Bytes(addr, a)
			o := vring.Options{Size: n}
			if ev {
				o.Features = vring.FeatureEventIdx
			}
			dev, err := vring.NewSplitDevice(s.Ring, g.Mem, o)
			if err != nil {
				t.Fatalf("n %d event %v: 2-aligned avail refused: %v", n, ev, err)
			}
			buf := g.Alloc(64, 8)
			chains := makeChains(1, 4)
			for round := 0; round < 3; round++ {
				s.Offer(s.Chain(vring.Seg{Addr: buf, Len: 64, Write: true}))
				if !dev.EnableNotify() {
					t.Fatalf("n %d event %v round %d: EnableNotify sees nothing pending", n, ev, round)
				}
				if k, err := dev.Pending(); k != 1 || err != nil {
					t.Fatalf("n %d event %v round %d: Pending %d %v", n, ev, round, k, err)
				}
				if k, err := dev.Pop(chains); k != 1 || err != nil {
					t.Fatalf("n %d event %v round %d: Pop %d %v", n, ev, round, k, err)
				}
				// Round 0 and 2 want a notification, round 1 does not.
				want := round != 1
				if ev {
					used := s.UsedIdx()
					if want {
						s.SetUsedEvent(used)
					} else {
						s.SetUsedEvent(used + 5)
					}
				} else if want {
					s.SetAvailFlags(0)
				} else {
					s.SetAvailFlags(vring.AvailNoInterrupt)
				}
				if err := dev.Push([]vring.Used{chains[0].Used(10)}); err != nil {
					t.Fatal(err)
				}
				if got := dev.NeedNotify(); got != want {
					t.Errorf("n %d event %v round %d: NeedNotify %v, want %v", n, ev, round, got, want)
				}
			}
		}
	}
	g := vringtest.NewGuest(1<<20, 4096)
	s := vringtest.NewSplit(g, 4)
	_, a, _ := vring.SplitSizes(4)
	odd := s.Ring
	odd.Avail = g.Bytes(g.Alloc(a+4, 4)+1, a)
	if _, err := vring.NewSplitDevice(odd, g.Mem, vring.Options{Size: 4}); !errors.Is(err, vring.ErrLayout) {
		t.Fatalf("odd avail: %v", err)
	}
}
