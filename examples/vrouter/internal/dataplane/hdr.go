package dataplane

import "encoding/binary"

// Ethertypes and protocols the dataplane looks at.
const (
	etherIPv4 = 0x0800
	etherARP  = 0x0806
	etherVLAN = 0x8100
	etherIPv6 = 0x86dd
)

// hdr is what the dataplane needs of a pod's frame: where the network header starts
// and the addresses in it. Parsing never reads outside the frame; a frame too short
// for what its headers claim is reported as not ok.
type hdr struct {
	ethertype uint16
	l3        int // offset of the network header
	// IPv4: src4/dst4. IPv6: src6/dst6.
	src4, dst4 uint32
	src6, dst6 [16]byte
	proto      uint8 // IPv4 protocol or IPv6 next header
	l4         int   // offset of the transport header (IPv6: after the fixed header)
	end        int   // offset of the end of the IP packet (its total or payload length)
}

// parse reads Ethernet (untagged: pods send untagged frames) and the IPv4 or IPv6
// header; an IPv4 header whose checksum fails is refused, as a router must (RFC 1812
// §5.2.2). ARP frames return ok with ethertype etherARP and nothing else filled. The
// frame is n bytes long, of which b is the first part (a chain's first segment): the
// headers must lie in b.
func parse(b []byte, n int, h *hdr) bool {
	if len(b) < 14 {
		return false
	}
	h.ethertype = binary.BigEndian.Uint16(b[12:])
	h.l3 = 14
	switch h.ethertype {
	case etherARP:
		return len(b) >= 14+28
	case etherIPv4:
		ip := b[14:]
		if len(ip) < 20 || ip[0]>>4 != 4 {
			return false
		}
		ihl := int(ip[0]&0x0f) * 4
		tot := int(binary.BigEndian.Uint16(ip[2:]))
		if ihl < 20 || tot < ihl || tot > n-14 || ihl > len(ip) {
			return false
		}
		if ihl == 20 { // no options, the common case: the sum written out
			s := uint64(binary.LittleEndian.Uint32(ip[0:4])) + uint64(binary.LittleEndian.Uint32(ip[4:8])) +
				uint64(binary.LittleEndian.Uint32(ip[8:12])) + uint64(binary.LittleEndian.Uint32(ip[12:16])) +
				uint64(binary.LittleEndian.Uint32(ip[16:20]))
			if fold32(s) != 0xffff {
				return false
			}
		} else if !ipv4HeaderOK(ip[:ihl]) {
			return false
		}
		h.src4 = binary.BigEndian.Uint32(ip[12:])
		h.dst4 = binary.BigEndian.Uint32(ip[16:])
		h.proto = ip[9]
		h.l4 = 14 + ihl
		h.end = 14 + tot
		return true
	case etherIPv6:
		ip := b[14:]
		if len(ip) < 40 || ip[0]>>4 != 6 {
			return false
		}
		if 40+int(binary.BigEndian.Uint16(ip[4:])) > n-14 {
			return false
		}
		copy(h.src6[:], ip[8:24])
		copy(h.dst6[:], ip[24:40])
		h.proto = ip[6]
		h.l4 = 14 + 40
		h.end = 14 + 40 + int(binary.BigEndian.Uint16(ip[4:]))
		return true
	}
	return false
}

// decTTL4 decrements the IPv4 TTL at ip (the network header) and patches the header
// checksum incrementally (RFC 1624 eqn. 3). It reports false, changing nothing, when the
// TTL would reach zero.
func decTTL4(ip []byte) bool {
	ttl := ip[8]
	if ttl <= 1 {
		return false
	}
	ip[8] = ttl - 1
	// The 16-bit word m holding TTL and protocol drops by 0x0100: HC' = ~(~HC + ~m +
	// m'), where ~m + m' is 0xffff - 0x0100. Adding 0x0100 to HC instead (eqn. 2's
	// way) turns a checksum of 0xfeff into 0xffff, where computing it anew gives
	// 0x0000 (RFC 1624 §3).
	sum := uint32(^binary.BigEndian.Uint16(ip[10:])) + 0xfeff
	sum = (sum & 0xffff) + sum>>16
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	return true
}

// decHopLimit6 decrements the IPv6 hop limit; false when it would reach zero.
func decHopLimit6(ip []byte) bool {
	if ip[7] <= 1 {
		return false
	}
	ip[7]--
	return true
}

// ipv4HeaderOK reports whether the IPv4 header h (options included; its length a
// multiple of 4, as IHL makes it) sums to 0xffff, its checksum verifying (RFC 791,
// RFC 1071). It adds 32-bit words in host order: the ones' complement sum does not
// depend on byte order (RFC 1071 §2(B)), and all ones is all ones either way.
func ipv4HeaderOK(h []byte) bool {
	var s uint64
	for len(h) >= 4 {
		s += uint64(binary.LittleEndian.Uint32(h))
		h = h[4:]
	}
	return fold32(s) == 0xffff
}

// fold32 folds a sum of at most 15 32-bit words (below 2^36) to 16 bits, with the
// carries added back (ones' complement).
func fold32(s uint64) uint64 {
	s = s&0xffffffff + s>>32
	s = s&0xffff + s>>16
	s = s&0xffff + s>>16
	return s&0xffff + s>>16
}

// ipv4Checksum computes the header checksum of an IPv4 header whose checksum field
// is zero.
func ipv4Checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
