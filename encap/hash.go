package encap

import (
	"encoding/binary"
	"math/bits"
)

// HashOptions tune FlowHash. The zero value is an asymmetric hash with seed 0.
type HashOptions struct {
	// Symmetric gives both directions of a flow the same hash (the endpoints are
	// ordered before hashing), for stateful middleboxes behind ECMP.
	Symmetric bool
	// Seed varies the hash between nodes, so that ECMP tiers hashing the same fields
	// do not all make the same choice (polarisation).
	Seed uint64
}

const (
	m1 = 0xa0761d6478bd642f
	m2 = 0xe7037ed1a0b428db
)

// mix is wyhash's multiply-fold of two words.
func mix(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a^m1, b^m2)
	return hi ^ lo
}

// FlowHash hashes the flow of the packet in b: the IPv4 or IPv6 addresses, the
// protocol and, for TCP, UDP and SCTP packets that are not fragments, the ports.
// b starts with an Ethernet header (with up to two VLAN tags) when eth is true, with
// the IP header otherwise. Fragments hash on addresses and protocol only, so that all
// fragments of a datagram take one path. An Ethernet frame that is not IP hashes on
// its MAC addresses and ethertype (the inner Ethernet header RFC 7348 §5 suggests, as
// Linux's udp_flow_src_port falls back to); other packets it cannot parse (truncated)
// hash to one value. Never on the length: a flow's packets of every size, and a chained
// packet's first segment, hash alike. It never fails, reads only b and never
// allocates; it is safe for concurrent use.
//
// ECMP next-hop selection (the route package), the UDP source port of a tunnel (RFC
// 7510 §3) and Spread all take its output.
func FlowHash(b []byte, eth bool, o HashOptions) uint32 {
	ip := b
	var et uint16
	if eth {
		if len(b) < 14 {
			return uint32(mix(o.Seed, 0))
		}
		off := 12
		et = binary.BigEndian.Uint16(b[12:])
		for i := 0; i < 2 && (et == EtherVLAN || et == EtherQinQ) && len(b) >= off+6; i++ {
			off += 4
			et = binary.BigEndian.Uint16(b[off:])
		}
		ip = b[off+2:]
	}
	var h uint64
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		src, dst := uint64(binary.BigEndian.Uint32(ip[12:])), uint64(binary.BigEndian.Uint32(ip[16:]))
		ihl := int(ip[0]&0xf) * 4
		var l4 []byte
		if binary.BigEndian.Uint16(ip[6:])&0x3fff == 0 && ihl >= 20 && len(ip) >= ihl {
			l4 = ip[ihl:]
		}
		sp, dp := ports(ip[9], l4)
		return hash4(src, dst, ip[9], sp, dp, o)
	case len(ip) >= 40 && ip[0]>>4 == 6:
		a0, a1 := binary.BigEndian.Uint64(ip[8:]), binary.BigEndian.Uint64(ip[16:])
		b0, b1 := binary.BigEndian.Uint64(ip[24:]), binary.BigEndian.Uint64(ip[32:])
		sp, dp := ports(ip[6], ip[40:])
		if o.Symmetric && (a0 > b0 || (a0 == b0 && (a1 > b1 || (a1 == b1 && sp > dp)))) {
			a0, a1, b0, b1, sp, dp = b0, b1, a0, a1, dp, sp
		}
		h = mix(a0^o.Seed, a1) ^ mix(b0, b1^(uint64(ip[6])<<32|sp<<16|dp))
		h = mix(h, 6)
	case eth:
		dst, src := binary.BigEndian.Uint64(b)>>16, binary.BigEndian.Uint64(b[6:])>>16
		if o.Symmetric && dst > src {
			dst, src = src, dst
		}
		h = mix(dst^o.Seed, src<<16|uint64(et))
	default:
		return uint32(mix(o.Seed, 0))
	}
	return uint32(h ^ h>>32)
}

// ports returns the transport ports of TCP, UDP and SCTP, which all start with them.
func ports(proto byte, l4 []byte) (uint64, uint64) {
	if (proto == 6 || proto == 17 || proto == 132) && len(l4) >= 4 {
		return uint64(binary.BigEndian.Uint16(l4)), uint64(binary.BigEndian.Uint16(l4[2:]))
	}
	return 0, 0
}

// hash4 is FlowHash's IPv4 case, given the fields it hashes (ports zero when it does
// not take them).
func hash4(src, dst uint64, proto byte, sp, dp uint64, o HashOptions) uint32 {
	if o.Symmetric && (src > dst || (src == dst && sp > dp)) {
		src, dst, sp, dp = dst, src, dp, sp
	}
	h := mix(src<<32|dst^o.Seed, uint64(proto)<<32|sp<<16|dp)
	return uint32(h ^ h>>32)
}

// portMask selects the ports word of the transport protocols FlowHash takes ports
// from: TCP, UDP and SCTP.
var portMask = [256]uint64{6: 0xffffffff, 17: 0xffffffff, 132: 0xffffffff}
