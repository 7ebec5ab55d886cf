package encap

import (
	"math/bits"

	"github.com/dpkit/dpkit/pmd"
)

// Multi-buffer packets. A frame larger than one pool frame (a jumbo frame received
// through AF_XDP with XDP_USE_SG) arrives as a chain: consecutive Pkts, all but the
// last flagged pmd.PktMore. Tunnel headers are always added to or stripped from the
// first segment, so the chain calls below differ from Encap and Decap only in the
// lengths they write and check and in the checksums they sum over every segment. The
// batch and stage calls take unchained packets.

// chainHead is how many bytes of the inner packet a chain's first segment must hold
// after the outer headers, so that the stages after decap find the inner Ethernet, IP
// and transport headers there. A real chain's first segment is a whole frame.
const chainHead = 128

// chainTail is the part of a chained packet after its first segment.
type chainTail struct {
	pool  *pmd.Pool
	segs  []pmd.Pkt
	bytes int
}

// sum adds the tail's first limit bytes to acc as the continuation of a run whose
// length so far is odd when odd is set (RFC 1071 §2(B): a byte-shifted run sums
// byte-swapped).
func (c *chainTail) sum(acc uint64, odd bool, limit int) uint64 {
	for i := range c.segs {
		b := c.pool.Data(&c.segs[i])
		b = b[:min(len(b), limit)]
		limit -= len(b)
		s := fold(sum(0, b))
		if odd {
			s = bits.ReverseBytes16(s)
		}
		acc += uint64(s)
		odd = odd != (len(b)&1 == 1)
	}
	return acc
}

// head copies the chain's first bytes, payload (the first segment's data) and then
// the tail's, into buf and returns the copy: the inner headers, for a chain whose
// first segment is too short to hold them all.
func (c *chainTail) head(buf []byte, payload []byte) []byte {
	n := copy(buf, payload)
	for i := 0; i < len(c.segs) && n < len(buf); i++ {
		n += copy(buf[n:], c.pool.Data(&c.segs[i]))
	}
	return buf[:n]
}

// chainBytes checks that chain is one well-formed packet (PktMore on every segment
// but the last, every segment inside its frame) and returns its length.
func chainBytes(pool *pmd.Pool, chain []pmd.Pkt) (int, bool) {
	n := 0
	for i := range chain {
		pk := &chain[i]
		more := pk.Flags&pmd.PktMore != 0
		if more != (i < len(chain)-1) || int(pk.Off)+int(pk.Len) > pool.FrameSize() {
			return 0, false
		}
		n += int(pk.Len)
	}
	return n, true
}

// EncapChain is Encap for a chained packet: chain holds its segments in order. The
// headers go into the first segment's headroom, and the outer lengths (and an IPv6
// outer UDP checksum, summed over every segment) cover the whole chain; the inner
// headers Encap reads for its hash and TTL, DSCP and DF policies are read across the
// segments, so a first segment may hold less than them (as DPDK's header-only first
// segments do); with Options.InnerVLAN it must hold the inner Ethernet header, where
// the tag goes (ErrNotTaggable otherwise). A chain of one is Encap. A partial transport checksum
// (pmd.PktCsumPartial) on a longer chain is refused with ErrPartialCsum; a malformed
// chain with ErrChain. On error the chain and its data are unchanged.
func (t *Tunnel) EncapChain(pool *pmd.Pool, chain []pmd.Pkt) error {
	if len(chain) == 1 {
		return t.encap(pool, &chain[0])
	}
	total, ok := chainBytes(pool, chain)
	if !ok || len(chain) == 0 {
		return ErrChain
	}
	tail := chainTail{pool: pool, segs: chain[1:], bytes: total - int(chain[0].Len)}
	return t.encapSlow(pool.Bytes(chain[0].Frame), &chain[0], &tail)
}

// udp6ChecksumChain is udp6Checksum over a chained payload: every byte is summed, as
// the inner checksums that would save it sit in the first segment but cover bytes in
// all of them, and one short cut is not worth a second code path.
func (t *Tunnel) udp6ChecksumChain(payload []byte, ch *chainTail, lttl uint8, port, ulen uint16) uint16 {
	ps := ch.sum(sum(0, payload), len(payload)&1 == 1, ch.bytes)
	acc := t.udpBase + 2*uint64(ulen) + uint64(port) + ps + t.nCopy*uint64(lttl)
	c := ^fold(acc)
	if c == 0 {
		c = 0xffff // RFC 768
	}
	return c
}

// DecapChain is Decap for a chained frame: chain holds its segments in order. The
// outer headers and chainHead bytes after them must lie in the first segment (else
// DropTruncated), and the outer
// datagram must end where the chain does (link padding exists only on short frames;
// trailing bytes after a chained datagram are DropBadHeader). A UDP or GRE checksum
// is verified over every segment. On OK the first segment starts at the inner packet
// and r.InnerLen is the inner packet's length over the whole chain. A chain of one is
// Decap; a malformed chain is DropTruncated. Otherwise the chain is unchanged.
func (d *Decapper) DecapChain(pool *pmd.Pool, chain []pmd.Pkt, r *Result) Reason {
	if len(chain) == 1 && chain[0].Flags&pmd.PktMore == 0 {
		return d.Decap(pool, &chain[0], r)
	}
	total, ok := chainBytes(pool, chain)
	if !ok || len(chain) == 0 {
		d.count[DropTruncated]++
		return DropTruncated
	}
	pk := &chain[0]
	frame := pool.Bytes(pk.Frame)
	off, n := int(pk.Off), int(pk.Len)
	b := frame[off : off+n : off+n]
	var pend pendingSum
	why := d.classify(b, total, pk.Flags&pmd.PktCsumValid != 0, r, &pend)
	if pend.from >= 0 {
		// Finish the checksum classify began; a bad one is the reason, as it is for
		// a frame in one piece, whatever classify found after it.
		tail := chainTail{pool: pool, segs: chain[1:]}
		if fold(tail.sum(pend.acc, (n-pend.from)&1 == 1, pend.end-n)) != 0xffff {
			why = DropBadChecksum
		}
	}
	switch {
	case why != OK:
	case r.OuterLen+r.InnerLen != total:
		why = DropBadHeader
	case r.OuterLen+chainHead > n:
		why = DropTruncated
	}
	if why == OK && d.o.ECN && r.TOS&3 != 0 {
		why = d.ecn(b[r.OuterLen:], r)
	}
	if why != OK {
		d.count[why]++
		return why
	}
	d.count[OK]++
	d.strip(frame, pk, r, off+n)
	return OK
}
