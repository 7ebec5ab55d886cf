package encap

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/dpkit/dpkit/pmd"
)

// Reason says why a frame was not decapsulated (or, for the Drop*Encap reasons, not
// encapsulated by a stage function). OK (0) means it was.
type Reason uint8

const (
	OK               Reason = iota
	DropTruncated           // shorter than its headers say, or an Ethernet payload shorter than its header
	DropBadEthertype        // not IPv4 or IPv6 (after at most two VLAN tags): not tunnel traffic
	DropBadVersion          // IP version field does not match the ethertype (outer, or a GRE payload's against its protocol type)
	DropBadHeader           // malformed header: IHL, lengths
	DropBadChecksum         // outer IPv4 header, UDP or GRE checksum wrong
	DropFragment            // outer IPv4 fragment or IPv6 fragment header (tunnels are not reassembled)
	DropTTLExpired          // outer TTL/hop limit or an MPLS label TTL of zero
	DropUnknownPort         // UDP to a port that is no tunnel's: not tunnel traffic
	DropUnknownProto        // neither UDP nor GRE: not tunnel traffic
	DropBadVXLAN            // VXLAN flags without the VNI bit (RFC 7348 §5)
	DropBadMPLS             // no bottom of stack within MaxLabels entries
	DropBadGRE              // GRE version, RFC 1701 routing or recursion flags, or an unknown protocol type
	DropNotLocal            // outer destination is not one of the local addresses: not tunnel traffic
	DropOptions             // IPv6 extension headers before the UDP or GRE header
	DropECN                 // outer CE over a not-ECT inner packet (RFC 6040 §4.2), with DecapOptions.ECN
	DropNoTunnel            // EncapStage: the packet's Meta names no tunnel
	DropNoHeadroom          // EncapStage: ErrNoHeadroom
	DropTooLong             // EncapStage: ErrTooLong, ErrNotTaggable, ErrPartialCsum or ErrChain; Decap, the batch and stage calls: a chained packet (pmd.PktMore), which they do not take
	DropMTU                 // EncapStage: ErrMTU
	NumReasons
)

var reasonNames = [NumReasons]string{"ok", "truncated", "bad_ethertype", "bad_version", "bad_header",
	"bad_checksum", "fragment", "ttl_expired", "unknown_port", "unknown_proto", "bad_vxlan", "bad_mpls",
	"bad_gre", "not_local", "options", "ecn_not_ect", "no_tunnel", "no_headroom", "too_long", "mtu"}

func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// NotTunnel reports whether the frame was well formed but simply not tunnel traffic
// for this node (another ethertype, protocol, UDP port or destination): ARP, ND,
// routing protocols and the like, which a vRouter hands to its exception path rather
// than counting as errors.
func (r Reason) NotTunnel() bool {
	return r == DropBadEthertype || r == DropUnknownProto || r == DropUnknownPort || r == DropNotLocal
}

// Result describes a decapsulated frame.
type Result struct {
	Type Type
	// VNI of a VXLAN frame.
	VNI uint32
	// Labels of an MPLS frame, outermost first, NLabels of them.
	Labels  [MaxLabels]Label
	NLabels int
	// Src is the outer source address (the remote tunnel endpoint).
	Src netip.Addr
	// OuterLen is how many bytes were stripped from the front, InnerLen how many
	// remain: the end of the outer datagram, without link padding.
	OuterLen, InnerLen int
	// InnerIPVersion is 4 or 6 for an IP payload (the first nibble), 0 otherwise. For
	// VXLAN and L2 MPLS the payload is Ethernet and this is 0.
	InnerIPVersion int
	// InnerVLAN is the VLAN id of a VXLAN frame's inner 802.1Q tag, 0 if untagged or
	// priority-tagged; with DecapOptions.StripInnerVLAN the tag (a priority tag too)
	// has been removed.
	InnerVLAN uint16
	// TOS is the outer header's DSCP and ECN byte (IPv4 TOS, IPv6 traffic class),
	// for an egress that applies RFC 6040 §4.2.
	TOS uint8
}

// Label returns the bottom-of-stack label (the one that names the VRF or interface in
// a single-label L3 VPN), or 0 for VXLAN.
func (r *Result) Label() uint32 {
	if r.NLabels == 0 {
		return 0
	}
	return r.Labels[r.NLabels-1].Label
}

// Key returns the frame's Key: its type with the VNI or bottom label.
func (r *Result) Key() uint32 {
	if r.Type == VXLAN {
		return Key(VXLAN, r.VNI)
	}
	return Key(r.Type, r.Label())
}

// Key packs a tunnel type and a VNI or label into one uint32, the form the stage
// functions put in pmd.Pkt.Meta: the type in the top 8 bits, the id in the low 24.
func Key(t Type, id uint32) uint32 { return uint32(t)<<24 | id&0xffffff }

// KeyType returns the tunnel type of a Key.
func KeyType(k uint32) Type { return Type(k >> 24) }

// KeyID returns the VNI or label of a Key.
func KeyID(k uint32) uint32 { return k & 0xffffff }

// DecapOptions configure a Decapper. The zero value accepts tunnel frames to any
// destination and verifies only IPv4 header and GRE checksums.
type DecapOptions struct {
	// Local restricts accepted outer destinations to these addresses; empty accepts
	// any (the XDP program or the NIC already steered the traffic).
	Local []netip.Addr
	// VerifyUDPChecksum checks non-zero UDP checksums (the payload is read once more);
	// packets marked pmd.PktCsumValid skip it. IPv4 header and GRE checksums are
	// always checked.
	VerifyUDPChecksum bool
	// MPLSPayloadEthernet says MPLS payloads are Ethernet frames (an L2 VPN) rather
	// than IP packets.
	MPLSPayloadEthernet bool
	// StripInnerVLAN removes an 802.1Q tag from a VXLAN frame's inner Ethernet header
	// (its id is in Result.InnerVLAN).
	StripInnerVLAN bool
	// InnerFlowHash makes Decap set pk.Hash to the FlowHash of the inner packet (with
	// Hash) and mark it valid, for ECMP or spreading after decapsulation. Without it
	// Decap clears pmd.PktHashValid: a hash a NIC computed over the outer headers does
	// not describe the inner flow.
	InnerFlowHash bool
	Hash          HashOptions
	// ECN applies RFC 6040 §4.2 to an inner IP header: congestion marked on the outer
	// header (CE) is copied inward, ECT(1) over ECT(0) too, and a CE outer header over
	// a not-ECT inner packet is dropped (DropECN). The inner IPv4 header checksum is
	// updated incrementally (RFC 1624).
	ECN bool
}

// Decapper classifies frames and strips tunnel headers, counting each outcome.
//
// A Decapper belongs to one goroutine. Its counts live in that goroutine's memory and
// are published for Stats, which any goroutine may call, by Flush and at the end of
// each batch call; Decap alone does not publish.
type Decapper struct {
	o       DecapOptions
	local4  []uint32
	local6  [][16]byte
	anyDst  bool
	count   [NumReasons]uint64
	flushed [NumReasons]uint64
	pub     [NumReasons]atomic.Uint64
}

// NewDecapper returns a Decapper.
func NewDecapper(o DecapOptions) *Decapper {
	d := &Decapper{o: o, anyDst: len(o.Local) == 0}
	d.o.Local = append([]netip.Addr(nil), o.Local...)
	for _, a := range o.Local {
		if a.Is4() || a.Is4In6() {
			b := a.Unmap().As4()
			d.local4 = append(d.local4, binary.BigEndian.Uint32(b[:]))
		} else {
			d.local6 = append(d.local6, a.As16())
		}
	}
	return d
}

// DecapStats are a Decapper's counters.
type DecapStats struct {
	// Decapsulated counts frames stripped. ClassifyStage counts only the frames it
	// refuses: those it keeps are counted by the Decap that follows.
	Decapsulated uint64
	// Drops counts refusals by reason; Drops[OK] is unused.
	Drops [NumReasons]uint64
}

// Stats returns the counters as of the owner's last Flush or batch call. It is safe
// for concurrent use.
func (d *Decapper) Stats() DecapStats {
	var s DecapStats
	s.Decapsulated = d.pub[OK].Load()
	for i := 1; i < len(s.Drops); i++ {
		s.Drops[i] = d.pub[i].Load()
	}
	return s
}

// Flush publishes the owner's counts for Stats: one atomic store per counter that
// changed. The batch and stage calls flush on their way out.
func (d *Decapper) Flush() {
	for i := range d.count {
		if d.count[i] != d.flushed[i] {
			d.flushed[i] = d.count[i]
			d.pub[i].Store(d.count[i])
		}
	}
}

// Decap classifies pk's frame and, if it is a tunnel frame, strips the outer headers
// in place (and link padding after the outer datagram), fills r and returns OK.
// Otherwise it counts and returns the reason and leaves pk and its data unchanged.
// A chain's segment with pmd.PktMore is refused with DropTooLong (DecapChain takes
// chains).
func (d *Decapper) Decap(pool *pmd.Pool, pk *pmd.Pkt, r *Result) Reason {
	if n, _ := d.decapFastRun(pool, one(pk), oneResult(r), 0, 0); n == 1 {
		return OK
	}
	return d.decapSlow(pool, pk, r)
}

// decapSlow is Decap for any frame.
func (d *Decapper) decapSlow(pool *pmd.Pool, pk *pmd.Pkt, r *Result) Reason {
	if pk.Flags&pmd.PktMore != 0 {
		d.count[DropTooLong]++
		return DropTooLong
	}
	frame := pool.Bytes(pk.Frame)
	off, n := int(pk.Off), int(pk.Len)
	if off+n > len(frame) {
		d.count[DropTruncated]++
		return DropTruncated
	}
	b := frame[off : off+n : off+n] // capped: a read past the packet panics rather than reading the frame
	why := d.Classify(b, pk.Flags&pmd.PktCsumValid != 0, r)
	if why != OK {
		d.count[why]++
		return why
	}
	if d.o.ECN && r.TOS&3 != 0 {
		if why := d.ecn(b[r.OuterLen:r.OuterLen+r.InnerLen], r); why != OK {
			d.count[why]++
			return why
		}
	}
	d.count[OK]++
	d.strip(frame, pk, r, off+r.OuterLen+r.InnerLen)
	return OK
}

// strip moves pk past the outer headers r describes (and the inner VLAN tag, with
// StripInnerVLAN), to end in its frame, and sets or clears its flow hash. It clears
// pmd.PktCsumValid: a device's DATA_VALID vouches for one checksum, the outermost
// (Linux's CHECKSUM_UNNECESSARY at csum_level 0), and a VXLAN or MPLS-over-UDP
// datagram over IPv4 often has none at all; nothing has checked the inner packet's.
func (d *Decapper) strip(frame []byte, pk *pmd.Pkt, r *Result, end int) {
	pk.Flags &^= pmd.PktCsumValid
	off := int(pk.Off) + r.OuterLen
	// The tag, not its id, says what to strip: a priority tag (VLAN id 0, IEEE 802.1Q
	// §9.6) has InnerVLAN 0 and goes too.
	if d.o.StripInnerVLAN && r.Type == VXLAN && r.InnerLen >= 18 &&
		binary.BigEndian.Uint16(frame[off+12:]) == EtherVLAN {
		copy(frame[off+4:off+16], frame[off:off+12])
		off += 4
		r.OuterLen += 4
		r.InnerLen -= 4
	}
	pk.Off, pk.Len = uint16(off), uint16(end-off)
	if d.o.InnerFlowHash {
		l2 := r.Type == VXLAN || (r.NLabels > 0 && d.o.MPLSPayloadEthernet)
		pk.Hash = FlowHash(frame[off:end:end], l2, d.o.Hash)
		pk.Flags |= pmd.PktHashValid
	} else {
		pk.Flags &^= pmd.PktHashValid
	}
}

// ecn applies the outer ECN field in r.TOS to the inner packet p (RFC 6040 §4.2,
// the normal mode's decapsulation table).
func (d *Decapper) ecn(p []byte, r *Result) Reason {
	l2 := r.Type == VXLAN || (r.NLabels > 0 && d.o.MPLSPayloadEthernet)
	ver, ioff := innerIP(p, l2)
	if ver == 0 {
		return OK // not IP: nothing to mark
	}
	ip := p[ioff:]
	var in uint8
	if ver == 4 {
		in = ip[1] & 3
	} else {
		in = ip[1] >> 4 & 3
	}
	out := r.TOS & 3
	var want uint8
	switch {
	case out == 3 && in == 0:
		return DropECN
	case out == 3:
		want = 3
	case out == 1 && in == 2: // ECT(1) over ECT(0)
		want = 1
	default:
		return OK
	}
	if ver == 4 {
		old := binary.BigEndian.Uint16(ip)
		ip[1] = ip[1]&^3 | want
		// RFC 1624 eqn 3: HC' = ~(~HC + ~m + m').
		hc := uint64(^binary.BigEndian.Uint16(ip[10:])) + uint64(^old) + uint64(binary.BigEndian.Uint16(ip))
		binary.BigEndian.PutUint16(ip[10:], ^fold32(hc))
	} else {
		ip[1] = ip[1]&^0x30 | want<<4
	}
	return OK
}

// DecapBatch decapsulates pkts in place. Those that succeed move to the front, in
// order, with their results in res[:n]; the others are handed to drop with their
// reason (drop takes ownership of their frames). It returns n and flushes the counts.
// len(res) must be at least len(pkts). A chained packet (pmd.PktMore) is refused
// whole: each of its segments goes to drop with DropTooLong, and it counts once.
func (d *Decapper) DecapBatch(pool *pmd.Pool, pkts []pmd.Pkt, res []Result, drop DropFunc) int {
	res = res[:len(pkts)]
	n := 0
	for i := 0; i < len(pkts); i++ {
		if n, i = d.decapFastRun(pool, pkts, res, n, i); i == len(pkts) {
			break
		}
		if pkts[i].Flags&pmd.PktMore != 0 {
			d.count[DropTooLong]++
			i = refuseChain(pkts, i, DropTooLong, drop)
			continue
		}
		if w := d.decapSlow(pool, &pkts[i], &res[n]); w != OK {
			drop(&pkts[i], w)
			continue
		}
		if n != i { // copying a Pkt just written field by field stalls store forwarding
			pkts[n] = pkts[i]
		}
		n++
	}
	d.Flush()
	return n
}

// decapFastRun is Decap's common case written with fixed-size views of the outer
// headers, so that it has few bounds checks and branches: an untagged Ethernet frame
// with an option-less IPv4 header or an IPv6 header without extension headers,
// carrying VXLAN (no inner VLAN tag), MPLS over UDP or GRE without GRE options, that
// Decap would accept without a UDP checksum to verify or an ECN mark to apply. It
// decapsulates pkts from i on, moving each to pkts[n] with its result in res[n],
// until a packet it does not take, which it leaves unchanged for decapSlow, and
// returns the new n and i. It counts what it took.
func (d *Decapper) decapFastRun(pool *pmd.Pool, pkts []pmd.Pkt, res []Result, n, i int) (int, int) {
	var sink byte
	n0 := n
	for ; i < len(pkts) && n < len(res); i++ {
		sink += touch(pool, pkts, i)
		pk := &pkts[i]
		frame := pool.Bytes(pk.Frame)
		off, plen := int(pk.Off), int(pk.Len)
		if plen < 50 || off+plen > len(frame) || pk.Flags&pmd.PktMore != 0 {
			break
		}
		h := (*[34]byte)(frame[off : off+34])
		r := &res[n]
		var l4, end int // the transport header's offset, the outer datagram's end
		var proto byte
		switch {
		case h[12] == 0x08 && h[13] == 0 && h[14] == 0x45:
			total := int(binary.BigEndian.Uint16(h[16:]))
			if total < 28 || total > plen-14 || binary.BigEndian.Uint16(h[20:])&0x3fff != 0 || h[22] == 0 ||
				!ip4HeaderOK(h[14:34]) || (!d.anyDst && !has4(d.local4, binary.BigEndian.Uint32(h[30:]))) ||
				(d.o.ECN && h[15]&3 != 0) {
				goto slow
			}
			r.Src = netip.AddrFrom4([4]byte(h[26:30]))
			r.TOS = h[15]
			l4, end, proto = 34, 14+total, h[23]
		case h[12] == 0x86 && h[13] == 0xdd && h[14]>>4 == 6 && plen >= 70:
			ip := (*[40]byte)(frame[off+14 : off+54])
			pl := int(binary.BigEndian.Uint16(ip[4:]))
			tos := uint8(binary.BigEndian.Uint16(ip[0:]) >> 4)
			proto = ip[6]
			if pl < 8 || 54+pl > plen || ip[7] == 0 || (proto != ProtoUDP && proto != ProtoGRE) ||
				(!d.anyDst && !has6(d.local6, ip[24:40])) || (d.o.ECN && tos&3 != 0) {
				goto slow
			}
			r.Src = netip.AddrFrom16([16]byte(ip[8:24]))
			r.TOS = tos
			l4, end = 54, 54+pl
		default:
			goto slow
		}
		r.VNI, r.NLabels, r.InnerIPVersion, r.InnerVLAN = 0, 0, 0, 0
		{
			var p int // the inner packet's offset
			u := (*[16]byte)(frame[off+l4 : off+l4+16])
			switch proto {
			case ProtoUDP:
				ulen := int(binary.BigEndian.Uint16(u[4:]))
				if ulen < 8 || ulen > end-l4 ||
					(binary.BigEndian.Uint16(u[6:]) != 0 && d.o.VerifyUDPChecksum && pk.Flags&pmd.PktCsumValid == 0) {
					goto slow
				}
				end = l4 + ulen
				switch binary.BigEndian.Uint16(u[2:]) {
				case PortVXLAN:
					p = l4 + 16
					if ulen < 16 || u[8]&0x08 == 0 || end < p+14 {
						goto slow // no inner Ethernet header too
					}
					if e := (*[14]byte)(frame[off+p : off+p+14]); e[12] == 0x81 && e[13] == 0 {
						goto slow // an inner VLAN tag
					}
					r.Type, r.VNI = VXLAN, binary.BigEndian.Uint32(u[12:])>>8
				case PortMPLSoUDP:
					p, r.Type = l4+8, MPLSoUDP // the label stack, read below
				default:
					goto slow
				}
			case ProtoGRE:
				if binary.BigEndian.Uint16(u[0:]) != 0 || end < l4+4 {
					goto slow
				}
				switch binary.BigEndian.Uint16(u[2:]) {
				case EtherMPLS:
					p, r.Type = l4+4, MPLSoGRE // the label stack, read below
				case EtherIPv4:
					if end <= l4+4 || u[4]>>4 != 4 {
						goto slow // the payload's version must match (see classify)
					}
					p, r.Type = l4+4, GRE
				case EtherIPv6:
					if end <= l4+4 || u[4]>>4 != 6 {
						goto slow
					}
					p, r.Type = l4+4, GRE
				default:
					goto slow
				}
			default:
				goto slow
			}
			if r.Type == MPLSoUDP || r.Type == MPLSoGRE {
				// One label, the common case, inline; a stack through labels.
				if end < p+4 {
					goto slow
				}
				l := (*[4]byte)(frame[off+p : off+p+4])
				if v := binary.BigEndian.Uint32(l[:]); v&0x100 != 0 && uint8(v) != 0 {
					r.Labels[0] = Label{v >> 12, uint8(v>>9) & 7, uint8(v)}
					r.NLabels = 1
					p += 4
				} else if p = labelsN(frame[off:off+end], p, r); p == 0 {
					goto slow
				}
			}
			if r.NLabels > 0 && d.o.MPLSPayloadEthernet {
				if end < p+14 {
					goto slow // no inner Ethernet header
				}
			} else if r.Type != VXLAN && end > p {
				r.InnerIPVersion = int(frame[off+p] >> 4)
			}
			r.OuterLen, r.InnerLen = p, end-p
			pk.Off, pk.Len = uint16(off+p), uint16(end-p)
			pk.Flags &^= pmd.PktCsumValid // as strip
			if d.o.InnerFlowHash {
				l2 := r.Type == VXLAN || (r.NLabels > 0 && d.o.MPLSPayloadEthernet)
				pk.Hash = FlowHash(frame[off+p:off+end:off+end], l2, d.o.Hash)
				pk.Flags |= pmd.PktHashValid
			} else {
				pk.Flags &^= pmd.PktHashValid
			}
		}
		if n != i { // copying a Pkt just written field by field stalls store forwarding
			pkts[n] = *pk
		}
		n++
		continue
	slow:
		break
	}
	keep(sink)
	d.count[OK] += uint64(n - n0)
	return n, i
}

// labelsN is labels for decapFastRun: the inner offset after the stack at p in the
// datagram b, or 0 where labels refuses the stack.
func labelsN(b []byte, p int, r *Result) int {
	p, why := labels(b, p, r)
	if why != OK {
		return 0
	}
	return p
}

// Classify parses a frame without changing it or counting: r describes what Decap
// would strip. csumValid says a device already verified the UDP checksum. It reads
// only b.
func (d *Decapper) Classify(b []byte, csumValid bool, r *Result) Reason {
	return d.classify(b, len(b), csumValid, r, nil)
}

// pendingSum is a checksum over a chained datagram that classify began and its
// caller finishes over the later segments: acc holds the sum up to the end of the
// first segment, from is where it started (-1: no checksum to verify) and end where
// the datagram it covers ends.
type pendingSum struct {
	acc       uint64
	from, end int
}

// classify is Classify of a frame n bytes long whose first len(b) bytes are b: a
// chain's first segment when n > len(b). Then the outer headers must lie in b, and a
// checksum over the datagram cannot be finished here: classify leaves b's share in
// pend, which must not be nil then.
func (d *Decapper) classify(b []byte, n int, csumValid bool, r *Result, pend *pendingSum) Reason {
	r.Type, r.VNI, r.NLabels, r.InnerIPVersion, r.InnerVLAN = 0, 0, 0, 0, 0
	if pend != nil {
		pend.from = -1
	}
	if len(b) < 14 {
		return DropTruncated
	}
	et := binary.BigEndian.Uint16(b[12:])
	off := 14
	for i := 0; i < 2 && (et == EtherVLAN || et == EtherQinQ); i++ {
		if len(b) < off+4 {
			return DropTruncated
		}
		et = binary.BigEndian.Uint16(b[off+2:])
		off += 4
	}
	var proto byte
	var l4, end int // transport header offset, end of the IP datagram
	var ip4, ip6 []byte
	switch et {
	case EtherIPv4:
		ip := b[off:]
		if len(ip) < 20 {
			return DropTruncated
		}
		if ip[0]>>4 != 4 {
			return DropBadVersion
		}
		ihl := int(ip[0]&0xf) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || total < ihl {
			return DropBadHeader
		}
		if len(ip) < ihl || n-off < total {
			return DropTruncated
		}
		// Options are allowed (RFC 791); their bytes are checksummed and skipped.
		if ihl == 20 {
			if !ip4HeaderOK(ip) {
				return DropBadChecksum
			}
		} else if checksum(ip[:ihl]) != 0 {
			return DropBadChecksum
		}
		if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return DropFragment
		}
		if ip[8] == 0 {
			return DropTTLExpired
		}
		if !d.anyDst && !has4(d.local4, binary.BigEndian.Uint32(ip[16:])) {
			return DropNotLocal
		}
		r.Src = netip.AddrFrom4([4]byte(ip[12:16]))
		r.TOS = ip[1]
		proto, ip4 = ip[9], ip
		l4, end = off+ihl, off+total
	case EtherIPv6:
		ip := b[off:]
		if len(ip) < 40 {
			return DropTruncated
		}
		if ip[0]>>4 != 6 {
			return DropBadVersion
		}
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		if n-off < 40+plen {
			return DropTruncated // a jumbogram's zero length lands here too
		}
		if ip[7] == 0 {
			return DropTTLExpired
		}
		if !d.anyDst && !has6(d.local6, ip[24:40]) {
			return DropNotLocal
		}
		r.Src = netip.AddrFrom16([16]byte(ip[8:24]))
		r.TOS = uint8(binary.BigEndian.Uint16(ip) >> 4)
		proto, ip6 = ip[6], ip
		l4, end = off+40, off+40+plen
		switch proto {
		case 44: // RFC 8200 §4.5
			return DropFragment
		case 0, 43, 60, 51, 50, 135, 139, 140: // RFC 8200 §4 and the IANA list
			return DropOptions
		}
	default:
		return DropBadEthertype
	}
	// Ignore link padding.
	n = end
	if end < len(b) {
		b = b[:end]
	}
	p := l4
	switch proto {
	case ProtoUDP:
		if len(b) < p+8 {
			return DropTruncated
		}
		u := b[p : p+8]
		ulen := int(binary.BigEndian.Uint16(u[4:]))
		if ulen < 8 || ulen > n-p {
			return DropBadHeader
		}
		if n = p + ulen; n < len(b) {
			b = b[:n]
		}
		var vni uint32
		var typ Type
		switch binary.BigEndian.Uint16(u[2:]) {
		case PortVXLAN:
			if len(b) < p+16 {
				return DropTruncated
			}
			v := b[p+8 : p+16]
			if v[0]&0x08 == 0 {
				return DropBadVXLAN
			}
			typ, vni = VXLAN, binary.BigEndian.Uint32(v[4:])>>8
		case PortMPLSoUDP:
			typ = MPLSoUDP
		default:
			return DropUnknownPort
		}
		// A zero UDP checksum means none (IPv4), or over IPv6 a tunnel that chose not
		// to compute it (RFC 6935); like Linux with udp6zerocsumrx, accept it.
		if c := binary.BigEndian.Uint16(u[6:]); c != 0 && d.o.VerifyUDPChecksum && !csumValid {
			var ps uint64
			if ip4 != nil {
				ps = sum(ProtoUDP, ip4[12:20])
			} else {
				ps = sum(ProtoUDP, ip6[8:40])
			}
			if n > len(b) {
				pend.acc, pend.from, pend.end = sum(ps+uint64(ulen), b[p:]), p, n
			} else if fold(sum(ps+uint64(ulen), b[p:])) != 0xffff {
				return DropBadChecksum
			}
		}
		r.Type = typ
		if typ == VXLAN {
			r.VNI = vni
			p += 16
		} else {
			p += 8
			var why Reason
			if p, why = labels(b, p, r); why != OK {
				return why
			}
		}
	case ProtoGRE:
		if len(b) < p+4 {
			return DropTruncated
		}
		g := b[p:]
		flags := binary.BigEndian.Uint16(g)
		// RFC 2784 §2.3: of Reserved0 (bits 1-12), a receiver that does not implement
		// RFC 1701 discards a packet with any of bits 1-5 set and ignores bits 6-12.
		// Bits 2 and 3 are RFC 2890's key (K) and sequence number (S) flags, which are
		// handled here like the checksum (C, bit 0); that leaves RFC 1701's routing
		// (R, bit 1), strict source route (s, bit 4) and the top recursion control bit
		// (5) to refuse, with a version (bits 13-15, §2.3.1) other than 0.
		if flags&0x4c07 != 0 {
			return DropBadGRE
		}
		hl := 4 + 4*int(flags>>15) + 4*int(flags>>13&1) + 4*int(flags>>12&1)
		if len(g) < hl {
			return DropTruncated
		}
		if flags&0x8000 != 0 {
			if n > len(b) {
				pend.acc, pend.from, pend.end = sum(0, g), p, n
			} else if checksum(g) != 0 {
				return DropBadChecksum
			}
		}
		p += hl
		switch binary.BigEndian.Uint16(g[2:]) {
		case EtherMPLS:
			r.Type = MPLSoGRE
			var why Reason
			if p, why = labels(b, p, r); why != OK {
				return why
			}
		case EtherIPv4, EtherIPv6:
			// RFC 2784 §2.4: the protocol type is the payload's ethertype, so an
			// empty payload or an IP header of another version is malformed, as a
			// mismatch with the outer ethertype is. (A chain's payload may start
			// after its first segment, which DecapChain refuses anyway.)
			want := byte(4)
			if binary.BigEndian.Uint16(g[2:]) == EtherIPv6 {
				want = 6
			}
			if n <= p {
				return DropTruncated
			}
			if len(b) > p && b[p]>>4 != want {
				return DropBadVersion
			}
			r.Type = GRE
		default:
			return DropBadGRE
		}
	default:
		return DropUnknownProto
	}
	// RFC 7348 §5 and RFC 4448: an Ethernet payload has its header; Linux drops
	// a shorter one too (__iptunnel_pull_header pulls ETH_HLEN).
	if (r.Type == VXLAN || r.NLabels > 0 && d.o.MPLSPayloadEthernet) && n-p < 14 {
		return DropTruncated
	}
	switch {
	case r.Type == VXLAN:
		if len(b) >= p+18 && binary.BigEndian.Uint16(b[p+12:]) == EtherVLAN {
			r.InnerVLAN = binary.BigEndian.Uint16(b[p+14:]) & 0xfff
		}
	case r.NLabels > 0 && d.o.MPLSPayloadEthernet:
	case len(b) > p:
		r.InnerIPVersion = int(b[p] >> 4)
	}
	r.OuterLen, r.InnerLen = p, n-p
	return OK
}

// labels reads an MPLS label stack (RFC 3032) at p up to its bottom entry.
func labels(b []byte, p int, r *Result) (int, Reason) {
	for {
		if len(b) < p+4 {
			return p, DropTruncated
		}
		if r.NLabels == MaxLabels {
			return p, DropBadMPLS
		}
		v := binary.BigEndian.Uint32(b[p:])
		if uint8(v) == 0 {
			return p, DropTTLExpired
		}
		r.Labels[r.NLabels] = Label{Label: v >> 12, TC: uint8(v>>9) & 7, TTL: uint8(v)}
		r.NLabels++
		p += 4
		if v&0x100 != 0 {
			return p, OK
		}
	}
}

func has4(s []uint32, a uint32) bool {
	for _, v := range s {
		if v == a {
			return true
		}
	}
	return false
}

func has6(s [][16]byte, a []byte) bool {
	k := [16]byte(a)
	for i := range s {
		if k == s[i] {
			return true
		}
	}
	return false
}
