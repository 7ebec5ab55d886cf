package route

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func TestNeighbourTable(t *testing.T) {
	nt := NewNeighbourTable(0)
	rng := rand.New(rand.NewPCG(5, 5))
	ref := map[neighKey]MAC{}
	var keys []Neighbour
	for range 20000 {
		port := uint32(rng.IntN(4))
		a := randAddr(rng, rng.IntN(2) == 0)
		if rng.IntN(3) == 0 && len(keys) > 0 {
			k := keys[rng.IntN(len(keys))]
			_, had := ref[keyOf(k.Port, k.Addr)]
			if nt.Delete(k.Port, k.Addr) != had {
				t.Fatal("Delete result disagrees")
			}
			delete(ref, keyOf(k.Port, k.Addr))
			continue
		}
		var mac MAC
		mac[5] = byte(rng.Uint32())
		if err := nt.Set(port, a, mac); err != nil {
			t.Fatal(err)
		}
		ref[keyOf(port, a)] = mac
		keys = append(keys, Neighbour{Port: port, Addr: a})
	}
	if nt.Len() != len(ref) {
		t.Fatalf("Len %d want %d", nt.Len(), len(ref))
	}
	for _, k := range keys {
		want, wok := ref[keyOf(k.Port, k.Addr)]
		got, ok := nt.Lookup(k.Port, k.Addr)
		if ok != wok || got != want {
			t.Fatalf("%v: got %v %v want %v %v", k, got, ok, want, wok)
		}
		if k.Addr.Is4() {
			b := k.Addr.As4()
			if g4, ok4 := nt.Lookup4(k.Port, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3])); ok4 != ok || g4 != got {
				t.Fatal("Lookup4 disagrees")
			}
		} else {
			b := k.Addr.As16()
			if g6, ok6 := nt.Lookup6(k.Port, &b); ok6 != ok || g6 != got {
				t.Fatal("Lookup6 disagrees")
			}
		}
	}
	n := 0
	for e := range nt.All() {
		if ref[keyOf(e.Port, e.Addr)] != e.MAC {
			t.Fatalf("All yields %+v", e)
		}
		n++
	}
	if n != len(ref) {
		t.Fatalf("All yields %d want %d", n, len(ref))
	}
	small := NewNeighbourTable(2)
	small.Set(0, gw4, gwMAC)
	small.Set(0, gw6, gwMAC)
	if err := small.Set(0, podAddr, gwMAC); err != ErrNeighbourFull {
		t.Fatalf("full table: %v", err)
	}
	a := netip.MustParseAddr("10.9.9.9")
	allocs := testing.AllocsPerRun(100, func() { nt.Lookup(1, a); nt.Lookup4(1, 7) })
	if allocs != 0 {
		t.Fatalf("lookup allocates %v", allocs)
	}
}

// TestNeighbourConcurrent: a reader must only ever see a MAC that was set
// for that key (MAC encodes the key), while a writer churns and rehashes.
func TestNeighbourConcurrent(t *testing.T) {
	nt := NewNeighbourTable(0)
	var stop atomic.Bool
	var wg sync.WaitGroup
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; !stop.Load(); i++ {
			k := i % 5000
			if mac, ok := nt.Lookup(7, addr(k)); ok && (mac[4] != byte(k>>8) || mac[5] != byte(k)) {
				t.Errorf("key %d got %v", k, mac)
				return
			}
		}
	}()
	rng := rand.New(rand.NewPCG(1, 1))
	for range 50000 {
		k := rng.IntN(5000)
		if rng.IntN(2) == 0 {
			nt.Set(7, addr(k), MAC{0, 0, byte(rng.Uint32()), 0, byte(k >> 8), byte(k)})
		} else {
			nt.Delete(7, addr(k))
		}
	}
	stop.Store(true)
	wg.Wait()
}

// TestNeighbourStableDuringGrowth: bindings that stay (their MAC replaced back and
// forth) are found by every lookup while other bindings come and go, growing the
// table and rebuilding it to drop tombstones: never missing, never a MAC they
// never had.
func TestNeighbourStableDuringGrowth(t *testing.T) {
	nt := NewNeighbourTable(0)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	const stable = 64
	for k := range stable {
		if err := nt.Set(3, addr(k), MAC{0, 0, 0, 0, 0, byte(k)}); err != nil {
			t.Fatal(err)
		}
	}
	var stop atomic.Bool
	var bad atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := r; !stop.Load(); i++ {
				k := i % stable
				mac, ok := nt.Lookup4(3, 10<<24|uint32(k))
				if !ok || mac[5] != byte(k) || mac[4] > 1 {
					if bad.Add(1) == 1 {
						first.Store(fmt.Sprintf("key %d: %v %v", k, mac, ok))
					}
				}
			}
		}()
	}
	rng := rand.New(rand.NewPCG(2, 2))
	for i := range 60000 {
		if i%10 == 0 {
			k := rng.IntN(stable)
			nt.Set(3, addr(k), MAC{0, 0, 0, 0, byte(i / 10 % 2), byte(k)})
			continue
		}
		k := stable + rng.IntN(4000+i/10)
		if rng.IntN(2) == 0 {
			nt.Set(3, addr(k), MAC{1})
		} else {
			nt.Delete(3, addr(k))
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d lookups of stable bindings failed, first %v", n, first.Load())
	}
}

// TestNeighbourDeletedMemory fills the table, then deletes every binding but
// a few (pods gone from a node): what stays must be the size of the bindings
// left, not a tombstone for every binding the table once had and a slot
// array of its peak size.
func TestNeighbourDeletedMemory(t *testing.T) {
	const n = 50000
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	before := heapInUse()
	nt := NewNeighbourTable(0)
	for i := range n {
		if err := nt.Set(1, addr(i), MAC{5: byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 10; i < n; i++ {
		if !nt.Delete(1, addr(i)) {
			t.Fatalf("binding %d missing", i)
		}
	}
	grew := int64(heapInUse()) - int64(before)
	t.Logf("heap grew %d KiB for %d bindings left", grew>>10, nt.Len())
	if grew > 64<<10 {
		t.Fatalf("%d KiB kept for %d bindings", grew>>10, nt.Len())
	}
	for i := range 12 {
		if mac, ok := nt.Lookup(1, addr(i)); ok != (i < 10) || ok && mac[5] != byte(i) {
			t.Fatalf("binding %d: %v %v", i, mac, ok)
		}
	}
	if nt.Len() != 10 || len(slices.Collect(nt.All())) != 10 {
		t.Fatalf("Len %d", nt.Len())
	}
	runtime.KeepAlive(nt)
}
