package vhost

import (
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
	"golang.org/x/sys/unix"
)

// unmappedGPA is a guest address outside the fake front-end's memory: a buffer
// there is a hostile descriptor that breaks the ring.
const unmappedGPA = 0x10

// TestBrokenRingTxDelivers: the guest posts a good receive buffer, then a bad one.
// Tx pops both in one go and breaks the ring at the bad one, but the packet it
// copied into the good buffer is counted as sent, so the guest must get it: its
// used entry is published. The second packet stays the caller's.
func TestBrokenRingTxDelivers(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1},
		{"split-mrg", FeatureVersion1 | FeatureMrgRxbuf},
		// Two segments: the packed direct path (PeekDirect) takes one-descriptor
		// buffers without Pop.
		{"packed", FeatureVersion1 | FeatureRingPacked},
		{"packed-inorder", FeatureVersion1 | FeatureRingPacked | FeatureInOrder},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 256)
			port, pool := b.Port(0), b.opts.Pool
			g, h := f.alloc(2048)
			f.add(0, []vring.Seg{{Addr: g, Len: 1024, Write: true}, {Addr: g + 1024, Len: 1024, Write: true}})
			f.add(0, []vring.Seg{{Addr: unmappedGPA, Len: 2048, Write: true}})
			waitFor(t, "ring running", port.TxReady)

			cache := pool.NewCache(0)
			defer cache.Flush()
			var p [2]pmd.Pkt
			if cache.Alloc(p[:]) != 2 {
				t.Fatal("pool empty")
			}
			for i := range p {
				pool.Append(&p[i], 100)
				clear(pool.Data(&p[i]))
				pool.Data(&p[i])[0] = byte(0xa0 + i)
			}
			n := port.Tx(p[:])
			cache.Free(p[n:])
			if n != 1 {
				t.Fatalf("Tx took %d packets, want the one that fit the good buffer", n)
			}
			var used [4]vring.Used
			got := f.collect(0, used[:])
			if st := port.Stats(); got != 1 || st.TxPackets != 1 {
				t.Fatalf("guest received %d packets, %d counted as sent", got, st.TxPackets)
			}
			if used[0].Len != 12+100 || h[12] != 0xa0 {
				t.Fatalf("used len %d, first byte %#x", used[0].Len, h[12])
			}
			// The ring stays broken: nothing more goes to the guest.
			if n := port.Tx(p[1:]); n != 0 {
				t.Fatalf("Tx on the broken ring took %d", n)
			}
		})
	}
}

// TestBrokenRingRxCompletes: the guest transmits a good packet, then posts a bad
// buffer. Rx delivers the good packet and counts the bad one as a drop; the good
// buffer goes back to the guest (else the guest's transmit buffer leaks).
func TestBrokenRingRxCompletes(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1},
		{"split-inorder", FeatureVersion1 | FeatureInOrder},
		{"packed", FeatureVersion1 | FeatureRingPacked},
		{"packed-inorder", FeatureVersion1 | FeatureRingPacked | FeatureInOrder},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 256)
			f.setupQueue(1, 256)
			errFd := evfds(t, 1)[0]
			defer uds.Close(errFd)
			f.must(ReqSetVringErr, u64b(1), errFd)
			waitFor(t, "queues", b.ready)
			port, pool := b.Port(0), b.opts.Pool
			g, h := f.alloc(12 + 60)
			clear(h)
			h[12] = 0x5a
			f.add(1, []vring.Seg{{Addr: g, Len: 12 + 60}})
			f.add(1, []vring.Seg{{Addr: unmappedGPA, Len: 12 + 60}})
			var pkts [8]pmd.Pkt
			var n int
			waitFor(t, "rx", func() bool { n = port.Rx(pkts[:]); return n > 0 })
			if n != 1 || pkts[0].Len != 60 || pool.Data(&pkts[0])[0] != 0x5a {
				t.Fatalf("Rx returned %d packets", n)
			}
			pool.Put(frames(pkts[:n]))
			if st := port.Stats(); st.Drops[pmd.DropInvalid] != 1 {
				t.Fatalf("drops %v, want the bad buffer counted as invalid", st.Drops)
			}
			var used [4]vring.Used
			if got := f.collect(1, used[:]); got != 1 {
				t.Fatalf("guest got %d of its transmit buffers back, want 1", got)
			}
			// The front-end hears of it once on the error eventfd (SET_VRING_ERR),
			// however often the datapath comes back to the broken ring.
			port.Rx(pkts[:])
			var v [8]byte
			if n, err := unix.Read(errFd, v[:]); n != 8 || le.Uint64(v[:]) != 1 {
				t.Fatalf("error eventfd read %d bytes (%v), count %d; want one signal", n, err, le.Uint64(v[:]))
			}
		})
	}
}

// TestChainDescsCap: a guest transmit chain of maxChainDescs descriptors is a
// packet; one longer breaks the ring like any bad chain (DPDK's vhost stops at the
// same length) and is counted as an invalid drop, the good packet before it still
// delivered and its buffer given back.
func TestChainDescsCap(t *testing.T) {
	for _, c := range []struct {
		name string
		feat uint64
	}{
		{"split", FeatureVersion1},
		{"packed", FeatureVersion1 | FeatureRingPacked},
	} {
		t.Run(c.name, func(t *testing.T) {
			b, f := oneQueue(t, c.feat, 1024)
			f.setupQueue(1, 1024)
			port, pool := b.Port(0), b.opts.Pool
			// A packet of n descriptors: the header, then one byte each.
			chain := func(n int, first byte) {
				g, h := f.alloc(12 + n - 1)
				clear(h)
				h[12] = first
				segs := []vring.Seg{{Addr: g, Len: 12}}
				for i := 1; i < n; i++ {
					segs = append(segs, vring.Seg{Addr: g + 12 + uint64(i-1), Len: 1})
				}
				f.add(1, segs)
			}
			chain(maxChainDescs, 0x11)
			chain(maxChainDescs+1, 0x22)
			var pkts [8]pmd.Pkt
			var n int
			waitFor(t, "rx", func() bool { n = port.Rx(pkts[:]); return n > 0 })
			if n != 1 || int(pkts[0].Len) != maxChainDescs-1 || pool.Data(&pkts[0])[0] != 0x11 {
				t.Fatalf("Rx returned %d packets, first %d bytes", n, pkts[0].Len)
			}
			pool.Put(frames(pkts[:n]))
			if st := port.Stats(); st.Drops[pmd.DropInvalid] != 1 {
				t.Fatalf("drops %v, want the long chain counted as invalid", st.Drops)
			}
			var used [4]vring.Used
			if got := f.collect(1, used[:]); got != 1 {
				t.Fatalf("guest got %d of its transmit buffers back, want 1", got)
			}
			if n := port.Rx(pkts[:]); n != 0 {
				t.Fatalf("Rx on the broken ring returned %d", n)
			}
		})
	}
}
