package encap

import (
	"encoding/binary"
	"math/bits"
)

// The Internet checksum (RFC 1071) in the forms the hot paths need. Accumulators are
// uint64 ones'-complement sums of big-endian 16-bit words, folded once at the end.

// sum adds b to a ones'-complement accumulator as big-endian 16-bit words (RFC 1071).
// The bulk is added as native little-endian 64-bit words with end-around carry, which
// yields the byte-swapped ones'-complement sum (RFC 1071 §2(B): byte order
// independence); it is swapped back once at the end.
func sum(acc uint64, b []byte) uint64 {
	var le, carry uint64
	for len(b) >= 64 {
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[8:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[16:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[24:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[32:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[40:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[48:]), carry)
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b[56:]), carry)
		b = b[64:]
	}
	for len(b) >= 8 {
		le, carry = bits.Add64(le, binary.LittleEndian.Uint64(b), carry)
		b = b[8:]
	}
	if len(b) >= 4 {
		le, carry = bits.Add64(le, uint64(binary.LittleEndian.Uint32(b)), carry)
		b = b[4:]
	}
	le, carry = bits.Add64(le, carry, 0)
	le += carry // end-around carry; if the add above wrapped, le is 0 here
	acc += uint64(bits.ReverseBytes16(foldLE(le)))
	for len(b) >= 2 {
		acc += uint64(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint64(b[0]) << 8
	}
	return acc
}

// foldLE folds a 64-bit ones'-complement sum to 16 bits.
func foldLE(le uint64) uint16 {
	f := le&0xffffffff + le>>32
	f = f&0xffff + f>>16
	f = f&0xffff + f>>16
	f = f&0xffff + f>>16
	return uint16(f)
}

// fold reduces an accumulator to 16 bits.
func fold(acc uint64) uint16 {
	acc = acc&0xffffffff + acc>>32
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	return uint16(acc)
}

// fold32 reduces an accumulator below 2^32 to 16 bits: two end-around steps suffice
// (the first leaves at most 0x1fffe, the second at most 0xffff).
func fold32(acc uint64) uint16 {
	acc = acc&0xffff + acc>>16
	acc = acc&0xffff + acc>>16
	return uint16(acc)
}

// checksum returns the Internet checksum of b.
func checksum(b []byte) uint16 { return ^fold(sum(0, b)) }

// ip4HeaderOK reports whether an option-less IPv4 header (20 bytes) has a valid
// header checksum: its words sum to 0xffff (RFC 791, RFC 1071). Folding a sum keeps
// it modulo 0xffff and never turns a non-zero sum into 0, so the folded sum is 0xffff
// exactly when the plain sum S is a non-zero multiple of 0xffff. The sum of the
// header's little-endian 32-bit words is congruent modulo 0xffff to 2^8·S (2^16 ≡ 1,
// and a byte swap multiplies a word by 2^8), a multiple just when S is; the compiler
// tests divisibility by the odd 0xffff with one multiplication.
func ip4HeaderOK(h []byte) bool {
	h = h[:20]
	s := uint64(binary.LittleEndian.Uint32(h)) + uint64(binary.LittleEndian.Uint32(h[4:])) +
		uint64(binary.LittleEndian.Uint32(h[8:])) + uint64(binary.LittleEndian.Uint32(h[12:])) +
		uint64(binary.LittleEndian.Uint32(h[16:]))
	return s%0xffff == 0 && s != 0
}

// innerSum returns the ones'-complement sum of the IP packet p (an IPv4 or IPv6
// header and what follows) computed from the packet's own checksums, without reading
// its payload, as Linux's local checksum offload does
// (Documentation/networking/checksum-offloads.rst): a valid TCP, UDP or ICMPv6
// checksum makes the segment sum to the complement of its pseudo-header, a valid ICMP
// checksum makes the message sum to zero, and a valid IPv4 header sums to zero. It
// reports false when the packet is not one it can vouch for that way (a fragment,
// extension headers, UDP without a checksum or with a length other than the IP
// payload's, another protocol, a length that disagrees with the bytes); the caller
// then sums the bytes. Bytes after the IP datagram (link
// padding) are summed.
//
// The result is right whenever the inner checksums are; if they are not, the outer
// checksum is wrong too and the receiver drops the packet one layer earlier.
func innerSum(p []byte) (uint64, bool) {
	if len(p) < 20 {
		return 0, false
	}
	var proto, l4len int
	var l4 []byte
	var acc uint64
	if p[0]>>4 == 4 {
		hl := int(p[0]&0xf) * 4
		tl := int(binary.BigEndian.Uint16(p[2:]))
		if hl < 20 || tl < hl || tl > len(p) || binary.BigEndian.Uint16(p[6:])&0x3fff != 0 {
			return 0, false
		}
		proto, l4len, l4 = int(p[9]), tl-hl, p[hl:tl]
		acc = trailing(p, tl)
		if proto == 1 { // ICMP (RFC 792): no pseudo-header, the message sums to zero
			return acc, l4len >= 4
		}
		// header ≡ 0, segment ≡ -(addresses + protocol + length)
		a := p[12:20]
		ps := uint64(proto) + uint64(l4len) + uint64(binary.BigEndian.Uint16(a)) + uint64(binary.BigEndian.Uint16(a[2:])) +
			uint64(binary.BigEndian.Uint16(a[4:])) + uint64(binary.BigEndian.Uint16(a[6:]))
		acc += 0xffff - uint64(fold32(ps))
	} else if p[0]>>4 == 6 && len(p) >= 40 {
		pl := int(binary.BigEndian.Uint16(p[4:]))
		if 40+pl > len(p) {
			return 0, false
		}
		proto, l4len, l4 = int(p[6]), pl, p[40:40+pl]
		if proto != 6 && proto != 17 && proto != 58 {
			return 0, false
		}
		// The header has no checksum; its addresses cancel the pseudo-header's, which
		// leaves its first eight bytes minus the length and next header.
		h := p[:8]
		acc = uint64(binary.BigEndian.Uint16(h)) + uint64(binary.BigEndian.Uint16(h[2:])) + uint64(binary.BigEndian.Uint16(h[6:])) +
			trailing(p, 40+pl) + (0xffff - uint64(proto)) // the length word cancels the pseudo-header's
	} else {
		return 0, false
	}
	switch proto {
	case 6: // TCP (RFC 9293 §3.1)
		return acc, l4len >= 20
	case 17: // UDP (RFC 768): zero means none was computed, nothing to lean on
		// The checksum covers the UDP length's bytes, with that length in the
		// pseudo-header; IP payload bytes after it (a surplus area) it does not cover.
		return acc, l4len >= 8 && binary.BigEndian.Uint16(l4[6:]) != 0 && int(binary.BigEndian.Uint16(l4[4:])) == l4len
	case 58: // ICMPv6 (RFC 4443 §2.3): pseudo-header like TCP's
		return acc, p[0]>>4 == 6 && l4len >= 4
	}
	return 0, false
}

// trailing sums the bytes of p from end (link padding after a datagram) as they fall
// in the words of the whole of p: after an odd end they are the low bytes, and a
// ones'-complement sum of bytes moved by one is the byte-swapped sum (RFC 1071 §2(B)).
func trailing(p []byte, end int) uint64 {
	if end >= len(p) {
		return 0
	}
	s := fold(sum(0, p[end:]))
	if end&1 != 0 {
		s = bits.ReverseBytes16(s)
	}
	return uint64(s)
}

// FinishChecksum completes the transport checksum of ip, an IP packet whose checksum
// field holds only the pseudo-header sum (pmd.PktCsumPartial, a virtio-net driver's
// VIRTIO_NET_HDR_F_NEEDS_CSUM), as Encap does before it adds its headers; for a
// caller that changes the packet so that no device can finish it later (splitting
// it into fragments), which then clears the flag. It handles TCP and UDP over IPv4
// and IPv6 without extension headers, and reports false, ip unchanged, for anything
// else.
func FinishChecksum(ip []byte) bool { return finishPartial(ip) }

// finishPartial completes the transport checksum of an IP packet whose checksum field
// holds only the pseudo-header sum, as a virtio-net driver leaves it with
// VIRTIO_NET_HDR_F_NEEDS_CSUM (virtio 1.2 §5.1.6.2): the field becomes the complement
// of the sum from the transport header to the end. It handles TCP and UDP over IPv4
// and IPv6 without extension headers, and reports false for anything else.
func finishPartial(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	var hl, end, proto int
	switch p[0] >> 4 {
	case 4:
		if len(p) < 20 {
			return false
		}
		hl, end, proto = int(p[0]&0xf)*4, int(binary.BigEndian.Uint16(p[2:])), int(p[9])
	case 6:
		if len(p) < 40 {
			return false
		}
		hl, end, proto = 40, 40+int(binary.BigEndian.Uint16(p[4:])), int(p[6])
	default:
		return false
	}
	if hl < 20 || end > len(p) || end < hl {
		return false
	}
	l4 := p[hl:end]
	var at int
	switch proto {
	case 6:
		at = 16
	case 17:
		at = 6
	default:
		return false
	}
	if len(l4) < at+2 {
		return false
	}
	c := ^fold(sum(0, l4))
	if c == 0 && proto == 17 {
		c = 0xffff // RFC 768: a computed zero is sent as all ones
	}
	binary.BigEndian.PutUint16(l4[at:], c)
	return true
}
