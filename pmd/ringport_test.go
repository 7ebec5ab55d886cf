package pmd

import "testing"

func TestRingPair(t *testing.T) {
	p := newTestPool(t, 256)
	a, b, err := NewRingPair(RingPairOptions{Pool: p, Size: 64, PortIDs: [2]uint16{1, 2}})
	if err != nil {
		t.Fatal(err)
	}
	c := p.NewCache(32)
	var batch Batch
	n := c.Alloc(batch.Room()[:100])
	batch.Grow(n)
	for i := range batch.Pkts() {
		pk := &batch.Pkts()[i]
		p.Append(pk, 60+i)
		p.Data(pk)[0] = byte(i)
	}
	sent := batch.Tx(a)
	if sent != 64 || batch.Len() != 36 {
		t.Fatalf("sent %d kept %d, want 64 and 36", sent, batch.Len())
	}
	var rx Batch
	if got := rx.Rx(b); got != 64 {
		t.Fatalf("received %d", got)
	}
	for i, pk := range rx.Pkts() {
		if pk.Port != 2 || int(pk.Len) != 60+i || p.Data(&pk)[0] != byte(i) {
			t.Fatalf("pkt %d: %+v", i, pk)
		}
	}
	st := a.Stats()
	if st.TxPackets != 64 || st.TxBytes != uint64(64*60+63*64/2) {
		t.Fatalf("a stats %+v", st)
	}
	if b.Stats().RxPackets != 64 {
		t.Fatalf("b stats %+v", b.Stats())
	}
	// b sends some back and they stay in flight; closing frees them.
	if b.Tx(rx.Pkts()[:10]) != 10 {
		t.Fatal("tx back")
	}
	c.Free(rx.Pkts()[10:])
	c.Free(batch.Pkts())
	c.Flush()
	a.Close()
	if a.Tx(batch.Pkts()) != 0 || a.Rx(rx.Room()) != 0 {
		t.Fatal("closed port moved packets")
	}
	b.Close()
	if s := p.Stats(); s.Free != 256 {
		t.Fatalf("after close %d of 256 frames free", s.Free)
	}
}

func TestRingPairZeroAlloc(t *testing.T) {
	p := newTestPool(t, 256)
	a, b, _ := NewRingPair(RingPairOptions{Pool: p})
	defer a.Close()
	defer b.Close()
	c := p.NewCache(64)
	var pkts [32]Pkt
	allocs := testing.AllocsPerRun(1000, func() {
		n := c.Alloc(pkts[:])
		n = a.Tx(pkts[:n])
		n = b.Rx(pkts[:n])
		c.Free(pkts[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per burst", allocs)
	}
	c.Flush()
}
