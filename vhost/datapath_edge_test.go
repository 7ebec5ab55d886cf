package vhost

import (
	"bytes"
	"testing"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// guestPackets joins the buffers the guest got back on queue 0 into packets, as a
// virtio-net driver with MRG_RXBUF does: num_buffers, from the header (which may
// itself span buffers), says how many used buffers make each packet.
func guestPackets(t *testing.T, f *fakeFront, bufs map[uint64][]byte) [][]byte {
	t.Helper()
	used := make([]vring.Used, 512)
	n := f.collect(0, used)
	rest := used[:n]
	var out [][]byte
	for len(rest) > 0 {
		var all []byte
		nb, k := -1, 0
		for ; k < len(rest); k++ {
			u := rest[k]
			all = append(all, bufs[bufAddr(t, f, 0, u.ID, bufs)][:u.Len]...)
			if nb < 0 && len(all) >= 12 {
				nb = int(all[10]) | int(all[11])<<8
			}
			if nb >= 0 && k+1 >= nb {
				break
			}
		}
		if nb <= 0 || k == len(rest) {
			t.Fatalf("guest: %d used buffers end inside a packet (num_buffers %d)", len(rest), nb)
		}
		out = append(out, all[12:])
		rest = rest[k+1:]
	}
	return out
}

// TestTxMergeableManyBuffers sends a packet that needs more mergeable receive
// buffers than a burst (64) while the guest has posted enough of them: 200 buffers
// of 1 KiB for a 70000-byte chain of frames (69 buffers). It must reach the guest
// whole, with num_buffers 69, not be dropped as too long.
func TestTxMergeableManyBuffers(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1 | FeatureMrgRxbuf},
		{"packed", FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 256)
			port, pool := b.Port(0), b.opts.Pool
			waitFor(t, "ring running", port.TxReady)
			cache := pool.NewCache(0)
			defer cache.Flush()
			bufs := map[uint64][]byte{}
			for i := 0; i < 200; i++ {
				g, h := f.alloc(1024)
				bufs[g] = h
				f.add(0, []vring.Seg{{Addr: g, Len: 1024, Write: true}})
			}
			big := make([]byte, 70000)
			for i := range big {
				big[i] = byte(i * 7)
			}
			small := []byte("a small packet after the big one")
			pkts := append(mkChain(t, pool, cache, big), mkChain(t, pool, cache, small)...)
			if n := port.Tx(pkts); n != len(pkts) {
				t.Fatalf("Tx took %d of %d frames", n, len(pkts))
			}
			got := guestPackets(t, f, bufs)
			if st := port.Stats(); len(got) != 2 || st.TxPackets != 2 || st.TotalDrops() != 0 {
				t.Fatalf("guest got %d packets; stats %+v", len(got), st)
			}
			if !bytes.Equal(got[0], big) || !bytes.Equal(got[1], small) {
				t.Fatalf("guest packets differ: %d and %d bytes", len(got[0]), len(got[1]))
			}
			// The rest of the posted buffers still serve: 200-69-1 of them.
			var p [1]pmd.Pkt
			for i := 0; i < 130; i++ {
				if cache.Alloc(p[:]) != 1 || !pool.Append(&p[0], 900) {
					t.Fatal("alloc")
				}
				if port.Tx(p[:]) != 1 {
					cache.Free(p[:])
					t.Fatalf("packet %d not taken with buffers posted", i)
				}
			}
			if n := len(guestPackets(t, f, bufs)); n != 130 {
				t.Fatalf("guest got %d of 130 packets", n)
			}
		})
	}
}

// TestBrokenRingTxKeepsBigPacket: with MRG_RXBUF the guest posts two small receive
// buffers and then a bad one. Tx pops the two and breaks the ring at the third; a
// packet the two cannot hold is not too long (the guest could have posted enough
// buffers for it): like any packet on a broken ring with no buffer left, it stays
// the caller's, with no drop counted, and the good buffers still take a packet
// that fits them.
func TestBrokenRingTxKeepsBigPacket(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1 | FeatureMrgRxbuf},
		{"packed", FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 256)
			port, pool := b.Port(0), b.opts.Pool
			waitFor(t, "ring running", port.TxReady)
			bufs := map[uint64][]byte{}
			for i := 0; i < 2; i++ {
				g, h := f.alloc(64)
				bufs[g] = h
				// Two descriptors: the packed direct path takes one-descriptor
				// buffers without popping (see TestBrokenRingTxDelivers).
				f.add(0, []vring.Seg{{Addr: g, Len: 32, Write: true}, {Addr: g + 32, Len: 32, Write: true}})
			}
			f.add(0, []vring.Seg{{Addr: unmappedGPA, Len: 2048, Write: true}})
			cache := pool.NewCache(0)
			defer cache.Flush()
			var p [2]pmd.Pkt
			if cache.Alloc(p[:]) != 2 || !pool.Append(&p[0], 1000) || !pool.Append(&p[1], 100) {
				t.Fatal("alloc")
			}
			small := pool.Data(&p[1])
			for i := range small {
				small[i] = byte(i + 1)
			}
			small = append([]byte(nil), small...)
			n := port.Tx(p[:1])
			if st := port.Stats(); n != 0 || st.TotalDrops() != 0 {
				cache.Free(p[n:])
				t.Fatalf("Tx took %d of the packet the 2 good buffers cannot hold; stats %+v", n, st)
			}
			if n := port.Tx(p[1:]); n != 1 {
				cache.Free(p[:])
				t.Fatalf("Tx took %d of the packet that fits the good buffers", n)
			}
			cache.Free(p[:1])
			got := guestPackets(t, f, bufs)
			if len(got) != 1 || !bytes.Equal(got[0], small) {
				t.Fatalf("guest got %d packets", len(got))
			}
		})
	}
}
