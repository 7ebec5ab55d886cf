package vhost

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// TestBackendChains moves jumbo frames through the back-end, whose pool has 2048-byte
// frames: a 9000-byte packet from the guest arrives as a chain of frames, and the
// chain sent back reaches the guest as one packet with the same bytes, for each ring
// layout and buffer mode. The guest is the Go front-end with 16 KiB buffers.
func TestBackendChains(t *testing.T) {
	for _, dis := range []uint64{0, FeatureRingPacked, FeatureMrgRxbuf, FeatureRingPacked | FeatureMrgRxbuf} {
		t.Run(fmt.Sprintf("disable=%#x", dis), func(t *testing.T) {
			b, path := testBackend(t, nil)
			pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 512, FrameSize: 16384, Huge: pmd.HugeNever, Shared: true, Name: "vhost-jumbo"})
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, DisableFeatures: dis})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			waitFor(t, "queues", b.ready)
			fp, bp := f.Port(0), b.Port(0)
			if !pmd.TxChains(bp) {
				t.Fatal("the back-end port does not take chains")
			}
			fc, bc := pool.NewCache(0), b.opts.Pool.NewCache(0)
			defer fc.Flush()
			defer bc.Flush()
			for round, size := range []int{9000, 2049, 4000, 60, 12000} {
				var pk [1]pmd.Pkt
				if fc.Alloc(pk[:]) != 1 || !pool.Append(&pk[0], size) {
					t.Fatal("alloc")
				}
				want := pool.Data(&pk[0])
				for i := range want {
					want[i] = byte(i*3 + round)
				}
				want = append([]byte(nil), want...)
				if fp.Tx(pk[:]) != 1 {
					t.Fatal("front-end Tx")
				}
				// Guest to host: a chain.
				var in [16]pmd.Pkt
				var n int
				deadline := time.Now().Add(5 * time.Second)
				for n == 0 && time.Now().Before(deadline) {
					n = bp.Rx(in[:])
				}
				room := b.opts.Pool.FrameSize() - b.opts.Pool.Headroom()
				if wantSegs := (size + room - 1) / room; n != wantSegs {
					t.Fatalf("%d bytes arrived in %d segments, want %d (stats %+v)", size, n, wantSegs, bp.Stats())
				}
				var got []byte
				for i := range in[:n] {
					if more := in[i].Flags&pmd.PktMore != 0; more != (i < n-1) {
						t.Fatalf("segment %d: PktMore %v", i, more)
					}
					got = append(got, b.opts.Pool.Data(&in[i])...)
				}
				if !bytes.Equal(got, want) {
					t.Fatalf("%d-byte packet differs after g2h", size)
				}
				// Host to guest: the chain as one packet.
				if sent := bp.Tx(in[:n]); sent != n {
					t.Fatalf("back-end Tx took %d of %d segments (stats %+v)", sent, n, bp.Stats())
				}
				var back [4]pmd.Pkt
				var m int
				for m == 0 && time.Now().Before(deadline) {
					m = fp.Rx(back[:])
				}
				if m != 1 || !bytes.Equal(pool.Data(&back[0]), want) {
					t.Fatalf("h2g: %d packets, stats %+v", m, fp.Stats())
				}
				fc.Free(back[:m])
			}
			if st := bp.Stats(); st.RxPackets != 5 || st.TxPackets != 5 {
				t.Fatalf("back-end counted %d in, %d out; want 5 packets each", st.RxPackets, st.TxPackets)
			}
		})
	}
}

// mkChain copies data into a chain of frames of pool (full frames, the last partial).
func mkChain(t *testing.T, pool *pmd.Pool, c *pmd.Cache, data []byte) []pmd.Pkt {
	t.Helper()
	room := pool.FrameSize() - pool.Headroom()
	var ch []pmd.Pkt
	for off := 0; off < len(data); off += room {
		var pk [1]pmd.Pkt
		if c.Alloc(pk[:]) != 1 {
			t.Fatal("alloc")
		}
		n := min(room, len(data)-off)
		pool.Append(&pk[0], n)
		copy(pool.Data(&pk[0]), data[off:off+n])
		if off+n < len(data) {
			pk[0].Flags = pmd.PktMore
		}
		ch = append(ch, pk[0])
	}
	return ch
}

// rxPackets reads whole packets from p with bursts of burst Pkts until it has want
// of them, joining chains.
func rxPackets(t *testing.T, p pmd.Port, pool *pmd.Pool, want, burst int) [][]byte {
	t.Helper()
	var got [][]byte
	var cur []byte
	pkts := make([]pmd.Pkt, burst)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n := p.Rx(pkts)
		if n > 0 && pkts[n-1].Flags&pmd.PktMore != 0 {
			t.Fatal("Rx returned an unfinished chain")
		}
		for i := range pkts[:n] {
			cur = append(cur, pool.Data(&pkts[i])...)
			if pkts[i].Flags&pmd.PktMore == 0 {
				got = append(got, cur)
				cur = nil
			}
		}
		pool.Put(frames(pkts[:n]))
	}
	if len(got) != want {
		t.Fatalf("received %d of %d packets (stats %+v)", len(got), want, p.Stats())
	}
	return got
}

// TestFrontendChains sends jumbo chains both ways between the Go front-end and the
// back-end, both with 2048-byte frames: the front-end posts a chain as one buffer of
// several descriptors, the back-end spreads a chain over mergeable receive buffers,
// and the front-end joins them again, also when a burst ends inside a packet.
func TestFrontendChains(t *testing.T) {
	for _, dis := range []uint64{0, FeatureRingPacked, FeatureInOrder} {
		t.Run(fmt.Sprintf("disable=%#x", dis), func(t *testing.T) {
			b, path := testBackend(t, nil)
			pool := sharedPool(t)
			f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, DisableFeatures: dis})
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			waitFor(t, "queues", b.ready)
			fp, bp := f.Port(0), b.Port(0)
			fc, bc := pool.NewCache(0), b.opts.Pool.NewCache(0)
			defer fc.Flush()
			defer bc.Flush()
			var want [][]byte
			for i, size := range []int{9000, 100, 5000, 9001, 1792, 1793, 64, 8000} {
				d := make([]byte, size)
				for j := range d {
					d[j] = byte(j*7 + i)
				}
				want = append(want, d)
			}
			var out []pmd.Pkt
			for _, d := range want {
				out = append(out, mkChain(t, pool, fc, d)...)
			}
			if n := fp.Tx(out); n != len(out) {
				t.Fatalf("front-end Tx took %d of %d", n, len(out))
			}
			for i, g := range rxPackets(t, bp, b.opts.Pool, len(want), 8) {
				if !bytes.Equal(g, want[i]) {
					t.Fatalf("g2h packet %d (%d bytes) differs", i, len(want[i]))
				}
			}
			out = out[:0]
			for _, d := range want {
				out = append(out, mkChain(t, b.opts.Pool, bc, d)...)
			}
			if n := bp.Tx(out); n != len(out) {
				t.Fatalf("back-end Tx took %d of %d", n, len(out))
			}
			for i, g := range rxPackets(t, fp, pool, len(want), 7) {
				if !bytes.Equal(g, want[i]) {
					t.Fatalf("h2g packet %d (%d bytes) differs", i, len(want[i]))
				}
			}
			if st := fp.Stats(); st.RxPackets != uint64(len(want)) || st.TxPackets != uint64(len(want)) {
				t.Fatalf("front-end counted %d in, %d out", st.RxPackets, st.TxPackets)
			}
		})
	}
}

// TestTestpmdJumbo: DPDK's virtio-user (testpmd, io forwarding) echoes 9000-byte
// frames the back-end sends as chains: testpmd receives each over mergeable buffers
// into chained mbufs and sends it back as a descriptor chain, which the back-end reads
// into a chain of frames again. Every frame returns whole, unchanged and in order.
func TestTestpmdJumbo(t *testing.T) {
	needTestpmd(t)
	for _, packed := range []int{0, 1} {
		t.Run(fmt.Sprintf("packed=%d", packed), func(t *testing.T) {
			b, path := testBackend(t, nil)
			vdev := fmt.Sprintf("net_virtio_user0,path=%s,queues=1,packed_vq=%d,mrg_rxbuf=1,in_order=0", path, packed)
			tp := startTestpmd(t, vdev, "--max-pkt-len=9600", "--enable-scatter", "--tx-offloads=0x8000")
			defer tp.Quit()
			waitFor(t, "queues to start", b.ready)
			tp.Run("set fwd io")
			tp.Run("start")
			pool, port := b.opts.Pool, b.Port(0)
			cache := pool.NewCache(0)
			defer cache.Flush()
			const k = 50
			var want [][]byte
			for i := 0; i < k; i++ {
				d := make([]byte, 9000-i*37)
				for j := range d {
					d[j] = byte(i + j*5)
				}
				copy(d[0:6], []byte{2, 0, 0, 0, 0, 1})
				want = append(want, d)
			}
			sent, back := 0, 0
			var in [64]pmd.Pkt
			var cur []byte
			deadline := time.Now().Add(15 * time.Second)
			for back < k && time.Now().Before(deadline) {
				if sent < k && sent-back < 8 {
					ch := mkChain(t, pool, cache, want[sent])
					if n := port.Tx(ch); n == len(ch) {
						sent++
					} else {
						cache.Free(ch[n:])
					}
				}
				n := port.Rx(in[:])
				for i := range in[:n] {
					cur = append(cur, pool.Data(&in[i])...)
					if in[i].Flags&pmd.PktMore == 0 {
						if back >= len(want) || !bytes.Equal(cur, want[back]) {
							t.Fatalf("echo %d: %d bytes, want %d; testpmd %+v", back, len(cur), len(want[min(back, k-1)]), tp.Stats(0))
						}
						back++
						cur = nil
					}
				}
				pool.Put(frames(in[:n]))
			}
			if back != k {
				t.Fatalf("%d of %d jumbo frames came back (sent %d); port %+v\n%s", back, k, sent, port.Stats(), tp.Output())
			}
			var bytesSent uint64
			for _, d := range want {
				bytesSent += uint64(len(d))
			}
			st := tp.Stats(0)
			if st.RxPkts != k || st.TxPkts != k || st.RxBytes != bytesSent || st.TxBytes != bytesSent {
				t.Fatalf("testpmd counted %+v; want %d packets, %d bytes each way", st, k, bytesSent)
			}
		})
	}
}

// fuzzRig is a back-end and a fake front-end with both queues of one pair running,
// and n 4 KiB buffers of guest memory, set up once per fuzz process.
type fuzzRig struct {
	b    *Backend
	ff   *fakeFront
	bufs []uint64 // guest addresses
	host [][]byte // the same buffers as the back-end maps them
}

func newFuzzRig(f *testing.F, feat uint64, n int) *fuzzRig {
	b, path := testBackend(f, nil)
	ff := newFakeFront(f, path)
	ff.negotiate(feat)
	ff.setupQueue(0, 256)
	ff.setupQueue(1, 256)
	r := &fuzzRig{b: b, ff: ff}
	for range n {
		g, h := ff.alloc(4096)
		r.bufs, r.host = append(r.bufs, g), append(r.host, h)
	}
	return r
}

// FuzzPortRxChains posts fuzzed descriptor chains on the guest's transmit queue (up
// to 16 chains of up to 4 segments of 0..4096 bytes, WRITE flags set at random, as a
// sloppy or hostile driver would) and reads them with a fuzzed burst size: Rx never
// panics, never returns a cut chain, and delivers exactly the packets that fit (each
// chain's bytes after the 12-byte header, in order, as one frame or a chain of
// frames); the others are dropped and every chain is completed.
func FuzzPortRxChains(f *testing.F) {
	var rigs [2]*fuzzRig
	for i, feat := range []uint64{FeatureVersion1 | FeatureMrgRxbuf, FeatureVersion1 | FeatureRingPacked | FeatureMrgRxbuf | FeatureIndirectDesc} {
		rigs[i] = newFuzzRig(f, feat, 64)
		for k, h := range rigs[i].host {
			for j := range h {
				h[j] = byte(k*31 + j)
			}
		}
	}
	f.Add([]byte{0, 0x20, 0x00, 0x10, 0x00, 1, 0x00, 0x40}, uint8(31), false)
	f.Add([]byte{3, 0x0f, 0xff, 0x8f, 0xff, 0x0f, 0xff, 0x01, 0x00, 0, 0, 5}, uint8(3), true)
	f.Fuzz(func(t *testing.T, spec []byte, burst uint8, packed bool) {
		r := rigs[0]
		if packed {
			r = rigs[1]
		}
		r.ff.t = t
		pool := r.b.opts.Pool
		room := pool.FrameSize() - pool.Headroom()
		bs := 1 + int(burst)%64
		var want [][]byte
		chains, nb := 0, 0
		for len(spec) > 0 && chains < 16 {
			nseg := 1 + int(spec[0]&3)
			spec = spec[1:]
			var segs []vring.Seg
			var data []byte
			for s := 0; s < nseg && len(spec) >= 2; s++ {
				n := int(spec[0]&0x7f)<<8 | int(spec[1])
				n %= 4097
				write := spec[0]&0x80 != 0
				spec = spec[2:]
				k := nb % len(r.bufs)
				nb++
				segs = append(segs, vring.Seg{Addr: r.bufs[k], Len: uint32(n), Write: write})
				data = append(data, r.host[k][:n]...)
			}
			if len(segs) == 0 {
				break
			}
			r.ff.add(1, segs)
			chains++
			if plen := len(data) - 12; plen > 0 && max(1, (plen+room-1)/room) <= bs { // the header alone is dropped
				want = append(want, data[12:])
			}
		}
		var got [][]byte
		pkts := make([]pmd.Pkt, bs)
		var cur []byte
		var used [64]vring.Used
		done := 0
		for round := 0; round < 200 && done < chains; round++ {
			n := r.b.Port(0).Rx(pkts)
			if n > 0 && pkts[n-1].Flags&pmd.PktMore != 0 {
				t.Fatal("Rx returned a cut chain")
			}
			for i := range pkts[:n] {
				cur = append(cur, pool.Data(&pkts[i])...)
				if pkts[i].Flags&pmd.PktMore == 0 {
					got = append(got, cur)
					cur = nil
				}
			}
			pool.Put(frames(pkts[:n]))
			done += r.ff.collect(1, used[:])
		}
		if done != chains {
			t.Fatalf("%d of %d chains completed", done, chains)
		}
		if len(got) != len(want) {
			t.Fatalf("%d packets delivered, want %d (burst %d)", len(got), len(want), bs)
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("packet %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
			}
		}
	})
}

// FuzzPortTxChains offers the guest's receive queue fuzzed buffers (lengths, and in
// the hostile mode random WRITE flags and chains of two) and transmits fuzzed packets
// as chains of frames: Tx never panics, never splits a packet, and with an honest
// driver every packet it takes lands in the guest whole, spread over as many
// mergeable buffers as num_buffers says, or is dropped as too long. Buffers Tx leaves
// stay posted for the next run, as in a real ring.
func FuzzPortTxChains(f *testing.F) {
	type rig struct {
		*fuzzRig
		free   []int          // buffer indices not posted
		posted map[uint64]int // first segment's address -> index
		lens   map[uint64]int // and its length
		second map[int]int    // a two-segment buffer's second index, by its first
	}
	var rigs [4]*rig
	for i := range rigs {
		feat := uint64(FeatureVersion1 | FeatureMrgRxbuf)
		if i&1 != 0 {
			feat |= FeatureRingPacked
		}
		r := &rig{fuzzRig: newFuzzRig(f, feat, 128), posted: map[uint64]int{}, lens: map[uint64]int{}, second: map[int]int{}}
		for k := range r.bufs {
			r.free = append(r.free, k)
		}
		rigs[i] = r
	}
	take := func(r *rig) int {
		k := r.free[len(r.free)-1]
		r.free = r.free[:len(r.free)-1]
		return k
	}
	f.Add([]byte{0x08, 0x00, 0x08, 0x00, 0x08, 0x00, 0x08, 0x00, 0x08, 0x00}, []byte{0x23, 0x28, 0x00, 0x40}, false, false)
	f.Add([]byte{0x00, 0x10, 0xc8, 0x00, 0x04, 0x00}, []byte{0x10, 0x00}, true, true)
	f.Fuzz(func(t *testing.T, bufSpec, pktSpec []byte, packed, hostile bool) {
		i := 0
		if packed {
			i |= 1
		}
		if hostile {
			i |= 2
		}
		r := rigs[i]
		r.ff.t = t
		pool, port := r.b.opts.Pool, r.b.Port(0)
		for k := 0; len(bufSpec) >= 2 && k < 32 && len(r.free) >= 2; k++ {
			n := 1 + (int(bufSpec[0]&0x0f)<<8|int(bufSpec[1]))%4096
			if !hostile {
				n = max(n, 12) // virtio 1.2 §5.1.6.3.1: each buffer holds the header
			}
			b := take(r)
			segs := []vring.Seg{{Addr: r.bufs[b], Len: uint32(n), Write: !hostile || bufSpec[0]&0x80 == 0}}
			if hostile && bufSpec[0]&0x40 != 0 {
				b2 := take(r)
				segs = append(segs, vring.Seg{Addr: r.bufs[b2], Len: uint32(n), Write: bufSpec[0]&0x20 != 0})
				r.second[b] = b2
			}
			bufSpec = bufSpec[2:]
			clear(r.host[b][:min(12, n)])
			r.posted[r.bufs[b]], r.lens[r.bufs[b]] = b, n
			r.ff.add(0, segs)
		}
		cache := pool.NewCache(0)
		defer cache.Flush()
		var out []pmd.Pkt
		var sent [][]byte
		for len(pktSpec) >= 2 && len(sent) < 8 {
			n := 1 + (int(pktSpec[0])<<8|int(pktSpec[1]))%12000
			pktSpec = pktSpec[2:]
			d := make([]byte, n)
			for j := range d {
				d[j] = byte(len(sent)*7 + j)
			}
			out = append(out, mkChain(t, pool, cache, d)...)
			sent = append(sent, d)
		}
		before := port.Stats()
		n := port.Tx(out)
		if n > 0 && out[n-1].Flags&pmd.PktMore != 0 {
			t.Fatal("Tx split a chain")
		}
		cache.Free(out[n:])
		taken := pmd.PacketCount(out[:n])
		var used [256]vring.Used
		u := r.ff.collect(0, used[:])
		var ids []int // buffer index of each used entry
		for _, e := range used[:u] {
			a, ok := r.ff.descAddr(0, e.ID)
			b, posted := r.posted[a]
			if !ok || !posted {
				t.Fatalf("used id %d names no posted buffer", e.ID)
			}
			ids = append(ids, b)
			delete(r.posted, a)
			r.free = append(r.free, b)
			if b2, ok := r.second[b]; ok {
				r.free = append(r.free, b2)
				delete(r.second, b)
			}
		}
		if hostile {
			return
		}
		after := port.Stats()
		delivered := int(after.TxPackets - before.TxPackets)
		tooLong := int(after.Drops[pmd.DropTooLong] - before.Drops[pmd.DropTooLong])
		if delivered+tooLong != taken {
			t.Fatalf("took %d packets: %d delivered, %d too long", taken, delivered, tooLong)
		}
		var got [][]byte
		for k := 0; k < u; {
			h := r.host[ids[k]]
			nb := int(h[10]) | int(h[11])<<8
			if nb < 1 || k+nb > u {
				t.Fatalf("used %d: num_buffers %d of %d used", k, nb, u)
			}
			var p []byte
			for j := 0; j < nb; j++ {
				b := ids[k+j]
				if l := int(used[k+j].Len); l > r.lens[r.bufs[b]] {
					t.Fatalf("used %d: length %d in a %d-byte buffer", k+j, l, r.lens[r.bufs[b]])
				}
				p = append(p, r.host[b][:used[k+j].Len]...)
			}
			if len(p) < 12 {
				t.Fatalf("used %d: a packet of %d bytes, no header", k, len(p))
			}
			got = append(got, p[12:])
			k += nb
		}
		if len(got) != delivered {
			t.Fatalf("guest holds %d packets, %d counted delivered", len(got), delivered)
		}
		j := 0
		for _, d := range sent {
			if j < len(got) && bytes.Equal(got[j], d) {
				j++
			}
		}
		if j != len(got) {
			t.Fatalf("guest packets are not the sent ones in order (%d of %d match)", j, len(got))
		}
	})
}
