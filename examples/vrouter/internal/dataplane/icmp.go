package dataplane

import (
	"encoding/binary"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// Path MTU discovery: a pod's packet too big for its tunnel is answered, from the
// pod's gateway address, with ICMP "fragmentation needed" (IPv4 with DF, RFC 792 and
// RFC 1191 §4) or ICMPv6 "packet too big" (RFC 4443 §3.2), so that the pod's TCP
// lowers its segment size instead of losing every large segment. IPv4 packets
// without DF are fragmented instead (frag.go). A pod's packet whose TTL or hop limit
// runs out here is answered with "time exceeded" (RFC 792, RFC 4443 §3.3), as
// traceroute expects of a router. Nothing is sent when the rate limit is spent.

// icmpRate and icmpBurst bound the ICMP errors sent out of one interface by one
// worker (RFC 1812 §4.3.2.8, RFC 4443 §2.4(f)): a token bucket of icmpBurst, refilled
// at icmpRate a second, so that one busy pod cannot use up another's. A pod whose
// queues several workers poll gets that much per worker, as per-lcore limits do.
const (
	icmpRate  = 1000
	icmpBurst = 100
)

// icmpBucket is one worker's token bucket for ICMP errors out of one interface.
type icmpBucket struct {
	tokens int
	refill time.Time
}

// allowed takes a token from the bucket.
func (b *icmpBucket) allowed() bool {
	if b.tokens == 0 {
		now := time.Now()
		el := now.Sub(b.refill)
		if el >= time.Second {
			b.tokens, b.refill = icmpBurst, now
		} else {
			add := int(el * icmpRate / time.Second)
			if add == 0 {
				return false
			}
			// Keep the fraction of a token not yet earned.
			b.tokens = min(add, icmpBurst)
			b.refill = b.refill.Add(time.Duration(add) * time.Second / icmpRate)
		}
	}
	b.tokens--
	return true
}

func sum16(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

func fold16(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}

// ethHeader writes the Ethernet header of a frame from the router to a pod.
func ethHeader(out []byte, podMAC, routerMAC [6]byte, et uint16) {
	copy(out[0:6], podMAC[:])
	copy(out[6:12], routerMAC[:])
	binary.BigEndian.PutUint16(out[12:], et)
}

// ICMP message types the vRouter sends (RFC 792, RFC 4443).
const (
	icmp4Unreachable  = 3  // code 4: fragmentation needed and DF set
	icmp4TimeExceeded = 11 // code 0: time to live exceeded in transit
	icmp6TooBig       = 2
	icmp6TimeExceeded = 3 // code 0: hop limit exceeded in transit
)

// tooBig4 writes into out the frame that tells the sender of ip (an IPv4 packet, as
// much of it as the first buffer holds) that the next hop takes at most mtu bytes:
// from gw to the packet's source, Ethernet from router to pod. It returns the frame's
// length, or 0 when no message is due (no DF, a later fragment, an ICMP error, a
// source that is not unicast).
func tooBig4(out, ip []byte, podMAC, routerMAC [6]byte, gw uint32, mtu int) int {
	if len(ip) < 20 || binary.BigEndian.Uint16(ip[6:])&0x4000 == 0 {
		return 0
	}
	return icmpError4(out, ip, podMAC, routerMAC, gw, icmp4Unreachable, 4, uint32(min(mtu, 0xffff)))
}

// timeExceeded4 is tooBig4's "time to live exceeded in transit" (RFC 792, RFC 1812
// §5.3.1), sent for a packet whose TTL ran out here.
func timeExceeded4(out, ip []byte, podMAC, routerMAC [6]byte, gw uint32) int {
	return icmpError4(out, ip, podMAC, routerMAC, gw, icmp4TimeExceeded, 0, 0)
}

// icmpError4 writes into out an ICMP error of type typ and code about ip, info being
// the word after the checksum, from gw to ip's source; it returns the frame's length,
// or 0 when no error may be sent about ip (a later fragment, an ICMP error, a source
// that is not unicast: RFC 1122 §3.2.2, RFC 1812 §4.3.2.7).
func icmpError4(out, ip []byte, podMAC, routerMAC [6]byte, gw uint32, typ, code byte, info uint32) int {
	if len(ip) < 20 {
		return 0
	}
	ihl := int(ip[0]&0xf) * 4
	frag := binary.BigEndian.Uint16(ip[6:])
	if ihl < 20 || len(ip) < ihl || frag&0x1fff != 0 {
		return 0
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if ip[9] == 1 {
		if len(ip) <= ihl || tot <= ihl {
			// The ICMP type is not in the first buffer (a chain split after the
			// IP header), or not in the packet at all (what follows its header
			// is the frame's padding): it may be an error.
			return 0
		}
		switch ip[ihl] { // RFC 1122 §3.2.2: never about an ICMP error
		case 3, 4, 5, 11, 12:
			return 0
		}
	}
	src := binary.BigEndian.Uint32(ip[12:])
	if src == 0 || src>>24 == 127 || src>>28 >= 0xe { // RFC 1812 §4.3.2.7
		return 0
	}
	// RFC 1812 §4.3.2.3: quote as much as fits in 576 bytes.
	q := min(len(ip), 576-20-8, tot)
	n := 14 + 20 + 8 + q
	if len(out) < n {
		return 0
	}
	ethHeader(out, podMAC, routerMAC, etherIPv4)
	h := out[14:34]
	h[0], h[1] = 0x45, 0xc0 // internetwork control
	binary.BigEndian.PutUint16(h[2:], uint16(20+8+q))
	binary.BigEndian.PutUint32(h[4:], 0)
	h[8], h[9] = 64, 1
	binary.BigEndian.PutUint16(h[10:], 0)
	binary.BigEndian.PutUint32(h[12:], gw)
	binary.BigEndian.PutUint32(h[16:], src)
	binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h))
	m := out[34:n]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], info)
	copy(m[8:], ip[:q])
	binary.BigEndian.PutUint16(m[2:], ^fold16(sum16(0, m)))
	return n
}

// tooBig6 is tooBig4 for IPv6: ICMPv6 "packet too big" quoting as much of the packet
// as fits in the minimum MTU of 1280 (RFC 4443 §3.2). No message is due about an
// ICMPv6 error (§2.4(e)) or to a source that is not unicast.
func tooBig6(out, ip []byte, podMAC, routerMAC [6]byte, gw *[16]byte, mtu int) int {
	return icmpError6(out, ip, podMAC, routerMAC, gw, icmp6TooBig, 0, uint32(max(mtu, 1280)))
}

// timeExceeded6 is ICMPv6 "hop limit exceeded in transit" (RFC 4443 §3.3).
func timeExceeded6(out, ip []byte, podMAC, routerMAC [6]byte, gw *[16]byte) int {
	return icmpError6(out, ip, podMAC, routerMAC, gw, icmp6TimeExceeded, 0, 0)
}

// icmpError6 is icmpError4 for ICMPv6.
func icmpError6(out, ip []byte, podMAC, routerMAC [6]byte, gw *[16]byte, typ, code byte, info uint32) int {
	if len(ip) < 40 {
		return 0
	}
	if !errorAllowed6(ip) {
		return 0
	}
	if ip[8] == 0xff || [16]byte(ip[8:24]) == ([16]byte{}) {
		return 0
	}
	q := min(len(ip), 1280-40-8, 40+int(binary.BigEndian.Uint16(ip[4:])))
	n := 14 + 40 + 8 + q
	if len(out) < n {
		return 0
	}
	ethHeader(out, podMAC, routerMAC, etherIPv6)
	h := out[14:54]
	binary.BigEndian.PutUint32(h[0:], 6<<28)
	binary.BigEndian.PutUint16(h[4:], uint16(8+q))
	h[6], h[7] = 58, 64
	copy(h[8:24], gw[:])
	copy(h[24:40], ip[8:24])
	m := out[54:n]
	m[0], m[1] = typ, code
	binary.BigEndian.PutUint16(m[2:], 0)
	binary.BigEndian.PutUint32(m[4:], info)
	copy(m[8:], ip[:q])
	// Pseudo-header (RFC 8200 §8.1): addresses, length, next header.
	acc := sum16(0, h[8:40]) + uint32(8+q) + 58
	binary.BigEndian.PutUint16(m[2:], ^fold16(sum16(acc, m)))
	return n
}

// tooBig drops pk, a pod's packet too big for its tunnel, and answers it with the
// ICMP error that reports mtu when one is due. ip is the packet's IP header on.
func (w *Worker) tooBig(in *Iface, pk *pmd.Pkt, ip []byte, mtu int) {
	w.icmpError(in, ip, false, mtu)
	w.drop(in, pk, DropTooBig)
}

// ttlExpired drops pk, a packet whose TTL or hop limit ran out, and answers a pod's
// with ICMP "time exceeded" when one is due, as a router does (traceroute counts on
// it). ip is the packet's IP header on, its TTL as it arrived.
func (w *Worker) ttlExpired(in *Iface, pk *pmd.Pkt, ip []byte) {
	w.icmpError(in, ip, true, 0)
	w.drop(in, pk, DropTTLExpired)
}

// icmpError sends the pod in the ICMP error about ip, the IP packet it sent: time
// exceeded, or too big naming mtu; within the rate limit and only when one is due.
func (w *Worker) icmpError(in *Iface, ip []byte, ttl bool, mtu int) {
	if in.Kind != Pod || len(ip) == 0 {
		return
	}
	var r [1]pmd.Pkt
	if w.cache.Alloc(r[:]) != 1 {
		return
	}
	out := w.pool.Bytes(r[0].Frame)[r[0].Off:]
	n := 0
	switch {
	case ip[0]>>4 == 4 && len(in.Gw4) > 0 && ttl:
		n = timeExceeded4(out, ip, in.MAC, w.e.routerMAC, in.Gw4[0])
	case ip[0]>>4 == 4 && len(in.Gw4) > 0:
		n = tooBig4(out, ip, in.MAC, w.e.routerMAC, in.Gw4[0], mtu)
	case ip[0]>>4 == 6 && len(in.Gw6) > 0 && ttl:
		n = timeExceeded6(out, ip, in.MAC, w.e.routerMAC, &in.Gw6[0])
	case ip[0]>>4 == 6 && len(in.Gw6) > 0:
		n = tooBig6(out, ip, in.MAC, w.e.routerMAC, &in.Gw6[0], mtu)
	}
	// The token only when a message is due: packets that get none (no DF,
	// fragments, errors) must not use up the pod's answers.
	if n > 0 && w.icmp[in.idx].allowed() {
		r[0].Len = uint16(n)
		seg := w.seg
		w.seg = nil // the reply is one frame, whatever the packet is
		w.queue(in, in.idx, &r[0])
		w.seg = seg
		in.stats[w.id].ICMPSent.Add(1)
	} else {
		w.cache.Free(r[:])
	}
}

// errorAllowed6 reports whether an ICMPv6 error may be sent about ip, an IPv6 packet
// (as much of it as the first buffer holds): not when it is an ICMPv6 error
// (RFC 4443 §2.4(e.1)). The extension headers (RFC 8200 §4) are walked to the upper
// layer, so that packets carrying them (hop-by-hop options, a fragment header) get
// their "packet too big" as others do: without it the sender's path MTU discovery
// (RFC 8201) never learns the tunnel's and every such packet is lost. A later
// fragment (offset not 0) does not hold the upper-layer header and is answered; an
// extension header chain longer than what the buffer holds, or than 8 headers, is
// not, as its upper layer cannot be told.
func errorAllowed6(ip []byte) bool {
	lim := min(len(ip), 40+int(binary.BigEndian.Uint16(ip[4:])))
	nh, off := ip[6], 40
	for range 8 {
		switch nh {
		case 58:
			return off < lim && ip[off] >= 128 // an informational message, or an error
		case 0, 43, 60, 135, 139, 140: // options, routing, mobility, HIP, shim6: 8-byte units after the first 8
			if off+2 > lim {
				return false
			}
			nh, off = ip[off], off+8+int(ip[off+1])*8
		case 51: // authentication header: 4-byte units, less 2 (RFC 4302 §2.2)
			if off+2 > lim {
				return false
			}
			nh, off = ip[off], off+(int(ip[off+1])+2)*4
		case 44: // fragment header
			if off+8 > lim {
				return false
			}
			if binary.BigEndian.Uint16(ip[off+2:])&^7 != 0 {
				return true // a later fragment: no upper-layer header to look at
			}
			nh, off = ip[off], off+8
		default: // an upper layer other than ICMPv6, or encrypted (ESP), or none
			return true
		}
	}
	return false
}
