package pmd

import (
	"math/rand/v2"
	"testing"
)

// TestRingPairChainsModel sends chains of random length through a small ring pair
// and receives them with bursts of random size, checking against a model: every
// packet arrives whole (all its segments in one Rx, in order) and in order, or is
// dropped and counted as DropTooLong; no frame is lost or handed out twice, and
// (a frame freed twice shows in BadFrees) every frame is back in the pool once both ends are closed.
func TestRingPairChainsModel(t *testing.T) {
	iters := 20000
	if testing.Short() {
		iters = 4000
	}
	for seed := uint64(1); seed <= 4; seed++ {
		rng := rand.New(rand.NewPCG(seed, 0))
		pool := newTestPool(t, 1024)
		a, b, err := NewRingPair(RingPairOptions{Pool: pool, Size: 32})
		if err != nil {
			t.Fatal(err)
		}
		c := pool.NewCache(32)
		var pending []Pkt // allocated, not yet accepted by a.Tx
		nextID, wantID := uint32(0), uint32(0)
		received := 0
		var rx [MaxBurst]Pkt
		for it := 0; it < iters; it++ {
			if len(pending) < 64 {
				segs := 1 + rng.IntN(12)
				ch := make([]Pkt, segs)
				if c.Alloc(ch) != segs {
					t.Fatalf("seed %d: pool exhausted", seed)
				}
				for s := range ch {
					ch[s].Meta = nextID<<8 | uint32(s)
					ch[s].Len = uint16(s + 1)
					if s < segs-1 {
						ch[s].Flags = PktMore
					}
				}
				nextID++
				pending = append(pending, ch...)
			}
			n := a.Tx(pending[:min(len(pending), 1+rng.IntN(40))])
			pending = pending[n:]

			burst := 1 + rng.IntN(16)
			got := b.Rx(rx[:burst])
			for i := 0; i < got; {
				id := rx[i].Meta >> 8
				if id < wantID {
					t.Fatalf("seed %d it %d: packet %d again or out of order (want %d or later)", seed, it, id, wantID)
				}
				j := i
				for ; rx[j].Flags&PktMore != 0; j++ {
					if j+1 == got {
						t.Fatalf("seed %d it %d: packet %d cut by the burst", seed, it, id)
					}
				}
				for s := i; s <= j; s++ {
					if rx[s].Meta != id<<8|uint32(s-i) || rx[s].Len != uint16(s-i+1) {
						t.Fatalf("seed %d it %d: packet %d segment %d is %+v", seed, it, id, s-i, rx[s])
					}
				}
				received++
				wantID = id + 1
				i = j + 1
			}
			c.Free(rx[:got])
		}
		// Drain what is left with full bursts, then account for every packet.
		for len(pending) > 0 || b.rx.Len() > 0 || len(b.stash) > 0 {
			n := a.Tx(pending)
			pending = pending[n:]
			got := b.Rx(rx[:])
			received += PacketCount(rx[:got])
			c.Free(rx[:got])
		}
		drops := b.Stats().Drops[DropTooLong] + a.Stats().Drops[DropTooLong]
		if uint64(received)+drops != uint64(nextID) {
			t.Fatalf("seed %d: sent %d packets, received %d, dropped %d", seed, nextID, received, drops)
		}
		if drops == 0 || received == 0 {
			t.Fatalf("seed %d: %d received, %d dropped: the model exercised nothing", seed, received, drops)
		}
		if b.Stats().RxPackets != uint64(received) || a.Stats().TxPackets != uint64(nextID)-a.Stats().Drops[DropTooLong] {
			t.Fatalf("seed %d: counters %+v %+v", seed, a.Stats(), b.Stats())
		}
		c.Flush()
		a.Close()
		b.Close()
		if s := pool.Stats(); s.Free != 1024 || s.BadFrees != 0 {
			t.Fatalf("seed %d: pool %+v after close", seed, s)
		}
	}
}

// TestRingPairLongChainBigBurst: a reader's burst of 512 Pkts cut a chain of 400
// segments after 200 packets. Rx stashes the part it took for the next call, but the
// stash held only MaxBurst segments, so the 312 it had were dropped as DropTooLong,
// though the chain fits the reader's burst (the documented drop is of a chain longer
// than both the burst and MaxBurst), and the next Rx of 512 would have taken it.
func TestRingPairLongChainBigBurst(t *testing.T) {
	pool := newTestPool(t, 1024)
	a, b, err := NewRingPair(RingPairOptions{Pool: pool, Size: 1024})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer a.Close()
	c := pool.NewCache(0)
	defer c.Flush()
	pkts := make([]Pkt, 600)
	if c.Alloc(pkts) != len(pkts) {
		t.Fatal("alloc")
	}
	for i := 200; i < 599; i++ {
		pkts[i].Flags = PktMore
	}
	if n := a.Tx(pkts); n != len(pkts) {
		c.Free(pkts[n:])
		t.Fatalf("Tx took %d of %d", n, len(pkts))
	}
	rx := make([]Pkt, 512)
	got := 0
	for i := 0; i < 3; i++ {
		n := b.Rx(rx)
		got += PacketCount(rx[:n])
		c.Free(rx[:n])
	}
	if got != 201 || b.Stats().Drops[DropTooLong] != 0 {
		t.Fatalf("received %d packets of 201, drops %v", got, b.Stats().Drops)
	}
}
