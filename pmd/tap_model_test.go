package pmd

import (
	"math/rand/v2"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTapRxJumboModel writes frames of 1 to 9000 bytes into a TapPort (over a
// SEQPACKET socket pair) and reads them with bursts of 1 to 8 Pkts: each frame
// arrives whole and in order, as one Pkt or a chain, or is counted as dropped
// (DropTooLong, its chain longer than the burst); no frame of the pool is lost.
func TestTapRxJumboModel(t *testing.T) {
	pool := newTestPool(t, 512)
	tp, peer := newSocketTap(t, pool)
	c := pool.NewCache(32)
	rng := rand.New(rand.NewPCG(7, 7))
	var rx [8]Pkt
	frame := make([]byte, 9000)
	sent, received := 0, 0
	next := 0 // id of the oldest frame not yet received or dropped
	check := func(got int) {
		t.Helper()
		for i := 0; i < got; {
			j := i
			for rx[j].Flags&PktMore != 0 {
				if j++; j == got {
					t.Fatalf("frame cut by the burst: %+v", rx[:got])
				}
			}
			var data []byte
			for s := i; s <= j; s++ {
				data = append(data, pool.Data(&rx[s])...)
			}
			if len(data) < 2 {
				t.Fatalf("short frame %d bytes", len(data))
			}
			id := int(data[0]) | int(data[1])<<8
			if id < next {
				t.Fatalf("frame %d again or out of order, want %d or later", id, next)
			}
			for k := 2; k < len(data); k++ {
				if data[k] != byte(id+k) {
					t.Fatalf("frame %d byte %d is %d, want %d", id, k, data[k], byte(id+k))
				}
			}
			received++
			next = id + 1
			i = j + 1
		}
		c.Free(rx[:got])
	}
	for it := 0; it < 3000; it++ {
		if rng.IntN(2) == 0 {
			n := 2 + rng.IntN(len(frame)-1)
			frame[0], frame[1] = byte(sent), byte(sent>>8)
			for k := 2; k < n; k++ {
				frame[k] = byte(sent + k)
			}
			if _, err := unix.Write(peer, frame[:n]); err == nil {
				sent++
			}
		}
		check(tp.Rx(rx[:1+rng.IntN(len(rx))]))
	}
	for {
		got := tp.Rx(rx[:])
		if got == 0 && tp.heldRest == 0 {
			break
		}
		check(got)
	}
	st := tp.Stats()
	drops := st.Drops[DropTooLong] + st.Drops[DropNoBuffer]
	if uint64(received)+drops != uint64(sent) || st.RxPackets != uint64(received) {
		t.Fatalf("sent %d, received %d, drops %v, stats %+v", sent, received, st.Drops, st)
	}
	if received == 0 || st.Drops[DropTooLong] == 0 {
		t.Fatalf("received %d, dropped %d: the model exercised nothing", received, st.Drops[DropTooLong])
	}
	c.Flush()
	if err := tp.Close(); err != nil {
		t.Fatal(err)
	}
	if s := pool.Stats(); s.Free != 512 || s.BadFrees != 0 {
		t.Fatalf("pool %+v after close", s)
	}
}
