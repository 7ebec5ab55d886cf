package pmd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	"github.com/dpkit/dpkit/vring"
)

// fakeRxQueue is the driver side of an RX ring whose device the test plays: buffers
// are taken in the order they were added, and Collect hands out the used entries the
// test queued, at most as many as asked for.
type fakeRxQueue struct {
	ids  []uint16 // buffers added, oldest first
	free []uint16
	used []vring.Used
}

func newFakeRxQueue(size int) *fakeRxQueue {
	q := &fakeRxQueue{}
	for i := size - 1; i >= 0; i-- {
		q.free = append(q.free, uint16(i))
	}
	return q
}

func (q *fakeRxQueue) Add([]vring.Seg) (uint16, error) { return 0, vring.ErrInvalid }
func (q *fakeRxQueue) AddBatch(bufs []vring.Seg, ids []uint16) (int, error) {
	n := min(len(bufs), len(q.free))
	for i := 0; i < n; i++ {
		id := q.free[len(q.free)-1]
		q.free = q.free[:len(q.free)-1]
		ids[i] = id
		q.ids = append(q.ids, id)
	}
	return n, nil
}
func (q *fakeRxQueue) Publish() bool { return false }
func (q *fakeRxQueue) Collect(dst []vring.Used) (int, error) {
	n := copy(dst, q.used)
	q.used = q.used[n:]
	for _, u := range dst[:n] {
		q.free = append(q.free, u.ID)
	}
	return n, nil
}
func (q *fakeRxQueue) EnableInterrupts() bool { return false }
func (q *fakeRxQueue) DisableInterrupts()     {}
func (q *fakeRxQueue) InFlight() int          { return len(q.ids) + len(q.used) }
func (q *fakeRxQueue) Free() int              { return len(q.free) }
func (q *fakeRxQueue) Err() error             { return nil }

// rxHarness is a VirtioNetQueue over a fake RX ring, and the device's side: deliver
// writes a packet into as many posted buffers as it takes, num_buffers in the first.
// The device offers mergeable buffers (VIRTIO_NET_F_MRG_RXBUF).
type rxHarness struct {
	t    testing.TB
	pool *Pool
	qp   *VirtioNetQueue
	fq   *fakeRxQueue
}

func newRxHarness(t testing.TB, size int) *rxHarness {
	pool, err := NewPool(PoolOptions{Frames: 4 * size, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	v := &VirtioNet{opts: VirtioNetOptions{Pool: pool, PortID: 7}, notify: make([]byte, 64), features: virtioNetFMrgRxbuf}
	fq := newFakeRxQueue(size)
	qp := &VirtioNetQueue{v: v, irqFd: -1, rxPend: make([]Pkt, 0, MaxBurst)}
	qp.rx = vnQueue{q: fq, size: size, frames: make([]Frame, size), live: make([]bool, size),
		used: make([]vring.Used, size), segs: make([]vring.Seg, size), ids: make([]uint16, size),
		fbuf: make([]Frame, size+MaxBurst), more: make([][]Frame, size)}
	v.qps = []*VirtioNetQueue{qp}
	qp.refill()
	return &rxHarness{t: t, pool: pool, qp: qp, fq: fq}
}

// room is what one RX buffer holds: the frame from the header's place on.
func (h *rxHarness) room() int { return h.pool.FrameSize() - h.pool.Headroom() + virtioNetHdrLen }

// deliver puts pkt (the frame without the virtio-net header) into the next buffers,
// announcing nb of them (nb ≤ 0: as many as it takes); it reports false when the
// ring has too few buffers posted.
func (h *rxHarness) deliver(pkt []byte, nb int) bool {
	room := h.room()
	data := append(make([]byte, virtioNetHdrLen), pkt...)
	need := max(1, (len(data)+room-1)/room)
	if nb <= 0 {
		nb = need
	}
	binary.LittleEndian.PutUint16(data[10:], uint16(nb))
	if len(h.fq.ids) < need {
		return false
	}
	for i := 0; i < need; i++ {
		id := h.fq.ids[0]
		h.fq.ids = h.fq.ids[1:]
		c := data[min(i*room, len(data)):min((i+1)*room, len(data))]
		f := h.qp.rx.frames[id]
		copy(h.pool.Bytes(f)[h.pool.Headroom()-virtioNetHdrLen:], c)
		h.fq.used = append(h.fq.used, vring.Used{ID: id, Len: uint32(len(c))})
	}
	return true
}

// receive calls Rx with bursts of burst Pkts until the device's used entries are all
// taken and Rx returns nothing (a call that only drops buffers returns 0 too), and
// returns the packets (chains joined), checking the chain flags on the way.
func (h *rxHarness) receive(burst int) [][]byte {
	var out [][]byte
	pkts := make([]Pkt, burst)
	for {
		n := h.qp.Rx(pkts)
		if n == 0 && len(h.fq.used) == 0 {
			return out
		}
		var cur []byte
		for i, p := range pkts[:n] {
			if p.Port != 7 {
				h.t.Fatalf("port %d", p.Port)
			}
			cur = append(cur, h.pool.Data(&pkts[i])...)
			if p.Flags&PktMore == 0 {
				out = append(out, cur)
				cur = nil
			}
			h.pool.Put([]Frame{p.Frame})
		}
		if cur != nil {
			h.t.Fatalf("Rx returned an unfinished chain")
		}
	}
}

func testPacket(seq, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*13 + seq)
	}
	return b
}

// TestVirtioNetRxChains: packets over several mergeable buffers come out whole, as
// chains, whatever the burst size and however the used entries are split over calls;
// ones longer than a burst are dropped and counted; no frame leaks.
func TestVirtioNetRxChains(t *testing.T) {
	for _, burst := range []int{32, 7, 3} {
		h := newRxHarness(t, 64)
		total := h.pool.Stats().Free + len(h.fq.ids)
		room := h.room() - virtioNetHdrLen
		sizes := []int{60, 3000, 9000, 1500, room, room + 1, 2 * room, 64000, 100}
		var want [][]byte
		tooLong := 0
		for i, n := range sizes {
			p := testPacket(i, n)
			if !h.deliver(p, 0) {
				t.Fatalf("ring short of buffers for %d bytes", n)
			}
			if segs := (n + virtioNetHdrLen + h.room() - 1) / h.room(); segs > burst {
				tooLong++
			} else {
				want = append(want, p)
			}
			// Deliver in pieces: the used entries of a packet reach Rx over calls.
			if i%2 == 0 {
				got := h.receive(burst)
				for _, g := range got {
					if len(want) == 0 || !bytes.Equal(g, want[0]) {
						t.Fatalf("burst %d: packet of %d bytes out of order or changed", burst, len(g))
					}
					want = want[1:]
				}
			}
		}
		for _, g := range h.receive(burst) {
			if len(want) == 0 || !bytes.Equal(g, want[0]) {
				t.Fatalf("burst %d: packet of %d bytes out of order or changed", burst, len(g))
			}
			want = want[1:]
		}
		if len(want) != 0 {
			t.Fatalf("burst %d: %d packets never came", burst, len(want))
		}
		st := h.qp.Stats()
		if st.Drops[DropTooLong] != uint64(tooLong) || st.RxPackets != uint64(len(sizes)-tooLong) {
			t.Errorf("burst %d: stats %+v, want %d too long", burst, st, tooLong)
		}
		if free := h.pool.Stats().Free + len(h.fq.ids); free != total {
			t.Errorf("burst %d: %d frames free or posted, want %d", burst, free, total)
		}
	}
}

// FuzzVirtioNetRx: whatever the device writes into the used ring and the buffers
// (lengths, num_buffers), Rx never panics, returns only finished chains of at most
// len(pkts), and no frame is lost.
func FuzzVirtioNetRx(f *testing.F) {
	f.Add([]byte{3, 0, 10, 2, 200, 1, 4, 5, 0, 0, 255, 9}, uint8(5))
	f.Add([]byte{1, 1, 1, 1, 2, 2, 2, 2}, uint8(32))
	f.Fuzz(func(t *testing.T, script []byte, burst uint8) {
		b := int(burst%40) + 1
		h := newRxHarness(t, 32)
		total := h.pool.Stats().Free + len(h.fq.ids)
		pkts := make([]Pkt, b)
		for len(script) >= 3 {
			op, x, y := script[0], int(script[1]), int(script[2])
			script = script[3:]
			switch op % 3 {
			case 0: // one used entry, any length and num_buffers
				if len(h.fq.ids) == 0 {
					continue
				}
				id := h.fq.ids[0]
				h.fq.ids = h.fq.ids[1:]
				hdr := h.pool.Bytes(h.qp.rx.frames[id])[h.pool.Headroom()-virtioNetHdrLen:]
				binary.LittleEndian.PutUint16(hdr[10:], uint16(x))
				h.fq.used = append(h.fq.used, vring.Used{ID: id, Len: uint32(y * 17)})
			case 1: // a well-formed packet
				h.deliver(testPacket(x, 14+y*40), 0)
			case 2: // receive
				n := h.qp.Rx(pkts)
				if n > len(pkts) {
					t.Fatalf("Rx returned %d of %d", n, len(pkts))
				}
				if n > 0 && pkts[n-1].Flags&PktMore != 0 {
					t.Fatal("unfinished chain returned")
				}
				for _, p := range pkts[:n] {
					if int(p.Off)+int(p.Len) > h.pool.FrameSize() {
						t.Fatalf("Pkt %+v outside its frame", p)
					}
					h.pool.Put([]Frame{p.Frame})
				}
			}
		}
		// Stop the device: what Rx still holds goes back with the ring's buffers.
		h.fq.used = nil
		h.qp.v.reclaimAll()
		if free := h.pool.Stats().Free; free != total {
			t.Fatalf("%d frames free after reclaim, want %d", free, total)
		}
	})
}

// fakeTxQueue is the driver side of a TX ring whose device the test plays: it keeps
// the buffers added (by id) and completes them when the test says.
type fakeTxQueue struct {
	free int
	next uint16
	bufs map[uint16][]vring.Seg
	done []vring.Used
}

func (q *fakeTxQueue) Add(segs []vring.Seg) (uint16, error) {
	if len(segs) > q.free {
		return 0, vring.ErrFull
	}
	q.free -= len(segs)
	id := q.next
	q.next++
	q.bufs[id] = append([]vring.Seg(nil), segs...)
	return id, nil
}
func (q *fakeTxQueue) AddBatch(bufs []vring.Seg, ids []uint16) (int, error) {
	n := 0
	for ; n < len(bufs); n++ {
		id, err := q.Add(bufs[n : n+1])
		if err != nil {
			break
		}
		ids[n] = id
	}
	return n, nil
}
func (q *fakeTxQueue) Publish() bool { return false }
func (q *fakeTxQueue) Collect(dst []vring.Used) (int, error) {
	n := copy(dst, q.done)
	q.done = q.done[n:]
	return n, nil
}
func (q *fakeTxQueue) EnableInterrupts() bool { return false }
func (q *fakeTxQueue) DisableInterrupts()     {}
func (q *fakeTxQueue) InFlight() int          { return len(q.bufs) }
func (q *fakeTxQueue) Free() int              { return q.free }
func (q *fakeTxQueue) Err() error             { return nil }

// complete hands every buffer added back as used.
func (q *fakeTxQueue) complete() {
	for id, segs := range q.bufs {
		q.done = append(q.done, vring.Used{ID: id})
		q.free += len(segs)
		delete(q.bufs, id)
	}
}

// TestVirtioNetTxChains: Tx sends a chain as one buffer of a descriptor per frame (the
// header before the first), leaves an unfinished chain and one the ring has no room
// for yet to the caller, drops chains that can never go, and frees every frame.
func TestVirtioNetTxChains(t *testing.T) {
	const size = 64
	pool, err := NewPool(PoolOptions{Frames: 2048, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	v := &VirtioNet{opts: VirtioNetOptions{Pool: pool}, notify: make([]byte, 64), poolIOVA: 1 << 40}
	fq := &fakeTxQueue{free: size, bufs: map[uint16][]vring.Seg{}}
	qp := &VirtioNetQueue{v: v, irqFd: -1}
	qp.tx = vnQueue{q: fq, size: size, frames: make([]Frame, size), live: make([]bool, size),
		used: make([]vring.Used, size), segs: make([]vring.Seg, size), ids: make([]uint16, size),
		fbuf: make([]Frame, size+MaxBurst), more: make([][]Frame, size)}
	v.qps = []*VirtioNetQueue{qp}
	hr := uint16(pool.Headroom())
	mk := func(lens ...int) []Pkt {
		var p []Pkt
		for _, n := range lens {
			f := make([]Frame, 1)
			if pool.Get(f) != 1 {
				t.Fatal("pool empty")
			}
			p = append(p, Pkt{Frame: f[0], Off: hr, Len: uint16(n), Flags: PktMore})
		}
		p[len(p)-1].Flags = 0
		return p
	}
	// A single, a 3-frame chain, a single.
	pkts := append(append(mk(100), mk(1000, 2000-int(hr), 5)...), mk(60)...)
	if n := qp.Tx(pkts); n != 5 {
		t.Fatalf("Tx took %d of 5", n)
	}
	if len(fq.bufs) != 3 {
		t.Fatalf("%d buffers added, want 3", len(fq.bufs))
	}
	chain := fq.bufs[1]
	if len(chain) != 3 || chain[0].Len != 1000+virtioNetHdrLen || chain[1].Len != uint32(2000-int(hr)) || chain[2].Len != 5 ||
		chain[0].Addr != v.poolIOVA+pool.Addr(pkts[1].Frame)+uint64(hr)-virtioNetHdrLen || chain[1].Addr != v.poolIOVA+pool.Addr(pkts[2].Frame)+uint64(hr) {
		t.Fatalf("chain sent as %+v", chain)
	}
	if st := qp.Stats(); st.TxPackets != 3 || st.TxBytes != 100+1000+uint64(2000-int(hr))+5+60 {
		t.Errorf("stats %+v", st)
	}
	// An unfinished chain stays the caller's; so does one the ring has no room for.
	unfinished := mk(10, 10)
	unfinished[1].Flags = PktMore
	if n := qp.Tx(unfinished); n != 0 {
		t.Fatalf("Tx took %d Pkts of an unfinished chain", n)
	}
	fq.free = 1
	if n := qp.Tx(unfinished[:1:1]); n != 0 { // still unfinished
		t.Fatalf("Tx took %d", n)
	}
	two := mk(10, 10)
	if n := qp.Tx(two); n != 0 {
		t.Fatalf("Tx took a 2-frame chain with 1 descriptor free (%d)", n)
	}
	fq.free = size - 5
	// Chains that can never go: longer than MaxBurst, a frame out of bounds, an
	// empty frame. Taken and dropped.
	long := mk(make([]int, MaxBurst+1)...)
	for i := range long {
		long[i].Len = 10
	}
	bad := mk(10, 10)
	bad[1].Off = uint16(pool.FrameSize() - 5)
	empty := mk(10, 0)
	for _, c := range [][]Pkt{long, bad, empty} {
		if n := qp.Tx(c); n != len(c) {
			t.Fatalf("Tx took %d of a %d-frame chain that cannot go", n, len(c))
		}
	}
	if st := qp.Stats(); st.Drops[DropTooLong] != 1 || st.Drops[DropInvalid] != 2 || st.TxPackets != 3 {
		t.Errorf("stats %+v", st)
	}
	// One-frame packets that cannot go (no headroom for the header, past the frame)
	// are dropped too, and do not hold up a good one behind them.
	singles := append(append(mk(10), mk(10)...), mk(60)...)
	singles[0].Off = 4
	singles[1].Off = uint16(pool.FrameSize() - 5)
	if n := qp.Tx(singles); n != 3 {
		t.Fatalf("Tx took %d of [no headroom, past the frame, good]", n)
	}
	if st := qp.Stats(); st.Drops[DropInvalid] != 4 || st.TxPackets != 4 {
		t.Errorf("stats %+v", st)
	}
	// The device completes everything: all frames sent come back.
	fq.complete()
	qp.Tx(nil)
	for _, p := range append(unfinished, two...) {
		pool.Put([]Frame{p.Frame})
	}
	if free := pool.Stats().Free; free != pool.Frames() {
		t.Errorf("%d of %d frames free", free, pool.Frames())
	}
	if fq.free != size || qp.tx.chains != 0 {
		t.Errorf("%d descriptors free, %d chains in flight", fq.free, qp.tx.chains)
	}
}

// TestVirtioNetTxEmptyPacket: an empty one-frame packet is dropped and counted
// whether or not the ring has room; before, it went out when there was room and was
// dropped when the ring was full. Found in review.
func TestVirtioNetTxEmptyPacket(t *testing.T) {
	pool, err := NewPool(PoolOptions{Frames: 64, FrameSize: 2048, Huge: HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	mkq := func(free int) (*VirtioNetQueue, *fakeTxQueue) {
		const size = 8
		v := &VirtioNet{opts: VirtioNetOptions{Pool: pool}, notify: make([]byte, 64), poolIOVA: 1 << 40}
		fq := &fakeTxQueue{free: free, bufs: map[uint16][]vring.Seg{}}
		qp := &VirtioNetQueue{v: v, irqFd: -1}
		qp.tx = vnQueue{q: fq, size: size, frames: make([]Frame, size), live: make([]bool, size),
			used: make([]vring.Used, size), segs: make([]vring.Seg, size), ids: make([]uint16, size),
			fbuf: make([]Frame, size+MaxBurst), more: make([][]Frame, size)}
		v.qps = []*VirtioNetQueue{qp}
		return qp, fq
	}
	get := func(n int) Pkt {
		f := make([]Frame, 1)
		if pool.Get(f) != 1 {
			t.Fatal("pool empty")
		}
		return Pkt{Frame: f[0], Off: uint16(pool.Headroom()), Len: uint16(n)}
	}
	for _, free := range []int{8, 1} {
		qp, fq := mkq(free)
		if n := qp.Tx([]Pkt{get(60), get(0)}); n != 2 || len(fq.bufs) != 1 {
			t.Errorf("free %d: Tx took %d of 2 and added %d buffers, want 2 and 1", free, n, len(fq.bufs))
		}
		if d := qp.Stats().Drops[DropInvalid]; d != 1 {
			t.Errorf("free %d: DropInvalid %d, want 1", free, d)
		}
		fq.complete()
		qp.reclaimTx()
	}
	if s := pool.Stats(); s.Free != s.Frames {
		t.Fatalf("%d of %d frames free", s.Free, s.Frames)
	}
}

// TestVirtioNetRxNoRoomKeepsPending: a poll with no room (a full Batch) leaves a
// packet whose first buffers wait for the rest alone; before, it was dropped as too
// long for the caller. Found in review.
func TestVirtioNetRxNoRoomKeepsPending(t *testing.T) {
	h := newRxHarness(t, 16)
	room := h.room() - virtioNetHdrLen
	if !h.deliver(testPacket(1, room+100), 0) { // two buffers
		t.Fatal("deliver")
	}
	second := h.fq.used[1]
	h.fq.used = h.fq.used[:1] // the device has written only the first buffer so far
	pkts := make([]Pkt, 32)
	if n := h.qp.Rx(pkts); n != 0 || len(h.qp.rxPend) != 1 {
		t.Fatalf("first call: %d pkts, %d pending", n, len(h.qp.rxPend))
	}
	var full Batch
	full.Grow(MaxBurst)
	full.Rx(h.qp) // Rx(pkts[:0])
	h.fq.used = append(h.fq.used, second)
	n := h.qp.Rx(pkts)
	for _, p := range pkts[:n] {
		h.pool.Put([]Frame{p.Frame})
	}
	if n != 2 {
		t.Fatalf("the 2-buffer packet was lost: Rx returned %d Pkts, drops %v", n, h.qp.Stats().Drops)
	}
}

// brokenTxQueue is a TX ring whose device broke a rule: Collect fails.
type brokenTxQueue struct{ fakeTxQueue }

func (q *brokenTxQueue) Collect([]vring.Used) (int, error) { return 0, vring.ErrUsedID }

// TestVirtioNetRxTxBreakRace: Rx and Tx of a queue pair run on two goroutines, and
// the TX side finds its ring broken while RX polls. The sticky error one side records
// is read by the other on every call; before, it was a plain interface field, a data
// race (reported under -race; a torn read of an interface value). Found in review.
func TestVirtioNetRxTxBreakRace(t *testing.T) {
	h := newRxHarness(t, 16)
	qp := h.qp
	const size = 16
	qp.tx = vnQueue{q: &brokenTxQueue{fakeTxQueue{free: size, bufs: map[uint16][]vring.Seg{}}}, size: size,
		frames: make([]Frame, size), live: make([]bool, size), used: make([]vring.Used, size),
		segs: make([]vring.Seg, size), ids: make([]uint16, size), fbuf: make([]Frame, size+MaxBurst),
		more: make([][]Frame, size)}
	// The RX poll loop, idle, and the TX side finding its ring broken meanwhile.
	// Polls are spaced so that the race detector's history keeps them.
	rxDone := make(chan struct{})
	go func() {
		defer close(rxDone)
		pkts := make([]Pkt, 8)
		for range 20 {
			qp.Rx(pkts)
			time.Sleep(500 * time.Microsecond)
		}
	}()
	time.Sleep(3 * time.Millisecond)
	if n := qp.Tx(nil); n != 0 {
		t.Fatalf("Tx took %d", n)
	}
	<-rxDone
	if err := qp.Err(); !errors.Is(err, ErrDeviceBroken) || !errors.Is(err, vring.ErrUsedID) {
		t.Fatalf("Err = %v", err)
	}
}

// TestVirtioNetRxNumBuffersWithoutMrgRxbuf: without VIRTIO_NET_F_MRG_RXBUF every used
// buffer is one whole packet (§5.1.6.3.1, §5.1.6.4), whatever the header's num_buffers
// says: a device may leave it as the buffer held it (Linux's vhost-net did until a 2025 fix),
// and the headroom of a recycled frame holds what the last user of the frame wrote
// there. Before, Rx read num_buffers regardless, so stale bytes joined unrelated
// packets into one chain. Found in review.
func TestVirtioNetRxNumBuffersWithoutMrgRxbuf(t *testing.T) {
	h := newRxHarness(t, 16)
	h.qp.v.features &^= virtioNetFMrgRxbuf
	var want [][]byte
	for i := range 6 {
		p := testPacket(i, 60+i)
		want = append(want, p)
		if !h.deliver(p, 3) { // num_buffers 3: stale bytes, not a device's count
			t.Fatal("deliver")
		}
	}
	got := h.receive(32)
	if len(got) != len(want) {
		t.Fatalf("received %d packets, want %d (drops %v)", len(got), len(want), h.qp.Stats().Drops)
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d: %d bytes, want %d", i, len(got[i]), len(want[i]))
		}
	}
}

// TestVirtioNetRxCsumFlagsNotNegotiated: the driver does not negotiate
// VIRTIO_NET_F_GUEST_CSUM, so a device must leave the header's flags zero
// (§5.1.6.3.2) and the driver must not believe NEEDS_CSUM or DATA_VALID: a device
// (or a stale header in a recycled frame's headroom) setting DATA_VALID would have a
// consumer such as encap's decapsulator skip checking the packet's checksum. Found in
// review: Rx turned the flags into PktCsumValid and PktCsumPartial regardless.
func TestVirtioNetRxCsumFlagsNotNegotiated(t *testing.T) {
	for _, nb := range []int{1, 2} { // the one-buffer path and rxMerge
		h := newRxHarness(t, 16)
		room := h.room() - virtioNetHdrLen
		for i, fl := range []byte{1, 2, 3} {
			n := 60 + i
			if nb == 2 {
				n = room + 10
			}
			id := h.fq.ids[0]
			if !h.deliver(testPacket(i, n), 0) {
				t.Fatal("deliver")
			}
			h.pool.Bytes(h.qp.rx.frames[id])[h.pool.Headroom()-virtioNetHdrLen] = fl
		}
		pkts := make([]Pkt, 32)
		n := h.qp.Rx(pkts)
		if n != 3*nb {
			t.Fatalf("%d buffers: Rx returned %d Pkts, want %d", nb, n, 3*nb)
		}
		for i, p := range pkts[:n] {
			if p.Flags&(PktCsumValid|PktCsumPartial) != 0 {
				t.Errorf("%d buffers: Pkt %d has flags %#x from a device without GUEST_CSUM", nb, i, p.Flags)
			}
			h.pool.Put([]Frame{p.Frame})
		}
	}
}

// TestVirtioNetRxNumBuffersPastRing: a device holds at most the ring's size of buffers
// at once, so a num_buffers larger than that is a lie, not a long packet. Before, Rx
// believed it and threw away the next num_buffers-1 buffers as the rest of a packet
// too long for the burst: one lying header (65535) silently swallowed every packet
// after it, counted as one DropTooLong. Now such a buffer alone is dropped as
// DropInvalid and the packets behind it come through. Found in review.
func TestVirtioNetRxNumBuffersPastRing(t *testing.T) {
	const size = 32
	h := newRxHarness(t, size)
	total := h.pool.Stats().Free + len(h.fq.ids)
	if !h.deliver(testPacket(0, 60), 0xffff) {
		t.Fatal("deliver")
	}
	var want [][]byte
	for i := 1; i <= 5; i++ {
		p := testPacket(i, 60+i)
		want = append(want, p)
		if !h.deliver(p, 0) {
			t.Fatal("deliver")
		}
	}
	got := h.receive(MaxBurst)
	if len(got) != len(want) {
		t.Fatalf("received %d packets after the lying header, want %d (stats %+v)", len(got), len(want), h.qp.Stats())
	}
	for i := range got {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("packet %d changed", i)
		}
	}
	if st := h.qp.Stats(); st.Drops[DropInvalid] != 1 || st.Drops[DropTooLong] != 0 {
		t.Errorf("drops %v, want one DropInvalid", st.Drops)
	}
	// A num_buffers the ring can hold but the burst cannot is still a long packet.
	if !h.deliver(testPacket(9, 60), size) {
		t.Fatal("deliver")
	}
	h.receive(8)
	if st := h.qp.Stats(); st.Drops[DropTooLong] != 1 {
		t.Errorf("drops %v, want one DropTooLong", st.Drops)
	}
	h.fq.used = nil
	h.qp.v.reclaimAll()
	if free := h.pool.Stats().Free; free != total {
		t.Errorf("%d frames free, want %d", free, total)
	}
}
