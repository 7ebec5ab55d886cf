package vhost

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testpmd"
	"github.com/dpkit/dpkit/pmd"
)

// ready reports whether every queue of the attached device runs.
func (b *Backend) ready() bool {
	d := b.curDev.Load()
	if d == nil {
		return false
	}
	for _, q := range d.queues {
		if q.active.Load() == nil {
			return false
		}
	}
	return true
}

// TestTestpmdInterop runs DPDK virtio-user (testpmd) against the backend: testpmd sends
// a first burst per queue (guest → host), then echoes (io forwarding) every packet the
// backend transmits (host → guest → host). Packet and byte counts must match exactly
// on both sides, and every echoed packet must come back unchanged and in order.
func TestTestpmdInterop(t *testing.T) {
	needTestpmd(t)
	type tc struct {
		packed, mrg, inOrder int
		queues               int
		server               bool
	}
	var cases []tc
	for _, p := range []int{0, 1} {
		for _, m := range []int{0, 1} {
			for _, o := range []int{0, 1} {
				cases = append(cases, tc{p, m, o, 1, false})
			}
		}
	}
	cases = append(cases, tc{0, 1, 0, 2, false}, tc{1, 1, 0, 2, false}, tc{0, 1, 0, 1, true}, tc{1, 0, 1, 1, true})
	for _, c := range cases {
		name := fmt.Sprintf("packed=%d,mrg=%d,inorder=%d,queues=%d,server=%v", c.packed, c.mrg, c.inOrder, c.queues, c.server)
		t.Run(name, func(t *testing.T) {
			b, path := testBackend(t, func(o *Options) {
				o.QueuePairs = c.queues
				o.Client = c.server
				if c.server {
					o.Path = filepath.Join(shortTempDir(t), "pmd.sock")
					o.ReconnectMin = 20 * time.Millisecond
					o.ReconnectMax = 200 * time.Millisecond
				}
			})
			if c.server {
				path = b.opts.Path
			}
			vdev := fmt.Sprintf("net_virtio_user0,path=%s,queues=%d,packed_vq=%d,mrg_rxbuf=%d,in_order=%d,server=%d",
				path, c.queues, c.packed, c.mrg, c.inOrder, map[bool]int{false: 0, true: 1}[c.server])
			rounds := 1
			if c.server {
				rounds = 2 // testpmd restarts; the backend reconnects
			}
			for r := 0; r < rounds; r++ {
				tp := startTestpmd(t, vdev, fmt.Sprintf("--rxq=%d", c.queues), fmt.Sprintf("--txq=%d", c.queues))
				exchange(t, b, tp, c.queues)
				tp.Quit()
				waitFor(t, "backend to drop the device", func() bool { return !b.Attached() })
			}
		})
	}
}

func exchange(t *testing.T, b *Backend, tp *testpmd.Testpmd, queues int) {
	t.Helper()
	waitFor(t, "queues to start", b.ready)
	pool := b.opts.Pool
	before := make([]pmd.PortStats, queues)
	for i := range before {
		before[i] = b.Port(i).Stats()
	}
	tp.Run("set fwd io")
	tp.Run("start tx_first")

	// Guest → host: one burst per queue.
	var firstBytes uint64
	var firstPkts int
	var pkts [64]pmd.Pkt
	for qp := 0; qp < queues; qp++ {
		got := 0
		deadline := time.Now().Add(5 * time.Second)
		for time.Now().Before(deadline) {
			n := b.Port(qp).Rx(pkts[:])
			for i := range pkts[:n] {
				firstBytes += uint64(pkts[i].Len)
			}
			pool.Put(frames(pkts[:n]))
			got += n
			if got >= 32 && n == 0 {
				break
			}
		}
		if got == 0 {
			t.Fatalf("queue %d: no tx_first burst from testpmd", qp)
		}
		firstPkts += got
	}

	// Host → guest → host.
	const k = 200
	cache := pool.NewCache(0)
	defer cache.Flush()
	var sentBytes uint64
	for qp := 0; qp < queues; qp++ {
		var want [][]byte
		sent, back := 0, 0
		deadline := time.Now().Add(10 * time.Second)
		for back < k && time.Now().Before(deadline) {
			if sent < k {
				var p [8]pmd.Pkt
				m := cache.Alloc(p[:min(8, k-sent)])
				for i := range p[:m] {
					size := 60 + (sent+i)*7%1455 // 60..1514
					pool.Append(&p[i], size)
					d := pool.Data(&p[i])
					for j := range d {
						d[j] = byte(qp + sent + i + j)
					}
					copy(d[0:6], []byte{2, 0, 0, 0, 0, byte(qp)})
					want = append(want, append([]byte(nil), d...))
				}
				n := b.Port(qp).Tx(p[:m])
				cache.Free(p[n:m])
				want = want[:len(want)-(m-n)]
				for i := range p[:n] {
					sentBytes += uint64(len(want[sent+i]))
				}
				sent += n
			}
			n := b.Port(qp).Rx(pkts[:])
			for i := range pkts[:n] {
				if back >= len(want) || !bytes.Equal(pool.Data(&pkts[i]), want[back]) {
					t.Fatalf("queue %d: echoed packet %d differs (%d bytes)", qp, back, pkts[i].Len)
				}
				back++
			}
			cache.Free(pkts[:n])
		}
		if back != k {
			t.Fatalf("queue %d: %d of %d packets came back (sent %d)", qp, back, k, sent)
		}
	}
	tp.Run("stop")
	st := tp.Stats(0)
	wantRx := uint64(k * queues)
	if st.RxPkts != wantRx || st.RxBytes != sentBytes {
		t.Errorf("testpmd RX %d pkts %d bytes, want %d and %d", st.RxPkts, st.RxBytes, wantRx, sentBytes)
	}
	if st.TxPkts != wantRx+uint64(firstPkts) || st.TxBytes != sentBytes+firstBytes {
		t.Errorf("testpmd TX %d pkts %d bytes, want %d and %d", st.TxPkts, st.TxBytes, wantRx+uint64(firstPkts), sentBytes+firstBytes)
	}
	var ours pmd.PortStats
	for qp := 0; qp < queues; qp++ {
		s := b.Port(qp).Stats()
		ours.RxPackets += s.RxPackets - before[qp].RxPackets
		ours.TxPackets += s.TxPackets - before[qp].TxPackets
		ours.TxBytes += s.TxBytes - before[qp].TxBytes
		if s.TotalDrops() != before[qp].TotalDrops() {
			t.Errorf("queue %d: drops %v", qp, s.Drops)
		}
	}
	if ours.RxPackets != st.TxPkts || ours.TxPackets != st.RxPkts || ours.TxBytes != st.RxBytes {
		t.Errorf("backend counted rx %d tx %d/%dB, testpmd tx %d rx %d/%dB", ours.RxPackets, ours.TxPackets, ours.TxBytes, st.TxPkts, st.RxPkts, st.RxBytes)
	}
	t.Logf("testpmd rx %d pkts/%d B, tx %d pkts/%d B", st.RxPkts, st.RxBytes, st.TxPkts, st.TxBytes)
}
