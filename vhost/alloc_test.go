package vhost

import (
	"testing"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// TestZeroAllocs: a burst through Rx and Tx allocates nothing.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, feat := range []uint64{FeatureVersion1 | FeatureMrgRxbuf, FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf} {
		b, f := oneQueue(t, feat, 256)
		f.setupQueue(1, 256)
		port := b.Port(0)
		pool := b.opts.Pool
		txg, txh := f.alloc(12 + 64)
		clear(txh)
		rxg, _ := f.alloc(2048)
		cache := pool.NewCache(0)
		var pkts [8]pmd.Pkt
		var used [8]vring.Used
		allocs := testing.AllocsPerRun(200, func() {
			f.add(1, []vring.Seg{{Addr: txg, Len: 12 + 64}})
			f.add(0, []vring.Seg{{Addr: rxg, Len: 2048, Write: true}})
			n := port.Rx(pkts[:])
			if n != 1 {
				t.Fatalf("rx %d", n)
			}
			if port.Tx(pkts[:n]) != 1 {
				t.Fatal("tx refused")
			}
			f.collect(0, used[:])
			f.collect(1, used[:])
		})
		cache.Flush()
		// The fake driver's bookkeeping map (ids) allocates on the test side only
		// when it grows; the ports themselves must not.
		if allocs > 0.5 {
			t.Errorf("features %#x: %.1f allocations per burst", feat, allocs)
		}
	}
}

// TestZeroAllocsChains: a jumbo packet read into a chain of frames and a chain
// spread over mergeable buffers allocate nothing either.
func TestZeroAllocsChains(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, feat := range []uint64{FeatureVersion1 | FeatureMrgRxbuf, FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf} {
		b, f := oneQueue(t, feat, 256)
		f.setupQueue(1, 256)
		port := b.Port(0)
		txg, txh := f.alloc(12 + 9000)
		clear(txh)
		var rx [5]uint64
		for i := range rx {
			rx[i], _ = f.alloc(2048)
		}
		var pkts [16]pmd.Pkt
		var used [16]vring.Used
		allocs := testing.AllocsPerRun(100, func() {
			f.add(1, []vring.Seg{{Addr: txg, Len: 12 + 9000}})
			for _, a := range rx {
				f.add(0, []vring.Seg{{Addr: a, Len: 2048, Write: true}})
			}
			n := port.Rx(pkts[:])
			if n < 2 {
				t.Fatalf("rx %d", n)
			}
			if port.Tx(pkts[:n]) != n {
				t.Fatal("tx refused")
			}
			f.collect(0, used[:])
			f.collect(1, used[:])
		})
		if allocs > 0.5 {
			t.Errorf("features %#x: %.1f allocations per jumbo packet", feat, allocs)
		}
	}
}
