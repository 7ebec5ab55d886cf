package vhost

import (
	"slices"
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
	"golang.org/x/sys/unix"
)

var inOrderCases = []struct {
	name string
	feat uint64
}{
	{"split", FeatureVersion1},
	{"split-inorder", FeatureVersion1 | FeatureInOrder},
	{"packed", FeatureVersion1 | FeatureRingPacked},
	{"packed-inorder", FeatureVersion1 | FeatureRingPacked | FeatureInOrder},
}

// restartQueue stops queue q with GET_VRING_BASE and starts it again with the
// base it returned and a new kick, as QEMU does around a stop; it returns that
// base.
func restartQueue(t *testing.T, f *fakeFront, q int) uint64 {
	t.Helper()
	base := f.get(ReqGetVringBase, stateB(uint32(q), 0)) >> 32
	kick, err := uds.Eventfd()
	if err != nil {
		t.Fatal(err)
	}
	f.evfds = append(f.evfds, kick)
	f.must(ReqSetVringBase, stateB(uint32(q), uint32(base)))
	f.must(ReqSetVringKick, u64b(uint64(q)), kick)
	return base
}

// TestRxInOrderMixedBatch: the guest transmits, in this order, a good packet, a
// chain shorter than the virtio-net header, a packet longer than a frame, two
// good packets, another chain shorter than the header and a last good packet. Rx
// is called with bursts of two frames (cutting the burst in the middle of the
// long packet's neighbours) and the queue is stopped and restarted half way.
// Every transmit buffer must come back to the guest exactly once, in the order
// it was made available (an in-order driver checks the ids), and the good
// packets reach the host in order.
func TestRxInOrderMixedBatch(t *testing.T) {
	for _, c := range inOrderCases {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 16)
			f.setupQueue(1, 16)
			waitFor(t, "queues", b.ready)
			port, pool := b.Port(0), b.opts.Pool
			room := pool.FrameSize() - pool.Headroom()
			var ids []uint16
			add := func(plen int, first byte) {
				g, h := f.alloc(max(plen+12, 1))
				clear(h)
				if plen > 0 {
					h[12] = first
				}
				f.add(1, []vring.Seg{{Addr: g, Len: uint32(plen + 12)}})
				ids = append(ids, uint16(len(ids)))
			}
			add(60, 1)
			add(-7, 0) // 5 bytes: shorter than the header
			add(room+100, 2)
			add(60, 3)
			add(60, 4)
			add(-1, 0) // 11 bytes
			add(60, 5)
			var got []byte
			var pkts [2]pmd.Pkt
			calls := 0
			for len(got) < 5 && calls < 50 {
				calls++
				if calls == 3 {
					restartQueue(t, f, 1)
				}
				n := port.Rx(pkts[:])
				for i := 0; i < n; {
					j := i
					for pkts[j].Flags&pmd.PktMore != 0 {
						j++
					}
					got = append(got, pool.Data(&pkts[i])[0])
					i = j + 1
				}
				pool.Put(frames(pkts[:n]))
			}
			if string(got) != "\x01\x02\x03\x04\x05" {
				t.Fatalf("host got packets %v, want 1..5 in order", got)
			}
			var used [16]vring.Used
			n := f.collect(1, used[:])
			if n != len(ids) {
				t.Fatalf("guest got %d of its %d transmit buffers back", n, len(ids))
			}
			for i := 0; i < n; i++ {
				if used[i].ID != ids[i] {
					t.Fatalf("used %d is id %d, want %d (all %v)", i, used[i].ID, ids[i], used[:n])
				}
			}
			st := port.Stats()
			if st.Drops[pmd.DropInvalid] != 2 {
				t.Fatalf("drops %v, want the 2 short chains counted invalid", st.Drops)
			}
		})
	}
}

// TestTxStashAcrossRestart: with MRG_RXBUF the guest posts three receive buffers
// of 1 KiB and the host sends a packet that needs five: Tx pops the three and
// keeps them (the packet stays the caller's). The queue is then stopped and
// restarted (GET_VRING_BASE, SET_VRING_BASE) and the guest posts three more. The
// packet must reach the guest in the first five buffers in the order they were
// posted, each used once, and the sixth must still serve the next packet.
func TestTxStashAcrossRestart(t *testing.T) {
	for _, c := range inOrderCases {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat|FeatureMrgRxbuf, 16)
			port, pool := b.Port(0), b.opts.Pool
			waitFor(t, "ring running", port.TxReady)
			cache := pool.NewCache(0)
			defer cache.Flush()
			bufs := map[uint64][]byte{}
			var addrs []uint64
			post := func(k int) {
				for i := 0; i < k; i++ {
					g, h := f.alloc(1024)
					bufs[g] = h
					// Two descriptors: the packed direct path takes one-descriptor
					// buffers without popping.
					f.add(0, []vring.Seg{{Addr: g, Len: 512, Write: true}, {Addr: g + 512, Len: 512, Write: true}})
					addrs = append(addrs, g)
				}
			}
			post(3)
			big := make([]byte, 4500)
			for i := range big {
				big[i] = byte(i * 7)
			}
			pkts := mkChain(t, pool, cache, big)
			if n := port.Tx(pkts); n != 0 {
				t.Fatalf("Tx took %d frames with 3 KiB of buffers for 4.5 KiB", n)
			}
			restartQueue(t, f, 0)
			post(3)
			waitFor(t, "tx", func() bool { return port.Tx(pkts) == len(pkts) })
			var used [16]vring.Used
			n := f.collect(0, used[:])
			if n != 5 {
				t.Fatalf("guest got %d used buffers, want 5", n)
			}
			var all []byte
			for i := 0; i < n; i++ {
				a, _ := f.descAddr(0, used[i].ID)
				if a != addrs[i] {
					t.Fatalf("used %d is the buffer posted %dth", i, slices.Index(addrs, a))
				}
				all = append(all, bufs[a][:used[i].Len]...)
			}
			if nb := int(all[10]) | int(all[11])<<8; nb != 5 || string(all[12:]) != string(big) {
				t.Fatalf("num_buffers %d, %d bytes", nb, len(all)-12)
			}
			var p [1]pmd.Pkt
			if cache.Alloc(p[:]) != 1 || !pool.Append(&p[0], 100) {
				t.Fatal("alloc")
			}
			if port.Tx(p[:]) != 1 {
				cache.Free(p[:])
				t.Fatal("the sixth buffer does not take a packet")
			}
			if n := f.collect(0, used[:]); n != 1 {
				t.Fatalf("guest got %d used buffers, want 1", n)
			}
			if a, _ := f.descAddr(0, used[0].ID); a != addrs[5] {
				t.Fatalf("the next packet went to the buffer posted %dth, want the sixth", slices.Index(addrs, a))
			}
		})
	}
}

// TestPackedInOrderRestartUsedBehind: a packed ring with IN_ORDER restarted with a
// SET_VRING_BASE whose used position lags its available one (buffers the previous
// back-end popped and never completed; QEMU's encoding carries both). An in-order
// driver takes a used descriptor as completing every buffer made available before
// it, and moves its used position past all of them; a device that goes on writing
// at the lagging used position writes where the driver no longer looks, and the
// driver's buffers never come back. Every buffer must come back, in order.
func TestPackedInOrderRestartUsedBehind(t *testing.T) {
	for _, q := range []int{0, 1} {
		t.Run([]string{"guest-rx", "guest-tx"}[q], func(t *testing.T) {
			const size = 8
			b, f := oneQueue(t, FeatureVersion1|FeatureRingPacked|FeatureInOrder, size)
			f.setupQueue(1, size)
			waitFor(t, "queues", b.ready)
			port, pool := b.Port(0), b.opts.Pool
			cache := pool.NewCache(0)
			defer cache.Flush()
			post := func() {
				g, h := f.alloc(12 + 60)
				clear(h)
				f.add(q, []vring.Seg{{Addr: g, Len: 12 + 60, Write: q == 0}})
			}
			serve := func() {
				if q == 1 {
					var pkts [size]pmd.Pkt
					n := port.Rx(pkts[:])
					pool.Put(frames(pkts[:n]))
					return
				}
				var p [1]pmd.Pkt
				for {
					if cache.Alloc(p[:]) != 1 || !pool.Append(&p[0], 60) {
						t.Fatal("alloc")
					}
					if port.Tx(p[:]) != 1 {
						cache.Free(p[:])
						return
					}
				}
			}
			// Two buffers the "previous back-end" took: stop the ring before it
			// serves them and restart it at available position 2, used position 0.
			post()
			post()
			f.get(ReqGetVringBase, stateB(uint32(q), 0))
			kick, err := uds.Eventfd()
			if err != nil {
				t.Fatal(err)
			}
			f.evfds = append(f.evfds, kick)
			f.must(ReqSetVringBase, stateB(uint32(q), 2|1<<15|(0|1<<15)<<16))
			f.must(ReqSetVringKick, u64b(uint64(q)), kick)
			var used [size]vring.Used
			got := 0
			for round := 0; round < 3; round++ {
				post()
				serve()
				got += f.collect(q, used[:])
			}
			if got != 5 {
				t.Fatalf("guest got %d of its 5 buffers back", got)
			}
		})
	}
}

// TestSplitAvailBeyondInFlight: with MRG_RXBUF the back-end holds three receive
// buffers popped for a packet that needs five. A hostile guest then moves avail.idx
// a whole queue size past the back-end's position: with the three still in flight
// that claims 19 buffers on a 16-entry ring, so ring entries (and heads) still in
// flight come round again. The ring is broken (the front-end hears of it on the
// error eventfd); no head is used twice and the packet stays the caller's.
func TestSplitAvailBeyondInFlight(t *testing.T) {
	const size = 16
	b, f := oneQueue(t, FeatureVersion1|FeatureMrgRxbuf, size)
	errFd := evfds(t, 1)[0]
	defer uds.Close(errFd)
	f.must(ReqSetVringErr, u64b(0), errFd)
	port, pool := b.Port(0), b.opts.Pool
	waitFor(t, "ring running", port.TxReady)
	cache := pool.NewCache(0)
	defer cache.Flush()
	for i := 0; i < 3; i++ {
		g, _ := f.alloc(1024)
		f.add(0, []vring.Seg{{Addr: g, Len: 1024, Write: true}})
	}
	pkts := mkChain(t, pool, cache, make([]byte, 4500))
	defer cache.Free(pkts)
	if n := port.Tx(pkts); n != 0 {
		t.Fatalf("Tx took %d frames with 3 KiB of buffers for 4.5 KiB", n)
	}
	// The guest's available ring: entries 3.. name head 0 (still in flight), and
	// avail.idx is 3+size.
	avail := f.host[f.availAt[0]-f.gpa:]
	le.PutUint16(avail[2:], 3+size)
	if n := port.Tx(pkts); n != 0 {
		t.Fatalf("Tx took %d frames", n)
	}
	var v [8]byte
	if n, err := unix.Read(errFd, v[:]); n != 8 || err != nil {
		t.Fatalf("error eventfd: %d bytes, %v; want the ring reported broken", n, err)
	}
	var used [2 * size]vring.Used
	if d, err := f.split[0].Collect(used[:]); d != 0 || err != nil {
		t.Fatalf("guest got %d used entries (%v)", d, err)
	}
}
