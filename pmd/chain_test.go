package pmd_test

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/google/gopacket/pcapgo"

	"github.com/dpkit/dpkit/pmd"
)

// chainOf allocates a chain of segs segments of n bytes each, byte i of segment s
// holding tag+s.
func chainOf(t *testing.T, pool *pmd.Pool, c *pmd.Cache, segs, n int, tag byte) []pmd.Pkt {
	t.Helper()
	ch := make([]pmd.Pkt, segs)
	if c.Alloc(ch) != segs {
		t.Fatal("alloc")
	}
	for s := range ch {
		pool.Append(&ch[s], n)
		for i, d := 0, pool.Data(&ch[s]); i < len(d); i++ {
			d[i] = tag + byte(s)
		}
		if s < segs-1 {
			ch[s].Flags |= pmd.PktMore
		}
	}
	return ch
}

func TestPacketCount(t *testing.T) {
	m, e := pmd.Pkt{Flags: pmd.PktMore}, pmd.Pkt{}
	for _, c := range []struct {
		pkts []pmd.Pkt
		want int
	}{{nil, 0}, {[]pmd.Pkt{e}, 1}, {[]pmd.Pkt{m, m, e, e}, 2}, {[]pmd.Pkt{e, m}, 2}, {[]pmd.Pkt{m, e, m, m, e}, 2}} {
		if got := pmd.PacketCount(c.pkts); got != c.want {
			t.Errorf("%v: %d packets, want %d", c.pkts, got, c.want)
		}
	}
}

// TestRingPairChains sends chains through a ring pair in bursts that cut them: each
// arrives whole, in order; one longer than the reader's burst is dropped and
// counted; a ring too full for a chain takes none of it.
func TestRingPairChains(t *testing.T) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool, Size: 16})
	c := pool.NewCache(0)
	if !pmd.TxChains(a) {
		t.Fatal("ring ports carry chains")
	}
	var sent []pmd.Pkt
	for i := 0; i < 4; i++ {
		sent = append(sent, chainOf(t, pool, c, 3, 100, byte(10*i))...)
	}
	// Four chains of three fill 12 of the 16 slots; a chain of five then does not fit.
	if n := a.Tx(sent); n != 12 {
		t.Fatalf("Tx took %d of 12", n)
	}
	more := chainOf(t, pool, c, 5, 100, 200)
	if n := a.Tx(more); n != 0 {
		t.Fatalf("Tx split a chain: took %d of 5 with 4 slots free", n)
	}
	c.Free(more)
	var got []pmd.Pkt
	var pkts [5]pmd.Pkt // cuts the second chain
	for round := 0; round < 10 && len(got) < 12; round++ {
		n := b.Rx(pkts[:])
		if n > 0 && pkts[n-1].Flags&pmd.PktMore != 0 {
			t.Fatalf("Rx returned a cut chain")
		}
		got = append(got, pkts[:n]...)
	}
	if len(got) != 12 {
		t.Fatalf("received %d segments, want 12", len(got))
	}
	for i := range got {
		if got[i].Frame != sent[i].Frame || got[i].Flags != sent[i].Flags {
			t.Fatalf("segment %d out of order", i)
		}
	}
	c.Free(got)

	// A chain of 6 read with bursts of 5 can never fit: dropped, frames returned.
	long := chainOf(t, pool, c, 6, 100, 1)
	after := chainOf(t, pool, c, 1, 60, 99)
	if a.Tx(long) != 6 || a.Tx(after) != 1 {
		t.Fatal("Tx")
	}
	n := 0
	for round := 0; round < 4 && n == 0; round++ {
		n = b.Rx(pkts[:])
	}
	if n != 1 || pkts[0].Frame != after[0].Frame {
		t.Fatalf("after the long chain: %d packets", n)
	}
	c.Free(pkts[:n])
	if st := b.Stats(); st.Drops[pmd.DropTooLong] != 1 {
		t.Fatalf("drops %v", st.Drops)
	}
	c.Flush()
	a.Close()
	b.Close()
	if st := pool.Stats(); st.Free != 512 {
		t.Fatalf("%d of 512 frames free after Close", st.Free)
	}
}

// TestCaptureChain captures a chain as one record holding all its bytes.
func TestCaptureChain(t *testing.T) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	ca := pmd.NewCapturePort(a, pool)
	defer ca.Close()
	defer b.Close()
	c := pool.NewCache(0)
	defer c.Flush()
	if !pmd.TxChains(ca) {
		t.Fatal("CapturePort hides TxChains")
	}
	var file bytes.Buffer
	if err := ca.Start(&file, pmd.CaptureOptions{Snaplen: 4000}); err != nil {
		t.Fatal(err)
	}
	ch := append(chainOf(t, pool, c, 3, 1000, 1), chainOf(t, pool, c, 1, 64, 9)...)
	if n := ca.Tx(ch); n != 4 {
		t.Fatalf("Tx %d", n)
	}
	var pkts [8]pmd.Pkt
	c.Free(pkts[:b.Rx(pkts[:])])
	st, err := ca.Stop()
	if err != nil || st.Captured != 2 {
		t.Fatalf("captured %+v, %v; want 2 records", st, err)
	}
	r, _ := pcapgo.NewReader(bytes.NewReader(file.Bytes()))
	data, ci, err := r.ReadPacketData()
	if err != nil || ci.Length != 3000 || len(data) != 3000 || data[0] != 1 || data[1500] != 2 || data[2999] != 3 {
		t.Fatalf("chain record: len %d caplen %d, %v", ci.Length, len(data), err)
	}
	if data, ci, err = r.ReadPacketData(); err != nil || ci.Length != 64 || data[0] != 9 {
		t.Fatalf("second record: %d, %v", ci.Length, err)
	}
}

// TestRingPortTxChainLongerThanRing: a chain of more segments than the ring holds can
// never go; Tx takes and drops it (DropTooLong) instead of refusing it for ever and
// holding up the packet behind it. Found in review.
func TestRingPortTxChainLongerThanRing(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b, err := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool, Size: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	defer a.Close()
	c := pool.NewCache(0)
	var batch pmd.Batch
	for _, p := range append(chainOf(t, pool, c, 5, 100, 1), chainOf(t, pool, c, 1, 60, 9)...) {
		batch.Push(p)
	}
	got := 0
	for round := 0; round < 10 && batch.Len() > 0; round++ {
		batch.Tx(a)
		var rx [8]pmd.Pkt
		n := b.Rx(rx[:])
		for _, pk := range rx[:n] {
			if pk.Len != 60 || pool.Data(&pk)[0] != 9 {
				t.Errorf("received %d bytes tagged %d, want the 60-byte packet", pk.Len, pool.Data(&pk)[0])
			}
		}
		got += n
		c.Free(rx[:n])
	}
	c.Free(batch.Pkts())
	c.Flush()
	if batch.Len() != 0 || got != 1 {
		t.Fatalf("%d packets left in the batch, %d received: the long chain held up the port", batch.Len(), got)
	}
	if d := a.Stats().Drops[pmd.DropTooLong]; d != 1 {
		t.Errorf("DropTooLong %d, want 1", d)
	}
	if s := pool.Stats(); s.Free != pool.Frames() {
		t.Errorf("%d of %d frames free after the test: the dropped chain leaked", s.Free, pool.Frames())
	}
}

// TestBatchFilterChains: Filter takes a chain as one packet: keep sees its first
// segment only, and the chain is kept or dropped whole. Deciding per segment, it
// asked keep about continuation segments (which carry no headers) and could keep a
// segment whose chain head was dropped, or drop a chain's last segment and leave the
// one before with PktMore joining the next packet.
func TestBatchFilterChains(t *testing.T) {
	var b pmd.Batch
	// Packets: 1, chain 2-3-4, 5, chain 6-7.
	for i, more := range []bool{false, true, true, false, false, true, false} {
		room := b.Room()
		room[0] = pmd.Pkt{Meta: uint32(i + 1)}
		if more {
			room[0].Flags = pmd.PktMore
		}
		b.Grow(1)
	}
	var asked, dropped []uint32
	n := b.Filter(func(pk *pmd.Pkt) bool {
		asked = append(asked, pk.Meta)
		return pk.Meta != 2 // drop the first chain
	}, func(pk *pmd.Pkt) { dropped = append(dropped, pk.Meta) })
	var kept []uint32
	for _, pk := range b.Pkts() {
		kept = append(kept, pk.Meta)
	}
	if n != 1 || fmt.Sprint(asked) != "[1 2 5 6]" || fmt.Sprint(dropped) != "[2 3 4]" || fmt.Sprint(kept) != "[1 5 6 7]" {
		t.Fatalf("Filter returned %d, asked about %v, dropped %v, kept %v", n, asked, dropped, kept)
	}
	if pmd.PacketCount(b.Pkts()) != 3 || b.Pkts()[2].Flags&pmd.PktMore == 0 || b.Pkts()[3].Flags&pmd.PktMore != 0 {
		t.Fatal("chain flags wrong after Filter")
	}
}
