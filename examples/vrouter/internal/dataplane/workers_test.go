package dataplane

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
)

// mqNode is an in-process vRouter with several workers, a multi-queue uplink and a
// pod with podQueues queues; the test holds the pod's far ends.
type mqNode struct {
	eng *Engine
	pod []pmd.Port
	cfg *config.Config
}

// offline is a pod queue whose Tx is not ready (pmd.TxReady), as a vhost-user queue
// pair the guest did not enable; -1 for none.
func newMQNode(t testing.TB, pool *pmd.Pool, i int, encapType string, uplinks []pmd.Port, podQueues, workers, offline int) *mqNode {
	t.Helper()
	c, err := config.Parse([]byte(fmt.Sprintf(nodeYAML, i, 3-i, encapType)))
	if err != nil {
		t.Fatal(err)
	}
	n := &mqNode{cfg: c}
	var near []pmd.Port
	for q := 0; q < podQueues; q++ {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		t.Cleanup(func() { a.Close(); b.Close() })
		var p pmd.Port = a
		if q == offline {
			p = notReady{a}
		}
		near, n.pod = append(near, p), append(n.pod, b)
	}
	tapA, tapB, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	t.Cleanup(func() { tapA.Close(); tapB.Close() })
	ifaces := []*Iface{
		{Name: "ul", Kind: Uplink, Queues: uplinks},
		{Name: "pod", Kind: Pod, Queues: near, VRF: VRFID(0), MAC: [6]byte(c.Interfaces[0].HW),
			IP4: []uint32{IP4(c.Interfaces[0].Addrs[0])}, Gw4: []uint32{IP4(c.Interfaces[0].Gateways[0])}},
		{Name: "t", Kind: Exception, Queues: []pmd.Port{tapA}, VRF: VRFID(0), MAC: [6]byte{2, 0xee, 0, 0, 0, byte(i)}},
	}
	n.eng = New(Config{Pool: pool, Ifaces: ifaces, RouterMAC: routerMAC, Workers: workers,
		Decap: encap.DecapOptions{Local: []netip.Addr{c.Node.Addr}}})
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, byte(i)}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n.eng.Publish(tabs)
	return n
}

// runWorkers polls every worker of the engines on its own goroutine until the
// returned function is called, which waits for them to stop.
func runWorkers(engines ...*Engine) func() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, e := range engines {
		for _, w := range e.Workers() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if w.Poll() == 0 {
						runtime.Gosched()
					}
				}
			}()
		}
	}
	return func() { cancel(); wg.Wait() }
}

// TestWorkers forwards flows between pods on two nodes whose engines run several
// workers concurrently, over a two-queue uplink: every packet arrives once, each
// flow in order, whether it stayed on one worker or was handed to the worker that
// owns the output queue; chains cross handoffs whole; and after Close every frame is
// back in the pool. Run it with -race.
func TestWorkers(t *testing.T) {
	for _, tc := range []struct {
		name          string
		workers, podQ [2]int
		jumbo         bool
		offline       int // node 2's pod queue that is not ready
		// A worker that receives on interface from of node and owns no queue of
		// interface to: it must hand everything off.
		node, worker, from, to int
	}{
		// Node 2: uplink queues to workers 0 and 1, the pod's one queue to worker 0.
		{name: "2x2", workers: [2]int{2, 2}, podQ: [2]int{2, 1}, node: 1, worker: 1, from: 0, to: 1},
		// Node 1: uplink queues to workers 0 and 1, pod queues to workers 2 and 0.
		{name: "3x2", workers: [2]int{3, 2}, podQ: [2]int{2, 1}, node: 0, worker: 2, from: 1, to: 0},
		{name: "2x2-jumbo", workers: [2]int{2, 2}, podQ: [2]int{2, 1}, jumbo: true, node: 1, worker: 1, from: 0, to: 1},
		// Node 2's pod has two queues, but queue 1 (worker 1's) is not ready: worker
		// 1 hands to worker 0's queue 0, where the test receives.
		{name: "2x2-offline", workers: [2]int{2, 2}, podQ: [2]int{2, 2}, offline: 1, node: 1, worker: 1, from: 0, to: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const frames = 8192
			pool, err := pmd.NewPool(pmd.PoolOptions{Frames: frames, Huge: pmd.HugeNever})
			if err != nil {
				t.Fatal(err)
			}
			ul := uplinkRings(t, pool, 2)
			if tc.offline == 0 {
				tc.offline = -1
			}
			n1 := newMQNode(t, pool, 1, "vxlan", ul[0], tc.podQ[0], tc.workers[0], -1)
			n2 := newMQNode(t, pool, 2, "vxlan", ul[1], tc.podQ[1], tc.workers[1], tc.offline)
			c := pool.NewCache(64)
			stop := runWorkers(n1.eng, n2.eng)
			stopped := false
			defer func() {
				if !stopped {
					stop()
				}
			}()

			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			const total, flows = 3000, 8
			size := 64
			if tc.jumbo {
				size = 5000 // four 1500-byte segments
			}
			next := make([]uint32, flows) // next sequence number expected per flow
			recvd, sent := 0, 0
			deadline := time.Now().Add(20 * time.Second)
			for recvd < total {
				if time.Now().After(deadline) {
					t.Fatalf("received %d of %d; drops n1 %v n2 %v", recvd, total,
						n1.eng.ifaces[0].Stats().Drops, n2.eng.ifaces[1].Stats().Drops)
				}
				for sent < total && sent-recvd < 128 {
					flow := sent % flows
					f := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, strings.Repeat("p", size))
					binary.BigEndian.PutUint16(f[34:], uint16(2000+flow)) // source port: the flow
					binary.BigEndian.PutUint32(f[42:], uint32(sent/flows))
					// A flow always enters on the same pod queue, as an RSS NIC keeps it.
					q := n1.pod[flow%len(n1.pod)]
					if tc.jumbo {
						sendChain(t, pool, c, q, f, 1500)
					} else {
						send(t, pool, c, q, f)
					}
					sent++
				}
				got, _ := recvChains(pool, c, n2.pod[0])
				for _, f := range got {
					if len(f) != 14+20+8+size {
						t.Fatalf("frame of %d bytes", len(f))
					}
					flow := int(binary.BigEndian.Uint16(f[34:])) - 2000
					seq := binary.BigEndian.Uint32(f[42:])
					if flow < 0 || flow >= flows || seq != next[flow] {
						t.Fatalf("flow %d: got sequence %d, want %d (lost, duplicated or reordered)", flow, seq, next[flow])
					}
					next[flow]++
					recvd++
				}
				if len(got) == 0 {
					runtime.Gosched()
				}
			}
			stop()
			stopped = true

			pod2 := n2.eng.ifaces[1]
			if s := pod2.Stats(); s.TxPackets != total || s.Drops != ([NumReasons]uint64{}) {
				t.Fatalf("node 2 pod: sent %d, drops %v", s.TxPackets, s.Drops)
			}
			// What the worker received went out through a handoff ring.
			e := [2]*Engine{n1.eng, n2.eng}[tc.node]
			if got := e.ifaces[tc.from].stats[tc.worker].RxPackets.Load(); got == 0 {
				t.Fatalf("worker %d of node %d received nothing on %s", tc.worker, tc.node+1, e.ifaces[tc.from].Name)
			}
			if got := e.ifaces[tc.to].stats[tc.worker].TxPackets.Load(); got != 0 {
				t.Fatalf("worker %d transmitted %d on a queue it does not own", tc.worker, got)
			}
			if got := n1.eng.ifaces[0].Stats().TxPackets; got != total {
				t.Fatalf("node 1 uplink sent %d, want %d", got, total)
			}

			allFramesBack(t, pool, c, []*Engine{n1.eng, n2.eng})
		})
	}
}

// TestWorkerAssignment: queues are dealt round robin, uplink first, and workers
// without a queue of an interface hand off to an owner of one.
func TestWorkerAssignment(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var ul []pmd.Port
	for q := 0; q < 2; q++ {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		defer a.Close()
		defer b.Close()
		ul = append(ul, a)
	}
	n := newMQNode(t, pool, 1, "vxlan", ul, 1, 3, -1)
	var got []string
	for _, w := range n.eng.Workers() {
		got = append(got, strings.Join(w.Queues(), " "))
	}
	want := []string{"ul/0 t/0", "ul/1", "pod/0"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("assignment %q, want %q", got, want)
	}
	w2 := n.eng.Workers()[2]
	if tg := w2.out[0].targets; len(tg) != 2 || tg[0].port != nil || tg[0].ring == nil || w2.out[1].targets[0].port == nil {
		t.Fatal("worker 2 must own the pod and hand the uplink off")
	}
	// Worker 2 hands uplink packets to queue 2 mod 2 = 0, worker 0's, then 1.
	w0, w1 := n.eng.Workers()[0], n.eng.Workers()[1]
	// Workers 0 and 1 own an uplink queue that is always ready (no pmd.TxReadier):
	// they need no fallback ring to each other, so each drains only worker 2's.
	if ring := w2.out[0].targets[0].ring; len(w0.rx[0].handoff) != 1 || w0.rx[0].handoff[0] != ring {
		t.Fatal("worker 0 does not drain worker 2's uplink handoff")
	}
	if ring := w2.out[0].targets[1].ring; len(w1.rx[0].handoff) != 1 || w1.rx[0].handoff[0] != ring {
		t.Fatal("worker 1 does not drain worker 2's second uplink handoff")
	}
	if len(w0.out[0].targets) != 1 || len(w1.out[0].targets) != 1 {
		t.Fatal("a worker with an always-ready uplink queue got fallback rings")
	}
	// Also behind a capture wrapper, as the vRouter wraps every queue; a queue that
	// may be not ready keeps its fallback.
	cp := pmd.NewCaptureGroup(pool, ul[0], notReady{ul[1]})
	if mayBeNotReady(cp[0]) || !mayBeNotReady(cp[1]) {
		t.Fatal("mayBeNotReady does not look through a CapturePort")
	}
	// A packet left in a handoff ring goes back to the pool on Close.
	c := pool.NewCache(0)
	p1 := n.cfg.Interfaces[0]
	send(t, pool, c, n.pod[0], udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, "x"))
	w2.Poll()
	if w2.out[0].targets[0].ring.Len() != 1 {
		t.Fatalf("handoff ring holds %d packets, want 1", w2.out[0].targets[0].ring.Len())
	}
	allFramesBack(t, pool, c, []*Engine{n.eng})
}

// notReady is a queue that is offered but not running.
type notReady struct{ pmd.Port }

func (notReady) TxReady() bool { return false }

// chainCheck is a port that counts Tx calls ending inside a chain: a worker must
// never hand a port part of one.
type chainCheck struct {
	pmd.Port
	cut *int
}

func (c chainCheck) Tx(p []pmd.Pkt) int {
	if len(p) > 0 && p[len(p)-1].Flags&pmd.PktMore != 0 {
		*c.cut++
	}
	return c.Port.Tx(p)
}

func (c chainCheck) TxChains() bool { return true }

// TestHandoffWholeChains: a handoff ring holding more segments than the owner takes
// in one burst is transmitted in whole chains.
func TestHandoffWholeChains(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	cut := 0
	var ul, far []pmd.Port
	for q := 0; q < 2; q++ {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		defer a.Close()
		defer b.Close()
		ul, far = append(ul, chainCheck{a, &cut}), append(far, b)
	}
	// Three workers: the pod's queue is worker 2's, which hands the uplink to worker 0.
	n := newMQNode(t, pool, 1, "vxlan", ul, 1, 3, -1)
	c := pool.NewCache(0)
	p1 := n.cfg.Interfaces[0]
	frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, strings.Repeat("j", 4000)) // three segments
	const chains = 50                                                                                                     // 150 segments: more than one dequeue of 128, which ends inside a chain
	for i := 0; i < chains; i++ {
		sendChain(t, pool, c, n.pod[0], frame, 1500)
	}
	w0, w2 := n.eng.Workers()[0], n.eng.Workers()[2]
	for i := 0; i < 20; i++ {
		w2.Poll()
	}
	if got := w2.out[0].targets[0].ring.Len(); got != 3*chains {
		t.Fatalf("handoff ring holds %d segments, want %d", got, 3*chains)
	}
	w0.Poll()
	got, _ := recvChains(pool, c, far[0])
	for more, _ := recvChains(pool, c, far[0]); len(more) > 0; more, _ = recvChains(pool, c, far[0]) {
		got = append(got, more...)
	}
	if len(got) != chains || cut != 0 {
		t.Fatalf("uplink got %d of %d chains; %d transmits ended inside a chain", len(got), chains, cut)
	}
	// The handoff allocates nothing per packet.
	small := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, "zero")
	var pkts [32]pmd.Pkt
	moved := 0
	allocs := testing.AllocsPerRun(100, func() {
		c.Alloc(pkts[:])
		for i := range pkts {
			pkts[i].Flags = 0
			pool.Append(&pkts[i], len(small))
			copy(pool.Data(&pkts[i]), small)
		}
		c.Free(pkts[n.pod[0].Tx(pkts[:]):])
		w2.Poll()
		w0.Poll()
		k := far[0].Rx(pkts[:])
		moved += k
		c.Free(pkts[:k])
	})
	if allocs != 0 || moved != 101*32 {
		t.Fatalf("%v allocs per burst handed off; %d of %d packets moved", allocs, moved, 101*32)
	}
	n.eng.Close()
	c.Flush()
}

// slowTx is a queue whose Tx takes 200 µs and counts what it took.
type slowTx struct {
	pmd.Port
	took *atomic.Int64
}

func (s slowTx) Tx(p []pmd.Pkt) int {
	time.Sleep(200 * time.Microsecond)
	n := s.Port.Tx(p)
	s.took.Add(int64(n))
	return n
}

// TestHandoffBounded: a worker whose queue transmits more slowly than another worker
// hands packets to it takes at most a ring's worth per Poll, then returns to its own
// queues, instead of draining the ring for as long as the producer fills it.
func TestHandoffBounded(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 16384, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	var took atomic.Int64
	var ul, far []pmd.Port
	for q := 0; q < 2; q++ {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool, Size: 8192})
		t.Cleanup(func() { a.Close(); b.Close() })
		ul, far = append(ul, slowTx{a, &took}), append(far, b)
	}
	// Worker 2 owns the pod and hands the uplink to worker 0.
	n := newMQNode(t, pool, 1, "vxlan", ul, 1, 3, -1)
	w0, w2 := n.eng.Workers()[0], n.eng.Workers()[2]
	p1 := n.cfg.Interfaces[0]
	f := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], netip.MustParseAddr("10.1.2.2"), 64, "x")
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the pod floods, worker 2 hands over, the far end drains
		defer wg.Done()
		c := pool.NewCache(256)
		defer c.Flush()
		var pk [64]pmd.Pkt
		for !stop.Load() {
			k := c.Alloc(pk[:])
			for i := range pk[:k] {
				pk[i].Flags = 0
				pool.Append(&pk[i], len(f))
				copy(pool.Data(&pk[i]), f)
			}
			c.Free(pk[n.pod[0].Tx(pk[:k]):k])
			w2.Poll()
			for m := far[0].Rx(pk[:]); m > 0; m = far[0].Rx(pk[:]) {
				c.Free(pk[:m])
			}
		}
	}()
	// Let the handoff ring fill, however slowly a loaded machine runs the flood.
	ring := w2.out[0].targets[0].ring
	for deadline := time.Now().Add(5 * time.Second); ring.Len() < ring.Cap() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	before := took.Load()
	w0.Poll()
	moved := took.Load() - before
	stop.Store(true)
	wg.Wait()
	if moved > handoffSize+pmd.MaxBurst {
		t.Fatalf("one Poll transmitted %d handed-over packets, more than a ring's %d", moved, handoffSize)
	}
	if moved == 0 {
		t.Fatal("nothing handed over")
	}
	for i := 0; i < 4; i++ {
		w0.Poll()
	}
	n.eng.Close()
	for _, p := range far {
		var pk [64]pmd.Pkt
		c := pool.NewCache(0)
		for m := p.Rx(pk[:]); m > 0; m = p.Rx(pk[:]) {
			c.Free(pk[:m])
		}
		c.Flush()
	}
}

// uplinkRings joins two nodes' uplinks with q ring pairs, one per queue: ul[0] holds
// node 1's ends, ul[1] node 2's. They close when the test ends.
func uplinkRings(t *testing.T, pool *pmd.Pool, q int) [2][]pmd.Port {
	var ul [2][]pmd.Port
	for range q {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		ul[0], ul[1] = append(ul[0], a), append(ul[1], b)
		t.Cleanup(func() { a.Close(); b.Close() })
	}
	return ul
}
