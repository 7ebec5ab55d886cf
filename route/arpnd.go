package route

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Responder answers ARP requests (RFC 826) and IPv6 neighbour
// solicitations (RFC 4861) for the addresses the vRouter owns, typically
// the gateway address of each pod network. Answer methods are lock-free,
// never allocate and may run on any number of goroutines; Add and Remove
// are serialised by a mutex and publish a new immutable address map.
type Responder struct {
	owned atomic.Pointer[map[netip.Addr]MAC]
	mu    sync.Mutex
}

// Add makes the responder answer for addr with mac.
// An IPv4-mapped IPv6 address is owned as the IPv4 address (ARP).
func (r *Responder) Add(addr netip.Addr, mac MAC) error {
	if !addr.IsValid() || addr.Zone() != "" {
		return ErrBadPrefix
	}
	// check the address that will be owned: ::ffff:0.0.0.0 is not
	// IsUnspecified, but owning it would answer ARP for 0.0.0.0
	addr = addr.Unmap()
	if addr.IsMulticast() || addr.IsUnspecified() {
		return ErrBadPrefix
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[netip.Addr]MAC{}
	if old := r.owned.Load(); old != nil {
		for a, v := range *old {
			m[a] = v
		}
	}
	m[addr] = mac
	r.owned.Store(&m) // release; pairs with the Load in lookup
	return nil
}

// Remove stops answering for addr; it reports whether addr was owned.
func (r *Responder) Remove(addr netip.Addr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.owned.Load()
	if old == nil {
		return false
	}
	if _, ok := (*old)[addr.Unmap()]; !ok {
		return false
	}
	m := map[netip.Addr]MAC{}
	for a, v := range *old {
		if a != addr.Unmap() {
			m[a] = v
		}
	}
	r.owned.Store(&m)
	return true
}

func (r *Responder) lookup(a netip.Addr) (MAC, bool) {
	m := r.owned.Load()
	if m == nil {
		return MAC{}, false
	}
	mac, ok := (*m)[a]
	return mac, ok
}

const (
	etherTypeARP  = 0x0806
	etherTypeIPv6 = 0x86dd
	etherTypeVLAN = 0x8100
	etherTypeQinQ = 0x88a8
)

// l2 returns the offset of the L3 header and its EtherType, skipping up to
// two VLAN tags (802.1Q / 802.1ad), which stay in place in the reply.
func l2(frame []byte) (int, uint16, bool) {
	off := 12
	for tags := 0; ; tags++ {
		if len(frame) < off+2 {
			return 0, 0, false
		}
		et := binary.BigEndian.Uint16(frame[off:])
		if (et == etherTypeVLAN || et == etherTypeQinQ) && tags < 2 {
			off += 4
			continue
		}
		return off + 2, et, true
	}
}

// AnswerARP turns an ARP request for an owned IPv4 address, held in frame
// (an Ethernet frame, optionally VLAN tagged), into the ARP reply in place;
// send frame back out of the port it came in on. Frame length is unchanged.
// Errors: ErrShortFrame, ErrNotARPRequest (not an Ethernet/IPv4 ARP
// request, or a gratuitous announcement), ErrNotOwned. On error frame is
// unchanged.
func (r *Responder) AnswerARP(frame []byte) error {
	return r.AnswerARPProxy(frame, nil)
}

// Proxy decides whether a router answers for an address it does not own: for one
// it routes elsewhere, say, so that hosts on one subnet spread over several nodes
// reach each other through it (proxy ARP, RFC 1027; proxy neighbour
// advertisements, RFC 4861 §7.2.8). It returns the MAC to answer with. It runs on
// the answering goroutine and must not allocate to keep answers allocation-free.
type Proxy func(target netip.Addr) (MAC, bool)

// AnswerARPProxy is AnswerARP that, for a target the responder does not own, asks
// proxy (when not nil) and answers with the MAC it returns.
func (r *Responder) AnswerARPProxy(frame []byte, proxy Proxy) error {
	off, et, ok := l2(frame)
	if !ok || len(frame) < off+28 {
		return ErrShortFrame
	}
	if et != etherTypeARP {
		return ErrNotARPRequest
	}
	a := frame[off:][:28]
	// htype Ethernet(1), ptype IPv4, hlen 6, plen 4, op request(1)
	if binary.BigEndian.Uint16(a[0:]) != 1 || binary.BigEndian.Uint16(a[2:]) != 0x0800 ||
		a[4] != 6 || a[5] != 4 || binary.BigEndian.Uint16(a[6:]) != 1 {
		return ErrNotARPRequest
	}
	sha, spa, tpa := a[8:14], a[14:18], a[24:28]
	if string(spa) == string(tpa) || sha[0]&1 != 0 {
		return ErrNotARPRequest // announcement, or a multicast sender
	}
	mac, ok := r.lookup(netip.AddrFrom4([4]byte(tpa)))
	if !ok && proxy != nil {
		mac, ok = proxy(netip.AddrFrom4([4]byte(tpa)))
	}
	if !ok {
		return ErrNotOwned
	}
	var target [4]byte
	copy(target[:], tpa)
	copy(frame[0:6], sha)                // Ethernet destination: the requester
	copy(frame[6:12], mac[:])            // Ethernet source: us
	binary.BigEndian.PutUint16(a[6:], 2) // op reply
	copy(a[18:24], sha)                  // tha
	copy(a[24:28], spa)                  // tpa
	copy(a[8:14], mac[:])                // sha
	copy(a[14:18], target[:])            // spa
	return nil
}

const (
	icmp6NS      = 135
	icmp6NA      = 136
	ndOptSrcLL   = 1
	ndOptTgtLL   = 2
	naReplyICMP  = 24 + 8 // NA header + target link-layer option
	ipv6HdrLen   = 40
	protoICMPv6  = 58
	naFlagRouter = 0x80
	naFlagSolic  = 0x40
	naFlagOvr    = 0x20
)

var solicitedNode = netip.MustParsePrefix("ff02::1:ff00:0/104")

// AnswerNS turns a neighbour solicitation for an owned IPv6 address into a
// neighbour advertisement in frame's storage and returns the reply
// (frame[:n] for the reply length n, which may exceed len(frame) but never
// cap(frame): pass a buffer with room, e.g. a full packet buffer).
// The solicitation is validated as RFC 4861 §7.1.1 requires (hop limit
// 255, valid checksum, code 0, target not multicast, options of non-zero
// length, unspecified source only towards a solicited-node address and
// without a source link-layer option). The reply follows §7.2.4: to the
// soliciting node (Solicited flag) or, for DAD probes, to all-nodes; it
// carries the Router and Override flags and a target link-layer option.
// On error frame is unchanged.
func (r *Responder) AnswerNS(frame []byte) ([]byte, error) {
	return r.AnswerNSProxy(frame, nil)
}

// AnswerNSProxy is AnswerNS that, for a target the responder does not own, asks
// proxy (when not nil) and answers with the MAC it returns. A proxied
// advertisement has the Override flag clear (RFC 4861 §7.2.8), so that it never
// replaces a cache entry the target's own advertisement made.
func (r *Responder) AnswerNSProxy(frame []byte, proxy Proxy) ([]byte, error) {
	off, et, ok := l2(frame)
	if !ok || len(frame) < off+ipv6HdrLen+24 {
		return nil, ErrShortFrame
	}
	if et != etherTypeIPv6 {
		return nil, ErrNotSolicit
	}
	ip := frame[off:]
	plen := int(binary.BigEndian.Uint16(ip[4:]))
	if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || ip[7] != 255 || plen < 24 || len(ip) < ipv6HdrLen+plen {
		return nil, ErrNotSolicit
	}
	icmp := ip[ipv6HdrLen:][:plen]
	src, dst := netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	if icmp[0] != icmp6NS || icmp[1] != 0 || icmp6Checksum(ip[8:40], icmp) != 0 {
		return nil, ErrNotSolicit
	}
	target := netip.AddrFrom16([16]byte(icmp[8:24]))
	if target.IsMulticast() || src.IsMulticast() {
		return nil, ErrNotSolicit
	}
	var slla []byte
	for opts := icmp[24:]; len(opts) > 0; {
		if len(opts) < 2 || opts[1] == 0 || len(opts) < int(opts[1])*8 {
			return nil, ErrNotSolicit
		}
		if opts[0] == ndOptSrcLL && opts[1] == 1 {
			slla = opts[2:8]
		}
		opts = opts[int(opts[1])*8:]
	}
	dad := src.IsUnspecified()
	if dad {
		// must go to a solicited-node multicast address: the 104-bit
		// prefix ff02:0:0:0:0:1:ff00::/104, then any 24 bits
		if slla != nil || !solicitedNode.Contains(dst) {
			return nil, ErrNotSolicit
		}
	}
	flags := byte(naFlagRouter | naFlagOvr)
	mac, ok := r.lookup(target)
	if !ok && proxy != nil {
		mac, ok = proxy(target)
		flags = naFlagRouter
	}
	if !ok {
		return nil, ErrNotOwned
	}
	n := off + ipv6HdrLen + naReplyICMP
	if cap(frame) < n {
		return nil, ErrShortBuffer
	}
	var ethDst [6]byte
	var ipDst [16]byte
	switch {
	case dad:
		ethDst = [6]byte{0x33, 0x33, 0, 0, 0, 1}
		ipDst = netip.IPv6LinkLocalAllNodes().As16()
	default:
		flags |= naFlagSolic
		ipDst = src.As16()
		if slla != nil {
			copy(ethDst[:], slla)
		} else {
			copy(ethDst[:], frame[6:12])
		}
	}
	tgt := target.As16()
	frame = frame[:n]
	copy(frame[0:6], ethDst[:])
	copy(frame[6:12], mac[:])
	ip = frame[off:]
	binary.BigEndian.PutUint16(ip[4:], naReplyICMP)
	ip[7] = 255
	copy(ip[8:24], tgt[:])
	copy(ip[24:40], ipDst[:])
	icmp = ip[ipv6HdrLen:][:naReplyICMP]
	icmp[0], icmp[1], icmp[2], icmp[3] = icmp6NA, 0, 0, 0
	icmp[4], icmp[5], icmp[6], icmp[7] = flags, 0, 0, 0
	copy(icmp[8:24], tgt[:])
	icmp[24], icmp[25] = ndOptTgtLL, 1
	copy(icmp[26:32], mac[:])
	binary.BigEndian.PutUint16(icmp[2:], icmp6Checksum(ip[8:40], icmp))
	return frame, nil
}

// icmp6Checksum is the Internet checksum (RFC 1071) over the IPv6
// pseudo-header (RFC 8200 §8.1: addrs, length, next header 58) and msg.
// Over a message with a correct checksum field it returns 0.
func icmp6Checksum(addrs []byte, msg []byte) uint16 {
	var s uint64
	for i := 0; i+1 < len(addrs); i += 2 {
		s += uint64(binary.BigEndian.Uint16(addrs[i:]))
	}
	s += uint64(len(msg)) + protoICMPv6
	i := 0
	for ; i+1 < len(msg); i += 2 {
		s += uint64(binary.BigEndian.Uint16(msg[i:]))
	}
	if i < len(msg) {
		s += uint64(msg[i]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
