package dataplane

import (
	"encoding/binary"
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
)

// Drop reasons the engine counts, per interface.
type Reason uint8

const (
	DropSpoofMAC    Reason = iota // a pod sent from a MAC not its own
	DropSpoofIP                   // a pod sent from an address not its own
	DropMalformed                 // a frame too short or inconsistent to forward
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
	NumReasons
)

var reasonNames = [NumReasons]string{"spoofed_mac", "spoofed_ip", "malformed", "ttl_expired", "no_route",
	"discard", "ethertype", "unknown_vni_or_label", "decap", "tx_full", "no_exception_path", "hairpin",
	"control_ignored", "encap_failed", "too_big"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Iface is one port of the engine.
type Iface struct {
	Name string
	Kind Kind
	Port pmd.Port
	VRF  uint32
	// MAC is the pod's own MAC (Pod) or the host end's (Exception).
	MAC [6]byte
	// The pod's addresses (source check) and, for the exception path, the host's.
	IP4 []uint32
	IP6 [][16]byte
	// Gateways the pod routes through: traffic to them goes to the host.
	Gw4 []uint32
	Gw6 [][16]byte

	Stats  Counters
	out    pmd.Batch
	chains bool // the port transmits multi-buffer chains (pmd.TxChains)
	idx    int  // the interface's index in the engine
	// ICMP error rate limit (icmp.go).
	icmpTokens int
	icmpRefill time.Time
}

// Counters are an interface's packet counts, written by the engine's goroutine and
// read by the metrics endpoint.
type Counters struct {
	RxPackets, RxBytes, TxPackets, TxBytes atomic.Uint64
	Drops                                  [NumReasons]atomic.Uint64
	// ICMPSent counts the ICMP errors (too big) sent back out of the interface.
	ICMPSent atomic.Uint64
}

// Tables are what the control plane publishes to the engine as one unit.
type Tables struct {
	Routes *route.Table
	// Tunnels[id] is the encapsulation of tunnel next hop id.
	Tunnels []*encap.Tunnel
	// VRF of each VNI and MPLS label this node expects.
	VNIs   map[uint32]uint32
	Labels map[uint32]uint32
	// ARP/ND responders per VRF: the gateways and the VRF's other pods (proxy ARP,
	// so pods on one subnet reach each other through the vRouter).
	Responders map[uint32]*route.Responder
	// UnknownToHost sends unroutable packets to the exception path.
	UnknownToHost bool
}

// Engine forwards between its interfaces. Poll belongs to one goroutine; Publish may
// be called from another at any time (the next burst sees the new tables).
type Engine struct {
	pool      *pmd.Pool
	cache     *pmd.Cache
	ifaces    []*Iface
	uplink    int // index of the uplink
	exception int // index of the exception TAP, -1 if none
	routerMAC [6]byte
	hostMAC   [6]byte // where exception-path frames go: the TAP's host MAC
	decap     *encap.Decapper
	tables    atomic.Pointer[Tables]

	polls uint32 // Poll calls, for the exception path's slower polling
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
}

// Config builds an Engine.
type Config struct {
	Pool      *pmd.Pool
	Ifaces    []*Iface
	RouterMAC [6]byte
	Decapper  *encap.Decapper
}

// New returns an engine over cfg's interfaces; exactly one must be the Uplink.
func New(cfg Config) *Engine {
	e := &Engine{pool: cfg.Pool, cache: cfg.Pool.NewCache(512), ifaces: cfg.Ifaces, uplink: -1, exception: -1,
		routerMAC: cfg.RouterMAC, decap: cfg.Decapper}
	for i, in := range cfg.Ifaces {
		// Poll drives every port from one goroutine, so they all share its cache:
		// a frame one port transmits is the next another receives into. A port of
		// another pool (ErrForeignCache) keeps its own caches.
		_ = pmd.ShareCache(e.cache, in.Port)
		in.chains = pmd.TxChains(in.Port)
		in.idx = i
		switch in.Kind {
		case Uplink:
			e.uplink = i
		case Exception:
			e.exception = i
			e.hostMAC = in.MAC
		}
	}
	return e
}

// Publish installs new tables.
func (e *Engine) Publish(t *Tables) { e.tables.Store(t) }

// Ifaces returns the engine's interfaces.
func (e *Engine) Ifaces() []*Iface { return e.ifaces }

// Close returns the engine's cached frames to the pool; call it after the last Poll.
func (e *Engine) Close() {
	for _, in := range e.ifaces {
		e.cache.Free(in.out.Pkts())
		in.out.Reset()
	}
	e.cache.Flush()
}

// exceptionEvery is how often Poll looks at the exception TAP: every that many calls.
// A TAP has no shared ring to peek at, so each look is a read system call that mostly
// finds nothing; host-bound traffic is rare and waits at most that many loops (a few
// microseconds under load).
const exceptionEvery = 16

// Poll receives a burst from every interface, forwards it and transmits what is
// queued. It returns how many packets it received.
func (e *Engine) Poll() int {
	t := e.tables.Load()
	total := 0
	e.polls++
	for i, in := range e.ifaces {
		if in.Kind == Exception && e.polls%exceptionEvery != 1 {
			continue
		}
		e.in.Reset()
		n := e.in.Rx(in.Port)
		if n == 0 {
			continue
		}
		pkts := e.in.Pkts()
		in.Stats.RxBytes.Add(uint64(pmd.Bytes(pkts)))
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
				e.seg, e.segBytes = pkts[j:k+1], pmd.Bytes(pkts[j+1:k+1])
				if pkts[k].Flags&pmd.PktMore != 0 {
					e.drop(in, pk, DropMalformed)
					e.seg, e.segBytes = nil, 0
					break
				}
				j = k
			}
			switch {
			case t == nil:
				e.drop(in, pk, DropNoRoute)
			case in.Kind == Uplink:
				e.fromUplink(t, in, pk)
			default:
				e.fromLocal(t, i, in, pk)
			}
			e.seg, e.segBytes = nil, 0
		}
		total += np
		in.Stats.RxPackets.Add(uint64(np))
	}
	e.flush()
	return total
}

// drop frees pk's frame (and the rest of its chain) and counts why on in.
func (e *Engine) drop(in *Iface, pk *pmd.Pkt, why Reason) {
	in.Stats.Drops[why].Add(1)
	if e.seg != nil {
		e.cache.Free(e.seg)
		return
	}
	e.one[0] = pk.Frame
	e.cache.Put(e.one[:])
}

// queue puts pk (and the rest of its chain) on output interface o, flushing it first
// when its batch is full. A chain for a port that cannot send one is dropped and
// counted on in.
func (e *Engine) queue(in *Iface, o int, pk *pmd.Pkt) {
	out := e.ifaces[o]
	if e.seg != nil {
		if !out.chains {
			e.drop(in, pk, DropTooBig)
			return
		}
		if out.out.Len()+len(e.seg) > pmd.MaxBurst {
			e.flushOne(out)
		}
		out.out.Push(*pk)
		for _, s := range e.seg[1:] {
			out.out.Push(s)
		}
		return
	}
	if out.out.Len() == pmd.MaxBurst {
		e.flushOne(out)
	}
	out.out.Push(*pk)
}

func (e *Engine) flush() {
	for _, o := range e.ifaces {
		if o.out.Len() > 0 {
			e.flushOne(o)
		}
	}
}

func (e *Engine) flushOne(o *Iface) {
	bytes := pmd.Bytes(o.out.Pkts())
	sent := pmd.PacketCount(o.out.Pkts())
	o.out.Tx(o.Port)
	// A full TX ring drains as the port kicks and reaps completions: try again a few
	// times before dropping what is left.
	for try := 0; try < 4 && o.out.Len() > 0; try++ {
		o.out.Tx(o.Port)
	}
	if o.out.Len() > 0 {
		left := pmd.PacketCount(o.out.Pkts())
		sent -= left
		bytes -= pmd.Bytes(o.out.Pkts())
		o.Stats.Drops[DropTxFull].Add(uint64(left))
		e.cache.Free(o.out.Pkts())
		o.out.Reset()
	}
	o.Stats.TxPackets.Add(uint64(sent))
	o.Stats.TxBytes.Add(uint64(bytes))
}

// fromLocal handles a frame from a pod or from the host's TAP.
func (e *Engine) fromLocal(t *Tables, idx int, in *Iface, pk *pmd.Pkt) {
	d := e.pool.Data(pk)
	if len(d) < 14 {
		e.drop(in, pk, DropMalformed)
		return
	}
	if in.Kind == Pod && [6]byte(d[6:12]) != in.MAC {
		e.drop(in, pk, DropSpoofMAC)
		return
	}
	h := &e.hdr
	if !parse(d, len(d)+e.segBytes, h) {
		if len(d) >= 14 {
			if et := binary.BigEndian.Uint16(d[12:]); et != etherIPv4 && et != etherIPv6 && et != etherARP {
				e.drop(in, pk, DropEthertype)
				return
			}
		}
		e.drop(in, pk, DropMalformed)
		return
	}
	switch h.ethertype {
	case etherARP:
		e.answerARP(t, idx, in, pk, d)
		return
	case etherIPv4:
		if h.dst4>>28 == 0xe || h.dst4 == 0xffffffff {
			e.drop(in, pk, DropARP) // multicast and broadcast control traffic (IGMP, DHCP)
			return
		}
		if in.Kind == Pod && !has4(in.IP4, h.src4) {
			e.drop(in, pk, DropSpoofIP)
			return
		}
		if in.Kind == Pod && has4(in.Gw4, h.dst4) {
			e.toHost(in, pk, d)
			return
		}
		if !decTTL4(d[14:]) {
			e.drop(in, pk, DropTTLExpired)
			return
		}
		e.forward(t, in, pk, t.Routes.Lookup4(in.VRF, h.dst4), false)
	case etherIPv6:
		if h.proto == 58 && h.l4 < len(d) && d[h.l4] == 135 { // neighbour solicitation
			e.answerNS(t, idx, in, pk)
			return
		}
		if h.dst6[0] == 0xff {
			e.drop(in, pk, DropARP) // multicast control traffic (MLD, router solicitations)
			return
		}
		if in.Kind == Pod && !has6(in.IP6, &h.src6) {
			e.drop(in, pk, DropSpoofIP)
			return
		}
		if in.Kind == Pod && has6(in.Gw6, &h.dst6) {
			e.toHost(in, pk, d)
			return
		}
		if !decHopLimit6(d[14:]) {
			e.drop(in, pk, DropTTLExpired)
			return
		}
		e.forward(t, in, pk, t.Routes.Lookup6(in.VRF, &h.dst6), false)
	}
}

// toHost sends a pod's frame addressed to its gateway to the host's TAP.
func (e *Engine) toHost(in *Iface, pk *pmd.Pkt, d []byte) {
	if e.exception < 0 {
		e.drop(in, pk, DropNoException)
		return
	}
	copy(d[0:6], e.hostMAC[:])
	copy(d[6:12], e.routerMAC[:])
	e.queue(in, e.exception, pk)
}

// forward sends pk (an Ethernet frame whose IP header follows at 14) where nh says.
// fromTunnel marks frames that arrived through a tunnel: they never go back into one.
func (e *Engine) forward(t *Tables, in *Iface, pk *pmd.Pkt, id route.NextHopID, fromTunnel bool) {
	for hops := 0; hops < 2; hops++ { // an ECMP group resolves to a member once
		if id == route.NoRoute {
			if t.UnknownToHost && e.exception >= 0 {
				e.toHost(in, pk, e.pool.Data(pk))
				return
			}
			e.drop(in, pk, DropNoRoute)
			return
		}
		nh := t.Routes.NextHop(id)
		if nh == nil {
			e.drop(in, pk, DropNoRoute)
			return
		}
		switch nh.Kind {
		case route.KindDiscard:
			e.drop(in, pk, DropDiscard)
			return
		case route.KindReceive:
			e.toHost(in, pk, e.pool.Data(pk))
			return
		case route.KindLocal:
			d := e.pool.Data(pk)
			copy(d[0:6], nh.MAC[:])
			copy(d[6:12], e.routerMAC[:])
			e.queue(in, int(nh.Port), pk)
			return
		case route.KindECMP:
			if pk.Flags&pmd.PktHashValid == 0 {
				pk.Hash = encap.FlowHash(e.pool.Data(pk), true, encap.HashOptions{})
				pk.Flags |= pmd.PktHashValid
			}
			id = nh.Select(pk.Hash)
			continue
		case route.KindTunnel:
			if fromTunnel {
				e.drop(in, pk, DropHairpin)
				return
			}
			if int(id) >= len(t.Tunnels) || t.Tunnels[id] == nil || e.uplink < 0 {
				e.drop(in, pk, DropNoRoute)
				return
			}
			tun := t.Tunnels[id]
			if tun.Type() == encap.VXLAN {
				// The inner frame goes from our router MAC to the remote's.
				d := e.pool.Data(pk)
				copy(d[0:6], e.routerMAC[:])
				copy(d[6:12], e.routerMAC[:])
			} else {
				pk.Adj(14) // MPLS L3 VPN and GRE carry the IP packet
			}
			var err error
			if e.seg != nil {
				err = tun.EncapChain(e.pool, e.seg)
			} else {
				err = tun.Encap(e.pool, pk)
			}
			if err == encap.ErrMTU {
				// Tell the pod the path MTU: the payload's, less the inner
				// Ethernet header VXLAN carries.
				d, mtu := e.pool.Data(pk), tun.PayloadMTU()
				if tun.Type() == encap.VXLAN {
					d, mtu = d[14:], mtu-14
				}
				e.tooBig(in, pk, d, mtu)
				return
			}
			if err != nil {
				e.drop(in, pk, DropEncap)
				return
			}
			e.queue(in, e.uplink, pk)
			return
		}
		e.drop(in, pk, DropNoRoute)
		return
	}
	e.drop(in, pk, DropNoRoute)
}

// fromUplink decapsulates a tunnel frame and forwards its inner packet.
func (e *Engine) fromUplink(t *Tables, in *Iface, pk *pmd.Pkt) {
	r := &e.res
	var why encap.Reason
	if e.seg != nil {
		why = e.decap.DecapChain(e.pool, e.seg, r)
	} else {
		why = e.decap.Decap(e.pool, pk, r)
	}
	if why != encap.OK {
		e.drop(in, pk, DropDecap)
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
		e.drop(in, pk, DropUnknownID)
		return
	}
	if r.Type != encap.VXLAN {
		// An IP packet: give it an Ethernet header again.
		et := uint16(etherIPv4)
		if r.InnerIPVersion == 6 {
			et = etherIPv6
		} else if r.InnerIPVersion != 4 {
			e.drop(in, pk, DropMalformed)
			return
		}
		if !pk.Prepend(14) {
			e.drop(in, pk, DropMalformed)
			return
		}
		binary.BigEndian.PutUint16(e.pool.Data(pk)[12:], et)
	}
	d := e.pool.Data(pk)
	h := &e.hdr
	if !parse(d, len(d)+e.segBytes, h) || h.ethertype == etherARP {
		e.drop(in, pk, DropMalformed)
		return
	}
	if h.ethertype == etherIPv4 {
		if !decTTL4(d[14:]) {
			e.drop(in, pk, DropTTLExpired)
			return
		}
		e.forward(t, in, pk, t.Routes.Lookup4(vrf, h.dst4), true)
		return
	}
	if !decHopLimit6(d[14:]) {
		e.drop(in, pk, DropTTLExpired)
		return
	}
	e.forward(t, in, pk, t.Routes.Lookup6(vrf, &h.dst6), true)
}

// answerARP replies to ARP requests for the VRF's gateways and pods.
func (e *Engine) answerARP(t *Tables, idx int, in *Iface, pk *pmd.Pkt, d []byte) {
	resp := t.Responders[in.VRF]
	if e.seg != nil {
		e.drop(in, pk, DropMalformed) // no ARP message fills a jumbo frame
		return
	}
	if in.Kind == Pod && !has4(in.IP4, binary.BigEndian.Uint32(d[14+14:])) {
		e.drop(in, pk, DropSpoofIP) // the sender protocol address must be the pod's
		return
	}
	if resp == nil || resp.AnswerARP(d) != nil {
		e.drop(in, pk, DropARP)
		return
	}
	e.queue(in, idx, pk)
}

// answerNS replies to neighbour solicitations for the VRF's gateways and pods.
func (e *Engine) answerNS(t *Tables, idx int, in *Iface, pk *pmd.Pkt) {
	resp := t.Responders[in.VRF]
	if resp == nil || e.seg != nil {
		e.drop(in, pk, DropARP)
		return
	}
	full := e.pool.Bytes(pk.Frame)[pk.Off:]
	reply, err := resp.AnswerNS(full[:pk.Len])
	if err != nil {
		e.drop(in, pk, DropARP)
		return
	}
	pk.Len = uint16(len(reply))
	e.queue(in, idx, pk)
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
