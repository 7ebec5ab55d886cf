package encap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/dpkit/dpkit/pmd"
)

// Type is an overlay encapsulation.
type Type uint8

const (
	// VXLAN carries an Ethernet frame in UDP to port 4789 with a 24-bit VNI (RFC 7348).
	VXLAN Type = iota + 1
	// MPLSoUDP carries an MPLS label stack and its payload in UDP to port 6635
	// (RFC 7510).
	MPLSoUDP
	// MPLSoGRE carries an MPLS label stack in GRE with protocol 0x8847 (RFC 4023).
	MPLSoGRE
	// GRE carries an IPv4 or IPv6 packet in GRE (RFC 2784).
	GRE
)

func (t Type) String() string {
	switch t {
	case VXLAN:
		return "vxlan"
	case MPLSoUDP:
		return "mplsoudp"
	case MPLSoGRE:
		return "mplsogre"
	case GRE:
		return "gre"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Well-known numbers.
const (
	PortVXLAN     = 4789 // RFC 7348 §5
	PortMPLSoUDP  = 6635 // RFC 7510 §3
	ProtoUDP      = 17
	ProtoGRE      = 47
	EtherIPv4     = 0x0800
	EtherIPv6     = 0x86dd
	EtherVLAN     = 0x8100
	EtherQinQ     = 0x88a8
	EtherMPLS     = 0x8847
	MaxLabels     = 8
	DefaultTTL    = 64
	SrcPortMinDef = 49152 // RFC 7510 §3: the ephemeral range by default
	SrcPortMaxDef = 65535
)

// Label is one MPLS label stack entry (RFC 3032 §2.1). The bottom-of-stack bit is set
// on the last entry of a stack, never by the caller.
type Label struct {
	Label uint32 // 20 bits
	TC    uint8  // 3 bits of traffic class
	// TTL of the entry; 0 copies the inner IP TTL (or hop limit) at encap time
	// (RFC 3443's uniform model), 64 for a non-IP payload.
	TTL uint8
}

// DFPolicy says how the outer IPv4 header's Don't Fragment bit is set.
type DFPolicy uint8

const (
	// DFSet sets DF: the common choice for tunnels with a known path MTU.
	DFSet DFPolicy = iota
	// DFClear clears DF; the outer header then gets a fresh identification per packet
	// (RFC 6864 §4.1), from a counter shared by the tunnel's users.
	DFClear
	// DFCopy copies DF from an inner IPv4 header; it is set for other payloads (IPv6
	// is never fragmented on the way, RFC 8200 §5).
	DFCopy
)

// Csum6 says how the UDP checksum under an IPv6 outer header is made. An IPv4 outer
// header always gets a zero UDP checksum, which RFC 7348 §5 and RFC 7510 §3 allow.
type Csum6 uint8

const (
	// Csum6Full sums the whole datagram (RFC 8200 §8.1): always right, one pass over
	// the payload.
	Csum6Full Csum6 = iota
	// Csum6Inner derives the payload's sum from the inner packet's own checksums
	// (Linux's local checksum offload): constant time, right whenever the inner IPv4
	// header and TCP, UDP, ICMP or ICMPv6 checksum are; packets it cannot vouch for
	// (fragments, extension headers, other protocols, UDP without a checksum) are
	// summed in full. A packet whose inner checksum is wrong gets a wrong outer one
	// and is dropped by the receiver one layer earlier.
	Csum6Inner
	// Csum6Zero sends a zero checksum, which RFC 6935 allows for tunnels whose
	// receivers accept it (RFC 6936 §5; Linux vxlan's udp6zerocsumrx). dpkit's
	// Decapper accepts it.
	Csum6Zero
)

// Options describe a tunnel. The zero value of each field is usable unless noted.
type Options struct {
	// Type is required.
	Type Type
	// Outer Ethernet addresses and an optional 802.1Q tag (0: untagged).
	SrcMAC, DstMAC [6]byte
	OuterVLAN      uint16
	// Outer addresses, both IPv4 or both IPv6; required.
	Src, Dst netip.Addr
	// VNI for VXLAN, 24 bits.
	VNI uint32
	// Labels for MPLSoUDP and MPLSoGRE, outermost first; 1..MaxLabels.
	Labels []Label
	// InnerEthernet: for MPLSoUDP and MPLSoGRE, whether the payload is an Ethernet frame
	// (an L2 VPN) rather than an IP packet (an L3 VPN, the default). VXLAN payloads are
	// always Ethernet, GRE payloads always IP.
	InnerEthernet bool
	// InnerVLAN inserts an 802.1Q tag with this VLAN id into the inner Ethernet frame
	// (VXLAN only); 0 leaves the frame as it is.
	InnerVLAN uint16
	// TTL (hop limit) of the outer header; 0 copies the inner IP TTL, 64 for non-IP
	// payloads (the uniform model of RFC 2983).
	TTL uint8
	// DSCP of the outer header, 0..63 (the zero value sends DSCP 0); -1 copies the
	// inner one. Whatever the DSCP, the ECN bits are copied from an inner IP header
	// (RFC 6040 §4.1, normal mode), and are 0 (Not-ECT) for a non-IP payload.
	DSCP int8
	// DF policy for an IPv4 outer header; the zero value sets DF.
	DF DFPolicy
	// UDP6Checksum for an IPv6 outer header; the zero value computes it in full.
	UDP6Checksum Csum6
	// MTU is the largest outer IP datagram the uplink carries (its L3 MTU); Encap
	// refuses longer results with ErrMTU, leaving the packet to the caller (for an
	// ICMP "fragmentation needed" or "packet too big", RFC 1191, RFC 8201). 0 means no
	// limit but the frame's: an encapsulated frame, Ethernet header included, longer
	// than 65535 bytes fails with ErrTooLong.
	// It must exceed the tunnel's headers from the outer IP header on (and an inner
	// VLAN tag), so that PayloadMTU is positive.
	MTU int
	// UDP source port range for the flow hash; zeros mean 49152..65535.
	SrcPortMin, SrcPortMax uint16
	// Hash tunes the flow hash computed when a packet carries none.
	Hash HashOptions
}

// Errors. Encap returns them unwrapped, so a comparison is as good as errors.Is.
var (
	ErrOptions    = errors.New("encap: invalid tunnel options")
	ErrNoHeadroom = errors.New("encap: not enough headroom")
	ErrTooLong    = errors.New("encap: packet too long to encapsulate")
	// ErrMTU: the encapsulated packet would exceed Options.MTU.
	ErrMTU = errors.New("encap: encapsulated packet exceeds the MTU")
	// ErrNotTaggable: InnerVLAN is set and the payload is shorter than an Ethernet
	// header.
	ErrNotTaggable = errors.New("encap: payload too short for an inner VLAN tag")
	// ErrPartialCsum: the packet's transport checksum is partial (pmd.PktCsumPartial)
	// and not one Encap can finish (TCP or UDP in IPv4 or IPv6 without extension
	// headers; in an Ethernet payload, behind at most two VLAN tags).
	ErrPartialCsum = errors.New("encap: cannot finish the partial transport checksum")
	// ErrChain: a chain's segment went to Encap, or EncapChain got a malformed chain
	// (PktMore flags that do not end on its last segment, a segment outside its frame).
	ErrChain = errors.New("encap: chained packet (use EncapChain) or malformed chain")
)

// Validate reports the first problem with the options.
func (o *Options) Validate() error {
	bad := func(f string, a ...any) error { return fmt.Errorf("%w: %s", ErrOptions, fmt.Sprintf(f, a...)) }
	switch o.Type {
	case VXLAN:
		if o.VNI >= 1<<24 {
			return bad("VNI %d exceeds 24 bits", o.VNI)
		}
		if len(o.Labels) > 0 {
			return bad("VXLAN takes no labels")
		}
	case MPLSoUDP, MPLSoGRE:
		if len(o.Labels) == 0 || len(o.Labels) > MaxLabels {
			return bad("%d labels, want 1..%d", len(o.Labels), MaxLabels)
		}
		for i, l := range o.Labels {
			if l.Label >= 1<<20 || l.TC >= 8 {
				return bad("label %d: %d/%d out of range", i, l.Label, l.TC)
			}
		}
	case GRE:
		if len(o.Labels) > 0 || o.InnerEthernet {
			return bad("plain GRE carries IP packets only")
		}
	default:
		return bad("unknown type %d", o.Type)
	}
	if o.VNI != 0 && o.Type != VXLAN {
		return bad("a VNI needs VXLAN")
	}
	if o.InnerVLAN != 0 && (o.Type != VXLAN || o.InnerVLAN >= 4095) {
		return bad("inner VLAN %d needs VXLAN and an id below 4095", o.InnerVLAN)
	}
	if o.OuterVLAN >= 4095 {
		return bad("outer VLAN %d out of range", o.OuterVLAN)
	}
	if !o.Src.IsValid() || !o.Dst.IsValid() || o.Src.Is4() != o.Dst.Is4() || o.Src.Zone() != "" || o.Dst.Zone() != "" {
		return bad("outer addresses %v -> %v must be valid and of one family", o.Src, o.Dst)
	}
	if o.Src.Is4In6() || o.Dst.Is4In6() {
		return bad("use plain IPv4 addresses, not IPv4-mapped IPv6")
	}
	if o.DSCP < -1 || o.DSCP > 63 {
		return bad("DSCP %d out of range -1..63", o.DSCP)
	}
	if o.DF > DFCopy {
		return bad("unknown DF policy %d", o.DF)
	}
	if o.UDP6Checksum > Csum6Zero {
		return bad("unknown UDP6Checksum %d", o.UDP6Checksum)
	}
	if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
		return bad("MTU %d out of range 68..65535", o.MTU)
	}
	if h := o.overhead(); o.MTU != 0 && o.MTU <= h {
		return bad("MTU %d leaves no room for a payload under the tunnel's %d bytes of headers", o.MTU, h)
	}
	lo, hi := o.portRange()
	if lo > hi {
		return bad("source port range %d..%d is empty", lo, hi)
	}
	return nil
}

// overhead is how many bytes of the outer IP datagram are the tunnel's: the outer IP
// header and what follows it up to the payload, and an inner VLAN tag. o must be
// otherwise valid; NewTunnel's header length agrees (TestOptionsMTUBelowHeaders).
func (o *Options) overhead() int {
	n := 20
	if o.Src.Is6() {
		n = 40
	}
	switch o.Type {
	case VXLAN:
		n += 16
	case MPLSoUDP:
		n += 8
	case MPLSoGRE, GRE:
		n += 4
	}
	n += 4 * len(o.Labels)
	if o.InnerVLAN != 0 {
		n += 4
	}
	return n
}

func (o *Options) portRange() (uint16, uint16) {
	if o.SrcPortMin == 0 && o.SrcPortMax == 0 {
		return SrcPortMinDef, SrcPortMaxDef
	}
	return o.SrcPortMin, o.SrcPortMax
}

// maxHdr is the longest header a tunnel prepends: Ethernet with a tag, IPv6, UDP and
// a full label stack.
const maxHdr = 18 + 40 + 8 + 4*MaxLabels

// Tunnel is a precomputed encapsulation: the outer headers as a template, and what
// Encap patches per packet. It is immutable after NewTunnel and safe for concurrent
// use (with DFClear, concurrent users share the identification counter).
type Tunnel struct {
	hdr [maxHdr]byte
	// tmpl64 and tmpl128 hold hdr[:n] at their end (tmpl64 only if it fits).
	tmpl64  [64]byte
	tmpl128 [128]byte
	n       int // header length
	l3      int // outer IP header offset
	l4      int // UDP or GRE header offset
	v6      bool
	udp     bool
	gre     bool  // plain GRE: the protocol type follows the payload
	ioff    uint8 // 14 when the payload is L2
	// The outer TTL and TOS are the inner ones (DefaultTTL and 0 for a non-IP
	// payload) masked with keep and or'ed with set, the outer fragment field the inner
	// one masked with dfKeep and or'ed with dfSet (with an IPv4 payload; encapFastRun
	// uses these).
	ttlKeep, ttlSet, tosKeep, tosSet uint8
	dfKeep, dfSet                    uint64
	// maxPlen is the longest payload the length field and the MTU allow.
	maxPlen int
	// ttlOff holds the header offsets of the nCopy label TTLs that copyTTL marks.
	ttlOff [MaxLabels]uint8
	fast   bool // encapFastRun applies
	// fastOff is the headroom encapFastRun needs: it writes the template as a 64-
	// or 128-byte block ending at the payload.
	fastOff int
	// innerL2: the payload starts with an Ethernet header.
	innerL2 bool
	ttlCopy bool
	dscp    int8
	df      DFPolicy
	csum6   Csum6
	// labels is the offset of the first label, copyTTL the stack entries whose TTL
	// follows the payload's, as a bit set.
	labels  int
	copyTTL uint8
	nCopy   uint64
	vlan    uint16
	vlanLen uint8 // 4 with an inner VLAN tag
	mtu     int   // largest outer IP datagram
	proto   uint8 // outer IP protocol
	dport   uint16
	// ipBase is the ones'-complement sum of the outer IPv4 header's constant words,
	// the words Encap rewrites taken as zero.
	ipBase uint64
	// udpBase is the sum of the IPv6 pseudo-header's addresses and next header plus
	// the template from the UDP header to its end, ports, length and checksum taken as
	// zero.
	udpBase        uint64
	portLo, portSp uint32
	hash           HashOptions
	o              Options
	id             atomic.Uint32
}

// NewTunnel validates o and builds the header template.
func NewTunnel(o Options) (*Tunnel, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	t := &Tunnel{o: o, v6: o.Src.Is6(), ttlCopy: o.TTL == 0, dscp: o.DSCP, df: o.DF,
		csum6: o.UDP6Checksum, vlan: o.InnerVLAN, hash: o.Hash}
	t.o.Labels = append([]Label(nil), o.Labels...)
	if o.InnerVLAN != 0 {
		t.vlanLen = 4
	}
	t.mtu = o.MTU
	if t.mtu == 0 {
		t.mtu = 1 << 20
	}
	lo, hi := o.portRange()
	t.portLo, t.portSp = uint32(lo), uint32(hi)-uint32(lo)+1
	h := t.hdr[:]
	copy(h[0:], o.DstMAC[:])
	copy(h[6:], o.SrcMAC[:])
	off := 12
	if o.OuterVLAN != 0 {
		binary.BigEndian.PutUint16(h[12:], EtherVLAN)
		binary.BigEndian.PutUint16(h[14:], o.OuterVLAN)
		off = 16
	}
	et := uint16(EtherIPv4)
	if t.v6 {
		et = EtherIPv6
	}
	binary.BigEndian.PutUint16(h[off:], et)
	t.l3 = off + 2
	proto := byte(ProtoGRE)
	t.udp = o.Type == VXLAN || o.Type == MPLSoUDP
	if t.udp {
		proto = ProtoUDP
	}
	t.proto = proto
	ip := h[t.l3:]
	var pseudo uint64
	if t.v6 {
		ip[0] = 0x60
		ip[6] = proto
		s, d := o.Src.As16(), o.Dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
		pseudo = sum(sum(uint64(proto), s[:]), d[:])
		t.l4 = t.l3 + 40
	} else {
		ip[0] = 0x45
		ip[9] = proto
		s, d := o.Src.As4(), o.Dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		// Constant words: version/IHL (TOS added per packet), protocol (TTL added per
		// packet) and the addresses.
		t.ipBase = uint64(0x45)<<8 + uint64(proto) + sum(0, ip[12:20])
		t.l4 = t.l3 + 20
	}
	p := t.l4
	switch o.Type {
	case VXLAN:
		t.dport = PortVXLAN
		binary.BigEndian.PutUint16(h[p+2:], PortVXLAN)
		h[p+8] = 0x08 // RFC 7348 §5: the I flag, the VNI is valid
		binary.BigEndian.PutUint32(h[p+12:], o.VNI<<8)
		p += 16
		t.innerL2 = true
	case MPLSoUDP:
		t.dport = PortMPLSoUDP
		binary.BigEndian.PutUint16(h[p+2:], PortMPLSoUDP)
		p += 8
	case MPLSoGRE:
		binary.BigEndian.PutUint16(h[p+2:], EtherMPLS) // RFC 4023 §4
		p += 4
	case GRE:
		p += 4 // RFC 2784 §2.4: protocol type set per packet from the IP version
		t.gre = true
	}
	if len(o.Labels) > 0 {
		t.labels = p
		t.innerL2 = o.InnerEthernet
		for i, l := range o.Labels {
			v := l.Label<<12 | uint32(l.TC)<<9 | uint32(l.TTL)
			if i == len(o.Labels)-1 {
				v |= 1 << 8 // bottom of stack
			}
			if l.TTL == 0 {
				t.copyTTL |= 1 << i
				t.ttlOff[t.nCopy] = uint8(p + 3)
				t.nCopy++
			}
			binary.BigEndian.PutUint32(h[p:], v)
			p += 4
		}
	}
	t.n = p
	if p <= 64 {
		copy(t.tmpl64[64-p:], h[:p])
	}
	copy(t.tmpl128[128-p:], h[:p])
	t.ipBase = uint64(fold(t.ipBase))
	if t.udp && t.v6 {
		t.udpBase = uint64(fold(pseudo + sum(0, h[t.l4:p])))
	}
	t.maxPlen = min(0xffff-p, t.mtu+t.l3-p)
	t.fast = t.vlan == 0 && (t.v6 || p <= 64)
	t.fastOff = 64
	if t.v6 {
		t.fastOff = 128
	}
	if t.innerL2 {
		t.ioff = 14
	}
	switch {
	case t.ttlCopy:
		t.ttlKeep = 0xff
	default:
		t.ttlSet = o.TTL
	}
	// A set DSCP still keeps the inner ECN bits: RFC 6040 §4.1 has the encapsulator
	// copy them (normal mode), so that routers on the tunnel's path see an ECN-capable
	// flow and mark congestion instead of dropping, for the decapsulator to carry the
	// mark inwards (§4.2).
	switch {
	case t.dscp < 0:
		t.tosKeep = 0xff
	default:
		t.tosKeep, t.tosSet = 3, uint8(t.dscp)<<2
	}
	switch o.DF {
	case DFSet:
		t.dfSet = 0x4000
	case DFCopy:
		t.dfKeep = 0x4000
	}
	return t, nil
}

// Options returns the tunnel's options. Their Labels slice is the tunnel's own copy
// and must not be modified.
func (t *Tunnel) Options() Options { return t.o }

// Type returns the tunnel's encapsulation.
func (t *Tunnel) Type() Type { return t.o.Type }

// PayloadMTU returns the longest payload Encap takes before it refuses with ErrMTU
// (or ErrTooLong): Options.MTU less the tunnel's headers and an inner VLAN tag it
// inserts. A router reports it, less the inner Ethernet header when the payload has
// one, in ICMP "fragmentation needed" (RFC 1191 §4) or "packet too big" (RFC 4443
// §3.2).
func (t *Tunnel) PayloadMTU() int { return min(0xffff, t.mtu+t.l3) - t.n - int(t.vlanLen) }

// HeaderLen returns how many bytes Encap prepends (plus 4 with InnerVLAN).
func (t *Tunnel) HeaderLen() int { return t.n }

// innerIP finds the IP header in payload p: its version (4 or 6, 0 if not IP) and
// offset. IPv4 needs 20 bytes, IPv6 40.
func innerIP(p []byte, l2 bool) (int, int) {
	off := 0
	if l2 {
		if len(p) < 15 {
			return 0, 0
		}
		et := binary.BigEndian.Uint16(p[12:])
		off = 14
		if et == EtherVLAN || et == EtherQinQ {
			if len(p) < 19 {
				return 0, 0
			}
			et = binary.BigEndian.Uint16(p[16:])
			off = 18
			if et == EtherVLAN {
				if len(p) < 23 {
					return 0, 0
				}
				et = binary.BigEndian.Uint16(p[20:])
				off = 22
			}
		}
		if et != EtherIPv4 && et != EtherIPv6 {
			return 0, 0
		}
	} else if len(p) < 1 {
		return 0, 0
	}
	switch v := p[off] >> 4; {
	case v == 4 && len(p) >= off+20:
		return 4, off
	case v == 6 && len(p) >= off+40:
		return 6, off
	}
	return 0, 0
}

// Encap prepends the tunnel's headers to pk in its headroom. The packet's data is the
// payload: an Ethernet frame for VXLAN and L2 MPLS, an IP packet otherwise. Its flow
// hash picks the UDP source port (and an IPv6 outer flow label, RFC 6438): pk.Hash
// when pmd.PktHashValid is set, else FlowHash of the payload, stored in pk (GRE over
// IPv4 uses no hash and computes none). A partial
// transport checksum (pmd.PktCsumPartial) is finished first, as the device that would
// have finished it cannot see past the new headers. On error pk and its data are
// unchanged.
func (t *Tunnel) Encap(pool *pmd.Pool, pk *pmd.Pkt) error {
	return t.encap(pool, pk)
}

func (t *Tunnel) encap(pool *pmd.Pool, pk *pmd.Pkt) error {
	if t.fast && t.encapFastRun(pool, one(pk)) == 1 {
		return nil
	}
	return t.encapSlow(pool.Bytes(pk.Frame), pk, nil)
}

// encapSlow is encap for any packet; ch, when not nil, is the rest of a chained
// packet whose first segment is pk (see EncapChain).
func (t *Tunnel) encapSlow(frame []byte, pk *pmd.Pkt, ch *chainTail) error {
	off, plen := int(pk.Off), int(pk.Len)
	extra := 0 // payload bytes in later segments
	if ch != nil {
		extra = ch.bytes
	}
	hl := t.n
	if off < hl+int(t.vlanLen) {
		return ErrNoHeadroom
	}
	if plen+extra+hl+int(t.vlanLen) > 0xffff || off+plen > len(frame) {
		return ErrTooLong
	}
	if plen+extra+hl+int(t.vlanLen)-t.l3 > t.mtu {
		return ErrMTU
	}
	if ch == nil && pk.Flags&pmd.PktMore != 0 {
		return ErrChain
	}
	if ch != nil && pk.Flags&pmd.PktCsumPartial != 0 {
		return ErrPartialCsum // finishing it needs the segment in one piece
	}
	if t.vlan != 0 || pk.Flags&pmd.PktCsumPartial != 0 {
		var err error
		if off, plen, err = t.prepare(frame, off, plen, pk); err != nil {
			return err
		}
	}
	payload := frame[off : off+plen : off+plen]
	// hdrs holds the inner headers read below: the payload, or for a chain whose
	// first segment is shorter than chainHead (which covers the longest header run
	// read, Ethernet with two tags, IPv6 and the ports) a copy of the chain's start.
	hdrs := payload
	var head [chainHead]byte
	if ch != nil && plen < chainHead {
		hdrs = ch.head(head[:], payload)
	}
	hash := pk.Hash
	if pk.Flags&pmd.PktHashValid == 0 && (t.udp || t.v6) {
		hash = FlowHash(hdrs, t.innerL2, t.hash)
		pk.Hash = hash
		pk.Flags |= pmd.PktHashValid
	}
	// What the outer headers take from the inner IP header, per the tunnel's TTL,
	// DSCP and DF policies. The header is read whatever the policies, as its ECN bits
	// always go out (RFC 6040 §4.1). The common case inline: untagged IPv4; innerIP
	// handles the rest.
	ver, ioff := 0, 0
	if t.innerL2 {
		if len(hdrs) >= 34 && hdrs[12] == 0x08 && hdrs[13] == 0 && hdrs[14]>>4 == 4 {
			ver, ioff = 4, 14
		} else {
			ver, ioff = innerIP(hdrs, true)
		}
	} else if len(hdrs) >= 20 && hdrs[0]>>4 == 4 {
		ver = 4
	} else {
		ver, ioff = innerIP(hdrs, false)
	}
	lttl, itos, df := uint8(DefaultTTL), uint8(0), t.df != DFClear
	switch ver {
	case 4:
		ip := hdrs[ioff:][:20]
		lttl, itos = ip[8], ip[1]
		if t.df == DFCopy {
			df = ip[6]&0x40 != 0
		}
	case 6:
		ip := hdrs[ioff:][:8]
		lttl, itos = ip[7], uint8(binary.BigEndian.Uint16(ip)>>4)
	}
	ttl, tos := lttl&t.ttlKeep|t.ttlSet, itos&t.tosKeep|t.tosSet
	start := off - hl
	// The template is kept right-aligned in a 64- and a 128-byte block too, so that
	// most copies are a fixed-size move ending at the payload; the bytes it writes in
	// front of the header are headroom.
	if hl <= 64 && off >= 64 {
		*(*[64]byte)(frame[off-64 : off]) = t.tmpl64
	} else if off >= 128 {
		*(*[128]byte)(frame[off-128 : off]) = t.tmpl128
	} else {
		copy(frame[start:off], t.hdr[:hl])
	}
	h := frame[start:off]
	total := hl + plen + extra
	if t.v6 {
		ip := h[t.l3:][:40]
		binary.BigEndian.PutUint32(ip[0:], 6<<28|uint32(tos)<<20|hash&0xfffff) // flow label, RFC 6438
		binary.BigEndian.PutUint16(ip[4:], uint16(total-t.l3-40))
		ip[7] = ttl
	} else {
		ip := h[t.l3:][:20]
		tl := uint64(total - t.l3)
		var frag, id uint64
		if df {
			frag = 0x4000
		} else {
			id = uint64(uint16(t.id.Add(1)))
		}
		// RFC 1071 over the template's constant words plus the ones patched here.
		acc := t.ipBase + uint64(tos) + tl + id + frag + uint64(ttl)<<8
		// Version/IHL, TOS, total length, identification, flags/fragment offset; then
		// TTL, protocol and checksum: two stores.
		binary.BigEndian.PutUint64(ip, 0x45<<56|uint64(tos)<<48|tl<<32|id<<16|frag)
		binary.BigEndian.PutUint32(ip[8:], uint32(ttl)<<24|uint32(t.proto)<<16|uint32(^fold32(acc)))
	}
	if t.gre {
		et := uint16(EtherIPv4)
		if ver == 6 {
			et = EtherIPv6
		}
		binary.BigEndian.PutUint16(h[t.l4+2:], et)
	}
	if t.copyTTL != 0 {
		t.labelTTL(h, lttl)
	}
	if t.udp {
		u := h[t.l4:][:8]
		// RFC 7510 §3: the source port carries the flow's entropy; Lemire's
		// multiply-shift maps the hash onto the range without a division.
		port := uint16(t.portLo + uint32(uint64(hash)*uint64(t.portSp)>>32))
		ulen := uint16(total - t.l4)
		var c uint16
		if t.v6 && t.csum6 != Csum6Zero {
			if ch != nil {
				c = t.udp6ChecksumChain(payload, ch, lttl, port, ulen)
			} else {
				c = t.udp6Checksum(payload, ver, ioff, lttl, port, ulen)
			}
		}
		binary.BigEndian.PutUint64(u, uint64(port)<<48|uint64(t.dport)<<32|uint64(ulen)<<16|uint64(c))
	}
	pk.Off = uint16(start)
	pk.Len = uint16(total - extra)
	return nil
}

// encapFastRun is encap's common case written with fixed-size views of the frame and
// the tunnel's policies folded into masks, so that it has few bounds checks and
// branches: a tunnel without an inner VLAN tag whose IPv4 header template fits 64
// bytes or IPv6 one 128 (fast), and a packet without a partial checksum whose payload
// is an option-less IPv4 packet with room for its ports (behind an untagged Ethernet
// header when the payload is L2). It gives the same result as the general path, to
// which it leaves any other packet, unchanged: it runs over pkts, touching the frames
// a few packets ahead, up to the first packet it does not take, and returns how many
// it did.
//
// The outer IPv4 and IPv6 cases are separate loops: with both in one, the loop body
// kept more values live than there are registers, and the IPv4 case (the common
// one, and the cheaper) paid for the IPv6 one's spills and branches. Their first
// halves, which packets they take and the flow hash, are the same code written out
// twice (as helpers they were not inlined, and a call per packet cost more than the
// split saved): a change to one belongs in the other. The IPv4 loop makes no call: Go
// treats every register as clobbered by a call, and values live across even a call
// on a rare branch tended to be kept on the stack for the whole body.
func (t *Tunnel) encapFastRun(pool *pmd.Pool, pkts []pmd.Pkt) int {
	if t.v6 {
		return t.encapFast6(pool, pkts)
	}
	return t.encapFast4(pool, pkts)
}

// encapFast4 is encapFastRun for an outer IPv4 header.
func (t *Tunnel) encapFast4(pool *pmd.Pool, pkts []pmd.Pkt) int {
	var sink byte
	for i := range pkts {
		sink += touch(pool, pkts, i)
		frame, pk := pool.Bytes(pkts[i].Frame), &pkts[i]
		off, plen, hl, ioff := int(pk.Off), int(pk.Len), t.n, int(t.ioff)
		if off < t.fastOff || pk.Flags&(pmd.PktCsumPartial|pmd.PktMore) != 0 || plen < ioff+24 || plen > t.maxPlen || off+plen > len(frame) {
			keep(sink)
			return i
		}
		if t.innerL2 {
			if e := (*[14]byte)(frame[off : off+14]); e[12] != 0x08 || e[13] != 0 {
				keep(sink)
				return i
			}
		}
		ip := (*[24]byte)(frame[off+ioff : off+ioff+24])
		if ip[0] != 0x45 {
			keep(sink)
			return i
		}
		hash := pk.Hash
		if pk.Flags&pmd.PktHashValid == 0 && t.udp {
			// FlowHash's IPv4 case: the ports of TCP, UDP and SCTP unless a fragment.
			proto := ip[9]
			ports := uint64(binary.BigEndian.Uint32(ip[20:])) & portMask[proto]
			if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
				ports = 0
			}
			if t.hash.Symmetric {
				hash = hash4(uint64(binary.BigEndian.Uint32(ip[12:])), uint64(binary.BigEndian.Uint32(ip[16:])), proto,
					ports>>16, ports&0xffff, t.hash)
			} else {
				// hash4 without the ordering: the addresses are one big-endian word.
				h := mix(binary.BigEndian.Uint64(ip[12:])^t.hash.Seed, uint64(proto)<<32|ports)
				hash = uint32(h ^ h>>32)
			}
			pk.Hash = hash
			pk.Flags |= pmd.PktHashValid
		}
		lttl := ip[8]
		ttl, tos := lttl&t.ttlKeep|t.ttlSet, ip[1]&t.tosKeep|t.tosSet
		start := off - hl
		tl := uint64(plen + hl - t.l3)
		frag := uint64(binary.BigEndian.Uint16(ip[6:]))&t.dfKeep | t.dfSet
		var id uint64
		if frag == 0 { // DFClear, or DFCopy of a clear bit
			id = uint64(uint16(t.id.Add(1)))
		}
		*(*[64]byte)(frame[off-64 : off]) = t.tmpl64
		acc := t.ipBase + uint64(tos) + tl + id + frag + uint64(ttl)<<8
		// Only the fields that vary go in, each with a store of its own: the template
		// holds version/IHL, protocol, the UDP destination port and its zero
		// checksum already, and separate narrow stores take fewer instructions than
		// shifting the fields into words.
		o := start + t.l3
		iph := (*[12]byte)(frame[o : o+12])
		iph[1] = tos
		binary.BigEndian.PutUint16(iph[2:], uint16(tl))
		binary.BigEndian.PutUint32(iph[4:], uint32(id<<16|frag))
		iph[8] = ttl
		binary.BigEndian.PutUint16(iph[10:], ^fold32(acc))
		o = start + t.l4
		if t.udp {
			port := uint16(t.portLo + uint32(uint64(hash)*uint64(t.portSp)>>32))
			ulen := uint16(plen + hl - t.l4)
			u := (*[8]byte)(frame[o : o+8])
			binary.BigEndian.PutUint16(u[0:], port)
			binary.BigEndian.PutUint16(u[4:], ulen)
		} else if t.gre {
			g := (*[4]byte)(frame[o : o+4])
			binary.BigEndian.PutUint16(g[2:], EtherIPv4)
		}
		for _, o := range t.ttlOff[:t.nCopy] {
			frame[start+int(o)] = lttl
		}
		pk.Off = uint16(start)
		pk.Len = uint16(plen + hl)
	}
	keep(sink)
	return len(pkts)
}

// encapFast6 is encapFastRun for an outer IPv6 header.
func (t *Tunnel) encapFast6(pool *pmd.Pool, pkts []pmd.Pkt) int {
	var sink byte
	for i := range pkts {
		sink += touch(pool, pkts, i)
		frame, pk := pool.Bytes(pkts[i].Frame), &pkts[i]
		off, plen, hl, ioff := int(pk.Off), int(pk.Len), t.n, int(t.ioff)
		if off < t.fastOff || pk.Flags&(pmd.PktCsumPartial|pmd.PktMore) != 0 || plen < ioff+24 || plen > t.maxPlen || off+plen > len(frame) {
			keep(sink)
			return i
		}
		if t.innerL2 {
			if e := (*[14]byte)(frame[off : off+14]); e[12] != 0x08 || e[13] != 0 {
				keep(sink)
				return i
			}
		}
		ip := (*[24]byte)(frame[off+ioff : off+ioff+24])
		if ip[0] != 0x45 {
			keep(sink)
			return i
		}
		hash := pk.Hash
		if pk.Flags&pmd.PktHashValid == 0 { // the flow label takes it whatever the type
			// FlowHash's IPv4 case: the ports of TCP, UDP and SCTP unless a fragment.
			proto := ip[9]
			ports := uint64(binary.BigEndian.Uint32(ip[20:])) & portMask[proto]
			if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
				ports = 0
			}
			if t.hash.Symmetric {
				hash = hash4(uint64(binary.BigEndian.Uint32(ip[12:])), uint64(binary.BigEndian.Uint32(ip[16:])), proto,
					ports>>16, ports&0xffff, t.hash)
			} else {
				// hash4 without the ordering: the addresses are one big-endian word.
				h := mix(binary.BigEndian.Uint64(ip[12:])^t.hash.Seed, uint64(proto)<<32|ports)
				hash = uint32(h ^ h>>32)
			}
			pk.Hash = hash
			pk.Flags |= pmd.PktHashValid
		}
		lttl := ip[8]
		ttl, tos := lttl&t.ttlKeep|t.ttlSet, ip[1]&t.tosKeep|t.tosSet
		start := off - hl
		tl := uint64(plen + hl - t.l3)
		// The block encapSlow writes, so that the headroom ends up alike too.
		if hl <= 64 {
			*(*[64]byte)(frame[off-64 : off]) = t.tmpl64
		} else {
			*(*[128]byte)(frame[off-128 : off]) = t.tmpl128
		}
		// Version, traffic class, flow label (RFC 6438), payload length, next
		// header (the template's), hop limit.
		// The next header is the template's.
		o := start + t.l3
		iph := (*[8]byte)(frame[o : o+8])
		binary.BigEndian.PutUint32(iph[0:], 6<<28|uint32(tos)<<20|hash&0xfffff)
		binary.BigEndian.PutUint16(iph[4:], uint16(tl-40))
		iph[7] = ttl
		o = start + t.l4
		if t.udp {
			port := uint16(t.portLo + uint32(uint64(hash)*uint64(t.portSp)>>32))
			ulen := uint16(plen + hl - t.l4)
			// udp6Checksum's cases, the full sum and innerSum4's common case without
			// its call.
			var c uint16
			switch t.csum6 {
			case Csum6Full:
				c = t.udp6Finish(sum(0, frame[off:off+plen]), lttl, port, ulen)
			case Csum6Inner:
				if ps, ok := t.innerSum4(frame, off, plen, ioff); ok {
					c = t.udp6Finish(ps, lttl, port, ulen)
				} else {
					c = t.udp6Checksum(frame[off:off+plen:off+plen], 4, ioff, lttl, port, ulen)
				}
			}
			u := (*[8]byte)(frame[o : o+8])
			binary.BigEndian.PutUint16(u[0:], port)
			binary.BigEndian.PutUint16(u[4:], ulen)
			binary.BigEndian.PutUint16(u[6:], c)
		} else if t.gre {
			g := (*[4]byte)(frame[o : o+4])
			binary.BigEndian.PutUint16(g[2:], EtherIPv4)
		}
		for _, o := range t.ttlOff[:t.nCopy] {
			frame[start+int(o)] = lttl
		}
		pk.Off = uint16(start)
		pk.Len = uint16(plen + hl)
	}
	keep(sink)
	return len(pkts)
}

// innerSum4 is innerSum, plus the Ethernet header's sum for an L2 payload, for
// encapFastRun's payloads with Csum6Inner: an option-less IPv4 packet at ioff that
// fills the payload, is no fragment, and is TCP or UDP with a checksum and a UDP
// length that fills the IP payload. It reports
// false for anything else, which udp6Checksum then handles.
func (t *Tunnel) innerSum4(frame []byte, off, plen, ioff int) (uint64, bool) {
	if t.csum6 != Csum6Inner || plen < ioff+28 {
		return 0, false
	}
	ip := (*[28]byte)(frame[off+ioff : off+ioff+28])
	tl, proto := int(binary.BigEndian.Uint16(ip[2:])), ip[9]
	if tl != plen-ioff || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 ||
		!((proto == 6 && tl >= 40) || (proto == 17 && tl >= 28 && binary.BigEndian.Uint16(ip[26:]) != 0 &&
			int(binary.BigEndian.Uint16(ip[24:])) == tl-20)) {
		return 0, false
	}
	// The header sums to zero; the segment to minus its pseudo-header (addresses,
	// protocol, length), as innerSum explains. The addresses' four words are summed
	// two at a time in 32-bit lanes. The pseudo-header sum ps is at most six words,
	// below 6·0xffff, so 16·0xffff - ps, positive and congruent to -ps modulo 0xffff,
	// negates it without folding it first.
	a := binary.BigEndian.Uint64(ip[12:])
	a = a&0x0000ffff0000ffff + a>>16&0x0000ffff0000ffff
	ps := (uint64(proto) + uint64(tl-20)) + (a>>32 + a&0xffffffff)
	acc := 16*0xffff - ps
	if ioff > 0 {
		e := (*[14]byte)(frame[off : off+14])
		acc += uint64(binary.BigEndian.Uint16(e[0:])) + uint64(binary.BigEndian.Uint16(e[2:])) +
			uint64(binary.BigEndian.Uint16(e[4:])) + uint64(binary.BigEndian.Uint16(e[6:])) +
			uint64(binary.BigEndian.Uint16(e[8:])) + uint64(binary.BigEndian.Uint16(e[10:])) +
			uint64(binary.BigEndian.Uint16(e[12:]))
	}
	return acc, true
}

// prepare does Encap's rarer work on the payload before the headers go on: it
// finishes a partial transport checksum and inserts the inner VLAN tag. It returns the
// payload's new offset and length.
func (t *Tunnel) prepare(frame []byte, off, plen int, pk *pmd.Pkt) (int, int, error) {
	if t.vlan != 0 && plen < 14 {
		return 0, 0, ErrNotTaggable
	}
	if pk.Flags&pmd.PktCsumPartial != 0 {
		// Without an IP header where innerIP looks, ioff is 0: an Ethernet payload's
		// MAC addresses could pass for an IPv4 header, and a "checksum" would land in
		// the frame.
		ver, ioff := innerIP(frame[off:off+plen:off+plen], t.innerL2)
		if ver == 0 || !finishPartial(frame[off+ioff:off+plen:off+plen]) {
			return 0, 0, ErrPartialCsum
		}
		pk.Flags &^= pmd.PktCsumPartial
	}
	if t.vlan != 0 {
		// An 802.1Q tag after the inner MAC addresses (IEEE 802.1Q §9.3).
		off -= 4
		plen += 4
		copy(frame[off:off+12], frame[off+4:off+16])
		binary.BigEndian.PutUint16(frame[off+12:], EtherVLAN)
		binary.BigEndian.PutUint16(frame[off+14:], t.vlan)
	}
	return off, plen, nil
}

// labelTTL copies ttl into the label entries that follow the payload's TTL (RFC 3443
// §3.5, the uniform model).
func (t *Tunnel) labelTTL(h []byte, ttl uint8) {
	l := h[t.labels:]
	for i := 0; i < MaxLabels && 4*i+3 < len(l); i++ {
		if t.copyTTL&(1<<i) != 0 {
			l[4*i+3] = ttl
		}
	}
}

// udp6Checksum returns the UDP checksum under an IPv6 outer header (RFC 8200 §8.1):
// pseudo-header, UDP header and payload, the template's share being in udpBase.
func (t *Tunnel) udp6Checksum(payload []byte, ver, ioff int, lttl uint8, port, ulen uint16) uint16 {
	var ps uint64
	ok := false
	if t.csum6 == Csum6Inner && ver != 0 {
		ps, ok = innerSum(payload[ioff:])
		if ok && ioff > 0 {
			ps += sum(0, payload[:ioff])
		}
	}
	if !ok {
		ps = sum(0, payload)
	}
	return t.udp6Finish(ps, lttl, port, ulen)
}

// udp6Finish returns the UDP checksum under an IPv6 outer header given ps, the
// payload's sum: the template's share is in udpBase, the UDP length counts twice (in
// the pseudo-header and the UDP header), and each label TTL copied from the payload
// once. ps must be below 2^24, as the sums of sum, innerSum and innerSum4 are (a few
// 16-bit words each): the whole is then below 2^32 and fold32's two steps fold it,
// where fold's four would lengthen the chain of dependent operations every packet
// waits on.
func (t *Tunnel) udp6Finish(ps uint64, lttl uint8, port, ulen uint16) uint16 {
	c := ^fold32(t.udpBase + 2*uint64(ulen) + uint64(port) + t.nCopy*uint64(lttl) + ps)
	if c == 0 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	return c
}

// EncapBatch encapsulates every packet of pkts in place and returns how many it did;
// the first failure stops it, leaving pkts[n:] unchanged, and is returned. The
// EncapStage function drops failures instead and goes on.
func (t *Tunnel) EncapBatch(pool *pmd.Pool, pkts []pmd.Pkt) (int, error) {
	for i := 0; i < len(pkts); i++ {
		if t.fast {
			if i += t.encapFastRun(pool, pkts[i:]); i == len(pkts) {
				break
			}
		}
		if err := t.encapSlow(pool.Bytes(pkts[i].Frame), &pkts[i], nil); err != nil {
			return i, err
		}
	}
	return len(pkts), nil
}
