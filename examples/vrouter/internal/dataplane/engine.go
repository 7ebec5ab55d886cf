package dataplane

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/route"
)

// Kind is an interface's role.
type Kind uint8

const (
	// Uplink carries tunnelled traffic to and from other nodes.
	Uplink Kind = iota
	// Pod is a pod's port: its sources are checked, its gateway answered.
	Pod
	// Exception is the TAP to the host kernel.
	Exception
	// Host is the host kernel's side of a NIC uplink (the Contrail vRouter's vhost0):
	// the uplink's frames that are not tunnel traffic for this node go to it, and
	// what the host sends through it goes out of the uplink unchanged.
	Host
)

// Drop reasons the engine counts, per interface.
type Reason uint8

const (
	DropSpoofMAC    Reason = iota // a pod sent from a MAC not its own
	DropSpoofIP                   // a pod sent from an address not its own
	DropMalformed                 // a frame too short or inconsistent to forward, or a bad IPv4 header checksum
	DropTTLExpired                // TTL or hop limit would reach zero
	DropNoRoute                   // no route, and unknown destinations are dropped
	DropDiscard                   // a discard route matched
	DropEthertype                 // neither IPv4, IPv6 nor ARP
	DropUnknownID                 // a tunnel's VNI or label names no VRF
	DropDecap                     // the uplink frame failed decapsulation
	DropTxFull                    // the output port did not take the packet
	DropNoException               // host-bound, but no exception path is configured
	DropHairpin                   // a tunnel frame routed back into a tunnel
	DropARP                       // ARP/ND we do not answer (not for us, not a request)
	DropEncap                     // encapsulation failed (no headroom, too long)
	DropTooBig                    // larger than the output's MTU, or a chain for a port that takes none
	DropHandoffFull               // the ring to the worker owning the output queue was full
	NumReasons
)

var reasonNames = [NumReasons]string{"spoofed_mac", "spoofed_ip", "malformed", "ttl_expired", "no_route",
	"discard", "ethertype", "unknown_vni_or_label", "decap", "tx_full", "no_exception_path", "hairpin",
	"control_ignored", "encap_failed", "too_big", "handoff_full"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Iface is one interface of the engine: a pod, the uplink or the exception TAP, with
// one port per queue (pair).
type Iface struct {
	Name string
	Kind Kind
	// Queues are the interface's ports, one per queue (pair); at least one. Each is
	// polled and transmitted on by one worker only (New deals them out).
	Queues []pmd.Port
	VRF    uint32
	// MAC is the pod's own MAC (Pod) or the host end's (Exception).
	MAC [6]byte
	// The pod's addresses (source check) and, for the exception path, the host's.
	IP4 []uint32
	IP6 [][16]byte
	// Gateways the pod routes through: traffic to them goes to the host.
	Gw4 []uint32
	Gw6 [][16]byte

	stats  []Counters // one per worker
	chains bool       // every queue transmits multi-buffer chains (pmd.TxChains)
	idx    int        // the interface's index in the engine
}

// Counters are one worker's counts for an interface: written by that worker only,
// read by the metrics endpoint. Each worker's sit on their own cache lines.
type Counters struct {
	RxPackets, RxBytes, TxPackets, TxBytes pmd.Counter
	Drops                                  [NumReasons]pmd.Counter
	// ICMPSent counts the ICMP errors (too big, time exceeded) sent back out of the
	// interface.
	ICMPSent pmd.Counter
	// Fragmented counts the IPv4 packets received on the interface that were
	// fragmented to fit their tunnel.
	Fragmented pmd.Counter
	_          [64]byte
}

// Totals are an interface's counts summed over the workers.
type Totals struct {
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	Drops                                  [NumReasons]uint64
	ICMPSent, Fragmented                   uint64
}

// Stats returns the interface's counts, summed over the workers; any goroutine may
// call it.
func (in *Iface) Stats() Totals {
	var t Totals
	for i := range in.stats {
		c := &in.stats[i]
		t.RxPackets += c.RxPackets.Load()
		t.RxBytes += c.RxBytes.Load()
		t.TxPackets += c.TxPackets.Load()
		t.TxBytes += c.TxBytes.Load()
		t.ICMPSent += c.ICMPSent.Load()
		t.Fragmented += c.Fragmented.Load()
		for r := range c.Drops {
			t.Drops[r] += c.Drops[r].Load()
		}
	}
	return t
}

// Tables are what the control plane publishes to the engine as one unit.
type Tables struct {
	Routes *route.Table
	// Tunnels[id] is the encapsulation of tunnel next hop id.
	Tunnels []*encap.Tunnel
	// InnerMAC[id] is the inner destination MAC of VXLAN tunnel next hop id, when
	// it is not the router MAC (a remote's EVPN Router's MAC).
	InnerMAC map[route.NextHopID][6]byte
	// VRF of each VNI and MPLS label this node expects.
	VNIs   map[uint32]uint32
	Labels map[uint32]uint32
	// ARP/ND responders per VRF: the gateways and the VRF's pods; Worker.proxy
	// answers for the rest of what the VRF routes (proxy ARP, so pods on one
	// subnet reach each other through the vRouter, on one node or several).
	Responders map[uint32]*route.Responder
	// UnknownToHost sends unroutable packets to the exception path.
	UnknownToHost bool
}

// Engine forwards between its interfaces on one or more workers. It deals the
// interfaces' queues out to its workers, as DPDK applications deal NIC queues to
// lcores: each queue is polled by one worker, which also transmits on it. A worker
// sends to an interface on a queue it owns when it has one; otherwise it hands the
// packets over a single-producer ring to the worker that owns one of the interface's
// queues, which transmits them (the Contrail vRouter does the same for interfaces with
// fewer queues than forwarding cores). Publish may be called from any goroutine at
// any time: each worker's next burst sees the new tables.
type Engine struct {
	pool      *pmd.Pool
	ifaces    []*Iface
	workers   []*Worker
	uplink    int // index of the uplink
	exception int // index of the exception TAP, -1 if none
	host      int // index of the host's uplink TAP, -1 if none
	routerMAC [6]byte
	hostMAC   [6]byte // where exception-path frames go: the TAP's host MAC
	tables    atomic.Pointer[Tables]
}

// Worker is one forwarding goroutine's part of the engine: the queues it polls, its
// frame cache, its output batches and its decapsulator. Its Poll belongs to one
// goroutine at a time.
type Worker struct {
	e     *Engine
	pool  *pmd.Pool // e.pool
	id    int
	cache *pmd.Cache
	decap *encap.Decapper
	rx    []rxQueue
	out   []outQueue // per interface
	icmp  []icmpBucket

	polls uint32    // Poll calls, for the TAPs' slower polling
	busy  bool      // the last Poll received packets
	tapAt time.Time // when the TAPs were last read
	in    pmd.Batch
	one   [1]pmd.Frame
	res   encap.Result
	hdr   hdr
	// The packet being forwarded when it is a multi-buffer chain (a jumbo frame
	// through AF_XDP): seg holds all its segments, seg[0] being the packet the
	// functions below are given, and segBytes the length of seg[1:]. Headers live in
	// seg[0]; the rest is payload that follows the packet wherever it goes. Both are
	// zero for a packet in one frame.
	seg      []pmd.Pkt
	segBytes int
	frags    [maxFragments]pmd.Pkt // fragment4's
	// The ARP/ND request being answered, for proxy: its tables and interface. Set
	// only while an answer is built: kept, they would hold tables a reload replaced
	// (and every route of them) until the worker's next ARP/ND request.
	askT    *Tables
	askIn   *Iface
	proxyFn route.Proxy // proxy, made once: a method value made per call allocates
}

// rxQueue is a queue a worker owns: it polls it, and transmits on it what it and the
// other workers (through handoff) send there.
type rxQueue struct {
	iface   *Iface
	queue   int
	port    pmd.Port
	handoff []*pmd.Ring[pmd.Pkt] // one from each worker that sends here without a queue of its own
}

// outQueue is where a worker's packets for one interface go: a batch, sent to the
// first ready target (pmd.TxReady), or to the first target when none is.
type outQueue struct {
	b       pmd.Batch
	targets []txTarget
}

// txTarget is a queue of an interface as one worker reaches it: directly (a queue the
// worker owns, port) or through a handoff ring to the queue's owner (ring).
type txTarget struct {
	queue pmd.Port
	port  pmd.Port
	ring  *pmd.Ring[pmd.Pkt]
}

// handoffSize is the capacity of each handoff ring: four full bursts.
const handoffSize = 4 * pmd.MaxBurst

// Config builds an Engine.
type Config struct {
	Pool      *pmd.Pool
	Ifaces    []*Iface
	RouterMAC [6]byte
	// Decap configures each worker's decapsulator.
	Decap encap.DecapOptions
	// Workers is how many forwarding workers share the queues; 0 means 1.
	Workers int
}

// New returns an engine over cfg's interfaces; exactly one must be the Uplink, and
// each must have a queue (New panics otherwise: a program error). The data queues are
// dealt to the workers round robin in the order of the interfaces (the uplink's first
// queue to worker 0, its second to worker 1, and so on, the pods' after them), so
// that the uplink's queues spread over the workers; then each TAP's queue goes to the
// worker with the fewest. Each port gets the cache of the worker that polls it (pmd.ShareCache): a
// frame one port transmits is the next another receives into.
func New(cfg Config) *Engine {
	nw := max(cfg.Workers, 1)
	e := &Engine{pool: cfg.Pool, ifaces: cfg.Ifaces, uplink: -1, exception: -1, host: -1, routerMAC: cfg.RouterMAC}
	for i := 0; i < nw; i++ {
		e.workers = append(e.workers, &Worker{e: e, pool: cfg.Pool, id: i, cache: cfg.Pool.NewCache(512),
			decap: encap.NewDecapper(cfg.Decap), out: make([]outQueue, len(cfg.Ifaces)),
			icmp: make([]icmpBucket, len(cfg.Ifaces))})
		w := e.workers[i]
		w.proxyFn = w.proxy
	}
	owner := make([][]int, len(cfg.Ifaces)) // owner[i][q]: the worker of queue q
	load := make([]int, nw)
	deal := func(i, q int, w *Worker) {
		in, p := cfg.Ifaces[i], cfg.Ifaces[i].Queues[q]
		// A port of another pool (ErrForeignCache) keeps its own caches.
		_ = pmd.ShareCache(w.cache, p)
		in.chains = in.chains && pmd.TxChains(p)
		w.rx = append(w.rx, rxQueue{iface: in, queue: q, port: p})
		owner[i][q] = w.id
		load[w.id]++
	}
	next := 0
	for i, in := range cfg.Ifaces {
		if len(in.Queues) == 0 {
			panic("dataplane: interface " + in.Name + " has no queue")
		}
		in.idx = i
		in.stats = make([]Counters, nw)
		in.chains = true
		owner[i] = make([]int, len(in.Queues))
		switch in.Kind {
		case Uplink:
			e.uplink = i
		case Exception:
			e.exception = i
			e.hostMAC = in.MAC
		case Host:
			e.host = i
		}
		if in.Kind != Exception && in.Kind != Host {
			for q := range in.Queues {
				deal(i, q, e.workers[next%nw])
				next++
			}
		}
	}
	// The TAPs carry little and are polled less often: each goes to the worker
	// with the fewest queues, after the data queues.
	for i, in := range cfg.Ifaces {
		if in.Kind == Exception || in.Kind == Host {
			for q := range in.Queues {
				deal(i, q, e.workers[slices.Index(load, slices.Min(load))])
			}
		}
	}
	// Each worker sends to an interface on its own queues of it first; then, when it
	// has none or they may be not ready (pmd.TxReadier), through a handoff ring to the
	// owner of another, starting at queue (worker id mod queues) so that workers
	// spread over them.
	for i, in := range cfg.Ifaces {
		nq := len(in.Queues)
		for _, w := range e.workers {
			o := &w.out[i]
			alwaysReady := false // an own queue that is never not ready: no fallback needed
			for q, p := range in.Queues {
				if owner[i][q] == w.id {
					o.targets = append(o.targets, txTarget{queue: p, port: p})
					if !mayBeNotReady(p) {
						alwaysReady = true
					}
				}
			}
			for k := 0; k < nq && !alwaysReady; k++ {
				q := (w.id + k) % nq
				if owner[i][q] == w.id {
					continue
				}
				r, _ := pmd.NewRing[pmd.Pkt](handoffSize, pmd.RingSPSC)
				o.targets = append(o.targets, txTarget{queue: in.Queues[q], ring: r})
				ow := e.workers[owner[i][q]]
				for j := range ow.rx {
					if ow.rx[j].iface == in && ow.rx[j].queue == q {
						ow.rx[j].handoff = append(ow.rx[j].handoff, r)
					}
				}
			}
		}
	}
	return e
}

// mayBeNotReady reports whether p's readiness can change (pmd.TxReadier), looking
// through a capture wrapper, which forwards TxReady whatever it wraps.
func mayBeNotReady(p pmd.Port) bool {
	if c, ok := p.(*pmd.CapturePort); ok {
		p = c.Port
	}
	_, ok := p.(pmd.TxReadier)
	return ok
}

// Publish installs new tables.
func (e *Engine) Publish(t *Tables) { e.tables.Store(t) }

// Ifaces returns the engine's interfaces.
func (e *Engine) Ifaces() []*Iface { return e.ifaces }

// Workers returns the engine's workers; run each one's Poll on its own goroutine.
func (e *Engine) Workers() []*Worker { return e.workers }

// Poll runs every worker's Poll in turn on the calling goroutine (for a single
// forwarding goroutine, and tests) and returns how many packets they received.
func (e *Engine) Poll() int {
	n := 0
	for _, w := range e.workers {
		n += w.Poll()
	}
	return n
}

// Close returns the engine's frames to the pool: what waits in batches and handoff
// rings, and the workers' caches. Call it after the last Poll of every worker.
func (e *Engine) Close() {
	for _, w := range e.workers {
		for i := range w.out {
			o := &w.out[i]
			w.cache.Free(o.b.Pkts())
			o.b.Reset()
			for _, t := range o.targets {
				for r := t.ring; r != nil && r.Len() > 0; o.b.Reset() {
					o.b.Grow(r.Dequeue(o.b.Room()))
					w.cache.Free(o.b.Pkts())
				}
			}
		}
		w.cache.Flush()
	}
}

// Queues names the queues the worker polls, as interface/queue.
func (w *Worker) Queues() []string {
	var s []string
	for _, q := range w.rx {
		s = append(s, q.iface.Name+"/"+strconv.Itoa(q.queue))
	}
	return s
}

// exceptionEvery is how often a worker looks at the exception TAP and the host's
// uplink TAP: every that many polls, and at least every tapIdleEvery. A TAP has no
// shared ring to peek at, so each look is a read system call that mostly finds
// nothing: reading it on every idle poll cost the vhost pods a fifth of their TCP
// throughput in the demo. Under load a host-bound packet waits a few microseconds;
// an idle worker, whose polls sleep, looks every 250 µs.
const (
	exceptionEvery = 16
	tapIdleEvery   = 250 * time.Microsecond
)

// Poll receives a burst from every queue the worker owns, forwards it, transmits
// what is queued and what other workers handed over. It returns how many packets it
// received.
func (w *Worker) Poll() int {
	t := w.e.tables.Load()
	total := 0
	w.polls++
	// The TAPs: every exceptionEvery polls, and at least every tapIdleEvery while the
	// worker idles (its polls are slow then, and most find nothing).
	tap := w.polls%exceptionEvery == 1
	if !tap && !w.busy {
		tap = time.Since(w.tapAt) >= tapIdleEvery
	}
	if tap {
		w.tapAt = time.Now()
	}
	for qi := range w.rx {
		q := &w.rx[qi]
		in := q.iface
		if (in.Kind == Exception || in.Kind == Host) && !tap {
			continue
		}
		w.in.Reset()
		n := w.in.Rx(q.port)
		if n == 0 {
			continue
		}
		pkts := w.in.Pkts()
		st := &in.stats[w.id]
		st.RxBytes.Add(uint64(pmd.Bytes(pkts)))
		np := 0 // packets, a chain counting once
		for j := 0; j < len(pkts); j++ {
			pk := &pkts[j]
			np++
			if pk.Flags&pmd.PktMore != 0 {
				// A chain: a port returns whole ones, but a malformed end is dropped.
				k := j
				for k < len(pkts)-1 && pkts[k].Flags&pmd.PktMore != 0 {
					k++
				}
				w.seg, w.segBytes = pkts[j:k+1], pmd.Bytes(pkts[j+1:k+1])
				if pkts[k].Flags&pmd.PktMore != 0 {
					w.drop(in, pk, DropMalformed)
					w.seg, w.segBytes = nil, 0
					break
				}
				j = k
			}
			switch {
			case in.Kind == Host:
				w.queue(in, w.e.uplink, pk) // the host's own traffic, as it is
			case t == nil:
				w.drop(in, pk, DropNoRoute)
			case in.Kind == Uplink:
				w.fromUplink(t, in, pk)
			default:
				w.fromLocal(t, in, pk)
			}
			w.seg, w.segBytes = nil, 0
		}
		total += np
		st.RxPackets.Add(uint64(np))
	}
	w.flush()
	w.takeHandoffs()
	w.busy = total > 0
	return total
}

// drop frees pk's frame (and the rest of its chain) and counts why on in.
func (w *Worker) drop(in *Iface, pk *pmd.Pkt, why Reason) {
	in.stats[w.id].Drops[why].Add(1)
	if w.seg != nil {
		w.cache.Free(w.seg)
		return
	}
	w.one[0] = pk.Frame
	w.cache.Put(w.one[:])
}

// queue puts pk (and the rest of its chain) on output interface o, flushing it first
// when its batch is full. A chain for a port that cannot send one is dropped and
// counted on in.
func (w *Worker) queue(in *Iface, o int, pk *pmd.Pkt) {
	out := &w.out[o]
	if w.seg != nil {
		if !w.e.ifaces[o].chains {
			w.drop(in, pk, DropTooBig)
			return
		}
		if out.b.Len()+len(w.seg) > pmd.MaxBurst {
			w.flushOne(o)
		}
		out.b.Push(*pk)
		for _, s := range w.seg[1:] {
			out.b.Push(s)
		}
		return
	}
	if out.b.Len() == pmd.MaxBurst {
		w.flushOne(o)
	}
	out.b.Push(*pk)
}

func (w *Worker) flush() {
	for i := range w.out {
		if w.out[i].b.Len() > 0 {
			w.flushOne(i)
		}
	}
}

// flushOne sends interface o's batch on the worker's queue of it, or hands it to the
// owner of another queue: the first of its targets that is ready.
func (w *Worker) flushOne(o int) {
	out := &w.out[o]
	t := &out.targets[0]
	for i := range out.targets {
		if pmd.TxReady(out.targets[i].queue) {
			t = &out.targets[i]
			break
		}
	}
	if t.port != nil {
		w.transmit(w.e.ifaces[o], t.port, &out.b)
		return
	}
	// Whole chains only: the owner must never see part of one.
	pkts := out.b.Pkts()
	if !t.ring.EnqueueBulk(pkts) {
		i := 0
		for i < len(pkts) {
			j := i
			for j < len(pkts)-1 && pkts[j].Flags&pmd.PktMore != 0 {
				j++
			}
			if !t.ring.EnqueueBulk(pkts[i : j+1]) {
				break
			}
			i = j + 1
		}
		if left := pkts[i:]; len(left) > 0 {
			w.e.ifaces[o].stats[w.id].Drops[DropHandoffFull].Add(uint64(pmd.PacketCount(left)))
			w.cache.Free(left)
		}
	}
	out.b.Reset()
}

// transmit sends b on port, a queue of o that the worker owns, and empties b.
func (w *Worker) transmit(o *Iface, port pmd.Port, b *pmd.Batch) {
	bytes := pmd.Bytes(b.Pkts())
	sent := pmd.PacketCount(b.Pkts())
	b.Tx(port)
	// A full TX ring drains as the port kicks and reaps completions: try again a few
	// times before dropping what is left.
	for try := 0; try < 4 && b.Len() > 0; try++ {
		b.Tx(port)
	}
	st := &o.stats[w.id]
	if b.Len() > 0 {
		left := pmd.PacketCount(b.Pkts())
		sent -= left
		bytes -= pmd.Bytes(b.Pkts())
		st.Drops[DropTxFull].Add(uint64(left))
		w.cache.Free(b.Pkts())
		b.Reset()
	}
	st.TxPackets.Add(uint64(sent))
	st.TxBytes.Add(uint64(bytes))
}

// takeHandoffs transmits what other workers handed over for the worker's queues, up
// to a ring's capacity from each ring per call.
func (w *Worker) takeHandoffs() {
	b := &w.in
	for qi := range w.rx {
		q := &w.rx[qi]
		for _, r := range q.handoff {
			// At most a ring's worth per poll: a producer faster than this
			// queue's Tx must not keep the worker from its own queues.
			for left := handoffSize; left > 0 && r.Len() > 0; {
				b.Reset()
				// Leave room to complete a chain cut by the burst's end: producers
				// enqueue whole chains, so its rest is there.
				b.Grow(r.Dequeue(b.Room()[:pmd.MaxBurst/2]))
				for b.Len() < pmd.MaxBurst && b.Pkts()[b.Len()-1].Flags&pmd.PktMore != 0 {
					b.Grow(r.Dequeue(b.Room()[:1]))
				}
				left -= b.Len()
				w.transmit(q.iface, q.port, b)
			}
		}
	}
}

// fromLocal handles a frame from a pod or from the host's TAP.
func (w *Worker) fromLocal(t *Tables, in *Iface, pk *pmd.Pkt) {
	d := w.pool.Data(pk)
	if len(d) < 14 {
		w.drop(in, pk, DropMalformed)
		return
	}
	if in.Kind == Pod && [6]byte(d[6:12]) != in.MAC {
		w.drop(in, pk, DropSpoofMAC)
		return
	}
	h := &w.hdr
	if !parse(d, len(d)+w.segBytes, h) {
		w.drop(in, pk, unparsed(d))
		return
	}
	if h.ethertype != etherARP {
		w.trim(pk, h.end)
	}
	switch h.ethertype {
	case etherARP:
		w.answerARP(t, in, pk, d)
		return
	case etherIPv4:
		if h.dst4>>28 == 0xe || h.dst4 == 0xffffffff {
			w.drop(in, pk, DropARP) // multicast and broadcast control traffic (IGMP, DHCP)
			return
		}
		if in.Kind == Pod && !has4(in.IP4, h.src4) {
			w.drop(in, pk, DropSpoofIP)
			return
		}
		if in.Kind == Pod && has4(in.Gw4, h.dst4) {
			w.toHost(in, in.VRF, pk, d)
			return
		}
		if martian4(h.src4, h.dst4) {
			w.drop(in, pk, DropNoRoute)
			return
		}
		if !decTTL4(d[14:]) {
			w.ttlExpired(in, pk, d[14:])
			return
		}
		w.forward(t, in, in.VRF, pk, t.Routes.Lookup4(in.VRF, h.dst4), false)
	case etherIPv6:
		if h.proto == 58 && h.l4 < len(d) && d[h.l4] == 135 { // neighbour solicitation
			if dadOwn(in, &h.src6, d[h.l4:]) {
				w.drop(in, pk, DropARP)
				return
			}
			w.answerNS(t, in, pk)
			return
		}
		if h.dst6[0] == 0xff {
			w.drop(in, pk, DropARP) // multicast control traffic (MLD, router solicitations)
			return
		}
		if in.Kind == Pod && !has6(in.IP6, &h.src6) {
			w.drop(in, pk, DropSpoofIP)
			return
		}
		if in.Kind == Pod && has6(in.Gw6, &h.dst6) {
			w.toHost(in, in.VRF, pk, d)
			return
		}
		if martian6(&h.src6, &h.dst6) {
			w.drop(in, pk, DropNoRoute)
			return
		}
		if !decHopLimit6(d[14:]) {
			w.ttlExpired(in, pk, d[14:])
			return
		}
		w.forward(t, in, in.VRF, pk, t.Routes.Lookup6(in.VRF, &h.dst6), false)
	}
}

// toHost sends a frame of VRF vrf that is for the host (addressed to a pod's
// gateway, or routed to the exception path) to the host's TAP. The TAP belongs to
// one VRF, the one what the host sends through it is routed in: a frame of another
// VRF has no exception path, as the host's answer would reach that VRF's pod with
// the address, another tenant's.
func (w *Worker) toHost(in *Iface, vrf uint32, pk *pmd.Pkt, d []byte) {
	if !w.e.hostServes(vrf) {
		w.drop(in, pk, DropNoException)
		return
	}
	copy(d[0:6], w.e.hostMAC[:])
	copy(d[6:12], w.e.routerMAC[:])
	w.queue(in, w.e.exception, pk)
}

// forward sends pk (an Ethernet frame whose IP header follows at 14, looked up in
// VRF vrf) where nh says. fromTunnel marks frames that arrived through a tunnel:
// they never go back into one.
func (w *Worker) forward(t *Tables, in *Iface, vrf uint32, pk *pmd.Pkt, id route.NextHopID, fromTunnel bool) {
	for hops := 0; hops < 2; hops++ { // an ECMP group resolves to a member once
		if id == route.NoRoute {
			if t.UnknownToHost && w.e.exception >= 0 {
				w.toHost(in, vrf, pk, w.pool.Data(pk))
				return
			}
			w.drop(in, pk, DropNoRoute)
			return
		}
		nh := t.Routes.NextHop(id)
		if nh == nil {
			w.drop(in, pk, DropNoRoute)
			return
		}
		switch nh.Kind {
		case route.KindDiscard:
			w.drop(in, pk, DropDiscard)
			return
		case route.KindReceive:
			w.toHost(in, vrf, pk, w.pool.Data(pk))
			return
		case route.KindLocal:
			d := w.pool.Data(pk)
			copy(d[0:6], nh.MAC[:])
			copy(d[6:12], w.e.routerMAC[:])
			w.queue(in, int(nh.Port), pk)
			return
		case route.KindECMP:
			if pk.Flags&pmd.PktHashValid == 0 {
				pk.Hash = encap.FlowHash(w.pool.Data(pk), true, encap.HashOptions{})
				pk.Flags |= pmd.PktHashValid
			}
			id = nh.Select(pk.Hash)
			continue
		case route.KindTunnel:
			if fromTunnel {
				w.drop(in, pk, DropHairpin)
				return
			}
			if int(id) >= len(t.Tunnels) || t.Tunnels[id] == nil || w.e.uplink < 0 {
				w.drop(in, pk, DropNoRoute)
				return
			}
			tun := t.Tunnels[id]
			if tun.Type() == encap.VXLAN {
				// The inner frame goes from our router MAC to the remote's.
				d := w.pool.Data(pk)
				dst := w.e.routerMAC
				if t.InnerMAC != nil {
					if m, ok := t.InnerMAC[id]; ok {
						dst = m
					}
				}
				copy(d[0:6], dst[:])
				copy(d[6:12], w.e.routerMAC[:])
			} else {
				pk.Adj(14) // MPLS L3 VPN and GRE carry the IP packet
			}
			var err error
			if w.seg != nil {
				err = tun.EncapChain(w.pool, w.seg)
			} else {
				err = tun.Encap(w.pool, pk)
			}
			if err == encap.ErrMTU {
				// An IPv4 packet without DF is fragmented; otherwise tell the pod
				// the path MTU: the payload's, less the inner Ethernet header VXLAN
				// carries.
				d, mtu, l2 := w.pool.Data(pk), tun.PayloadMTU(), 0
				if tun.Type() == encap.VXLAN {
					d, mtu, l2 = d[14:], mtu-14, 14
				}
				if len(d) >= 20 && d[0]>>4 == 4 && d[6]&0x40 == 0 && w.fragment4(in, pk, tun, l2) {
					return
				}
				w.tooBig(in, pk, d, mtu)
				return
			}
			if err != nil {
				w.drop(in, pk, DropEncap)
				return
			}
			w.queue(in, w.e.uplink, pk)
			return
		}
		w.drop(in, pk, DropNoRoute)
		return
	}
	w.drop(in, pk, DropNoRoute)
}

// fromUplink decapsulates a tunnel frame and forwards its inner packet.
func (w *Worker) fromUplink(t *Tables, in *Iface, pk *pmd.Pkt) {
	r := &w.res
	var why encap.Reason
	if w.seg != nil {
		why = w.decap.DecapChain(w.pool, w.seg, r)
	} else {
		why = w.decap.Decap(w.pool, pk, r)
	}
	if why != encap.OK {
		if w.e.host >= 0 && (why.NotTunnel() || why == encap.DropFragment || why == encap.DropOptions) {
			// ARP and the host's own traffic, unchanged: also its fragments and
			// IPv6 with extension headers, which the kernel handles (the vRouter
			// reassembles no tunnel packets, so none of these is one it could take).
			w.queue(in, w.e.host, pk)
			return
		}
		w.drop(in, pk, DropDecap)
		return
	}
	var vrf uint32
	var ok bool
	switch r.Type {
	case encap.VXLAN:
		vrf, ok = t.VNIs[r.VNI]
	default:
		vrf, ok = t.Labels[r.Label()]
	}
	if !ok {
		w.drop(in, pk, DropUnknownID)
		return
	}
	if r.Type != encap.VXLAN {
		// An IP packet: give it an Ethernet header again.
		et := uint16(etherIPv4)
		if r.InnerIPVersion == 6 {
			et = etherIPv6
		} else if r.InnerIPVersion != 4 {
			w.drop(in, pk, DropMalformed)
			return
		}
		if !pk.Prepend(14) {
			w.drop(in, pk, DropMalformed)
			return
		}
		binary.BigEndian.PutUint16(w.pool.Data(pk)[12:], et)
	}
	d := w.pool.Data(pk)
	h := &w.hdr
	if !parse(d, len(d)+w.segBytes, h) {
		w.drop(in, pk, unparsed(d))
		return
	}
	if h.ethertype == etherARP {
		w.drop(in, pk, DropARP) // flooded by a VTEP: the vRouter answers only its pods
		return
	}
	w.trim(pk, h.end)
	if h.ethertype == etherIPv4 && (h.dst4>>28 == 0xe || h.dst4 == 0xffffffff) ||
		h.ethertype == etherIPv6 && h.dst6[0] == 0xff {
		w.drop(in, pk, DropARP) // flooded control traffic, as dropped from a pod
		return
	}
	if h.ethertype == etherIPv4 && martian4(h.src4, h.dst4) || h.ethertype == etherIPv6 && martian6(&h.src6, &h.dst6) {
		w.drop(in, pk, DropNoRoute)
		return
	}
	if h.ethertype == etherIPv4 {
		if !decTTL4(d[14:]) {
			w.drop(in, pk, DropTTLExpired)
			return
		}
		w.forward(t, in, vrf, pk, t.Routes.Lookup4(vrf, h.dst4), true)
		return
	}
	if !decHopLimit6(d[14:]) {
		w.drop(in, pk, DropTTLExpired)
		return
	}
	w.forward(t, in, vrf, pk, t.Routes.Lookup6(vrf, &h.dst6), true)
}

// martian4 reports whether an IPv4 packet from src to dst must not be routed
// whatever the routes say: loopback (127/8) or "this network" (0/8) at either end,
// which never leave their host (RFC 1812 §5.3.7, §4.2.2.11), or a multicast,
// class E or broadcast source (224/3), which no host sends from (§5.3.7; Linux
// drops them as martian sources). The pods' gateways, which may be anything, are
// handled before.
func martian4(src, dst uint32) bool {
	return src>>24 == 127 || dst>>24 == 127 || src>>24 == 0 || dst>>24 == 0 || src>>29 == 7
}

// martian6 is martian4 for IPv6: a link-local source or destination (fe80::/10),
// which routers never forward off their link (RFC 4291 §2.5.6), loopback (::1) or
// the unspecified address (::) as the destination, or loopback as the source (RFC
// 4291 §2.5.2, §2.5.3), or an IPv4-mapped address (::ffff:0:0/96) either way: it
// stands for an IPv4 peer inside one host's dual-stack API and never belongs on the
// wire (RFC 4291 §2.5.5.2; Linux drops such sources, as ::ffff:127.0.0.1 would fool
// address checks), or a multicast source (ff00::/8, RFC 4291 §2.7). A default
// route (::/0) must not carry them to a remote node.
func martian6(src, dst *[16]byte) bool {
	ll := func(a *[16]byte) bool { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }
	lo := func(a *[16]byte) bool { return *a == [16]byte{15: 1} }
	mapped := func(a *[16]byte) bool { return [12]byte(a[:12]) == [12]byte{10: 0xff, 11: 0xff} }
	return ll(src) || ll(dst) || lo(src) || lo(dst) || *dst == [16]byte{} || mapped(src) || mapped(dst) || src[0] == 0xff
}

// trim cuts pk (and the rest of its chain) to n bytes, where its IP packet ends, when
// it is longer: what follows the packet in the frame (Ethernet padding, a trailer) is
// not part of it. Carried along it would count against the tunnel's MTU (a small
// packet in a long frame answered as too big, or "fragmented" into one piece) and,
// through an L3 tunnel, become part of the packet the remote node delivers. Segments
// of a chain after the packet's end go back to the cache; a chain cut to one segment
// is a packet in one frame.
func (w *Worker) trim(pk *pmd.Pkt, n int) {
	if w.seg == nil {
		if int(pk.Len) > n {
			pk.Len = uint16(n)
		}
		return
	}
	if int(pk.Len)+w.segBytes <= n {
		return
	}
	at := 0
	for i := range w.seg {
		l := int(w.seg[i].Len)
		if at+l < n {
			at += l
			continue
		}
		// The packet ends in segment i (at < n): it keeps the segments up to i.
		keep := i + 1
		w.seg[i].Len = uint16(n - at)
		w.seg[i].Flags &^= pmd.PktMore
		w.cache.Free(w.seg[keep:])
		w.seg = w.seg[:keep]
		w.segBytes = n - int(pk.Len)
		if keep == 1 {
			w.seg, w.segBytes = nil, 0
		}
		return
	}
}

// unparsed is the drop reason for a frame parse refused: an ethertype the vRouter
// does not carry, or a malformed frame.
func unparsed(d []byte) Reason {
	if len(d) >= 14 {
		if et := binary.BigEndian.Uint16(d[12:]); et != etherIPv4 && et != etherIPv6 && et != etherARP {
			return DropEthertype
		}
	}
	return DropMalformed
}

// answerARP replies to ARP requests for the VRF's gateways and pods.
func (w *Worker) answerARP(t *Tables, in *Iface, pk *pmd.Pkt, d []byte) {
	resp := t.Responders[in.VRF]
	if w.seg != nil {
		w.drop(in, pk, DropMalformed) // no ARP message fills a jumbo frame
		return
	}
	if a := d[14:]; binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != etherIPv4 ||
		a[4] != 6 || a[5] != 4 {
		w.drop(in, pk, DropARP) // not Ethernet/IPv4: the sender address is not where it is read below
		return
	}
	if spa, tpa := binary.BigEndian.Uint32(d[14+14:]), binary.BigEndian.Uint32(d[14+24:]); spa == 0 &&
		(in.Kind == Exception || in.Kind == Pod && has4(in.IP4, tpa)) {
		// An address conflict probe (RFC 5227 §2.1.1) for the prober's own address,
		// as dadOwn: an answer would tell it the address is in use.
		w.drop(in, pk, DropARP)
		return
	}
	if in.Kind == Pod && !has4(in.IP4, binary.BigEndian.Uint32(d[14+14:])) {
		w.drop(in, pk, DropSpoofIP) // the sender protocol address must be the pod's
		return
	}
	w.askT, w.askIn = t, in
	answered := resp != nil && resp.AnswerARPProxy(d, w.proxyFn) == nil
	w.askT, w.askIn = nil, nil
	if !answered {
		w.drop(in, pk, DropARP)
		return
	}
	w.queue(in, in.idx, pk)
}

// proxy answers ARP and neighbour solicitations, on w.askIn's behalf, for the
// addresses its VRF routes somewhere else: another pod, a remote node (one or an
// ECMP group of them) or the host. So pods of one subnet spread over several nodes
// reach each other through the vRouter, which answers for them all with its MAC, as
// Contrail's vRouter does. Addresses routed back to the asking port (a pod's own
// route, or the host's when the host asks on the exception TAP), discarded or
// not routed are not answered, nor IPv6 link-local ones: they are on the asker's own
// link and never routed (RFC 4291 §2.5.6), whatever route covers them (::/0), and
// each pod probes its own for duplicates (RFC 4862 §5.4) as its interface comes up;
// nor the other addresses the engine never routes (martian4, martian6: loopback, the
// unspecified address, 0/8), which an answer would only draw packets to for nothing.
func (w *Worker) proxy(a netip.Addr) (route.MAC, bool) {
	t, in := w.askT, w.askIn
	var id route.NextHopID
	if a.Is4() {
		v := IP4(a)
		if martian4(v, v) {
			return route.MAC{}, false // never routed (fromLocal)
		}
		id = t.Routes.Lookup4(in.VRF, v)
	} else {
		b := a.As16()
		if martian6(&b, &b) { // link-local, loopback, unspecified, IPv4-mapped: never routed
			return route.MAC{}, false
		}
		id = t.Routes.Lookup6(in.VRF, &b)
	}
	nh := t.Routes.NextHop(id)
	if id == route.NoRoute || nh == nil || nh.Kind == route.KindDiscard ||
		(nh.Kind == route.KindLocal && int(nh.Port) == in.idx) ||
		(nh.Kind == route.KindReceive && !w.hostPath(in)) {
		return route.MAC{}, false
	}
	return route.MAC(w.e.routerMAC), true
}

// hostPath reports whether in's packets routed to the host reach it: in is not the
// exception TAP itself, and the TAP serves in's VRF (toHost drops the others).
func (w *Worker) hostPath(in *Iface) bool {
	return in.Kind != Exception && w.e.hostServes(in.VRF)
}

// hostServes reports whether the exception TAP takes host-bound packets of VRF vrf:
// there is one, and it is that VRF's.
func (e *Engine) hostServes(vrf uint32) bool {
	return e.exception >= 0 && e.ifaces[e.exception].VRF == vrf
}

// dadOwn reports whether the neighbour solicitation ns, from src, is a duplicate
// address detection probe (unspecified source, RFC 4862 §5.4.2) that the sender makes
// for an address of its own: a pod for one of its addresses, or the host (on the
// exception TAP) for any. Answering it would tell the prober its address is in use,
// and it would never come up (RFC 4862 §5.4.5).
func dadOwn(in *Iface, src *[16]byte, ns []byte) bool {
	if *src != ([16]byte{}) || len(ns) < 24 {
		return false
	}
	target := [16]byte(ns[8:24])
	return in.Kind == Exception || (in.Kind == Pod && has6(in.IP6, &target))
}

// answerNS replies to neighbour solicitations for the VRF's gateways and pods.
func (w *Worker) answerNS(t *Tables, in *Iface, pk *pmd.Pkt) {
	resp := t.Responders[in.VRF]
	if resp == nil || w.seg != nil {
		w.drop(in, pk, DropARP)
		return
	}
	full := w.pool.Bytes(pk.Frame)[pk.Off:]
	w.askT, w.askIn = t, in
	reply, err := resp.AnswerNSProxy(full[:pk.Len], w.proxyFn)
	w.askT, w.askIn = nil, nil
	if err != nil {
		w.drop(in, pk, DropARP)
		return
	}
	pk.Len = uint16(len(reply))
	w.queue(in, in.idx, pk)
}

func has4(s []uint32, a uint32) bool {
	for _, v := range s {
		if v == a {
			return true
		}
	}
	return false
}

func has6(s [][16]byte, a *[16]byte) bool {
	for i := range s {
		if s[i] == *a {
			return true
		}
	}
	return false
}
