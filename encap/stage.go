package encap

import (
	"github.com/dpkit/dpkit/pmd"
)

// DropFunc takes a packet that a batch call refused, with the reason. It owns the
// packet's frame from then on (it frees it, counts it, or hands it to an exception
// path) and must not keep pk, which points into the batch.
type DropFunc func(pk *pmd.Pkt, why Reason)

// prefetchAhead is how many packets ahead the batch loops touch the next frames'
// headers, so that their cache misses overlap with the work on the current packet
// (Go has no prefetch instruction; a load whose result is kept does the job).
const prefetchAhead = 4

// touch loads one byte of each packet's first cache line, ahead of use.
func touch(pool *pmd.Pool, pkts []pmd.Pkt, i int) byte {
	if j := i + prefetchAhead; j < len(pkts) {
		pk := &pkts[j]
		f := pool.Bytes(pk.Frame)
		if int(pk.Off) < len(f) {
			return f[pk.Off]
		}
	}
	return 0
}

// keep takes the sum of the prefetching loads so that the compiler cannot drop them.
//
//go:noinline
func keep(byte) {}

// refuseChain hands every segment of the chain that starts at pkts[i] (pmd.PktMore
// set) to drop with why, the stages taking only unchained packets, and returns the
// index of the last segment: the first without PktMore, or the batch's last for a
// chain left unterminated.
func refuseChain(pkts []pmd.Pkt, i int, why Reason, drop DropFunc) int {
	for ; ; i++ {
		more := pkts[i].Flags&pmd.PktMore != 0
		drop(&pkts[i], why)
		if !more || i == len(pkts)-1 {
			return i
		}
	}
}

// chainReason is the reason ClassifyStage gives the chain that starts at pkts[i]: the
// NotTunnel reason of a well-formed chain that is not tunnel traffic (a jumbo packet
// for the host), so that it reaches the exception path as such frames in one piece
// do, and DropTooLong otherwise.
func (d *Decapper) chainReason(pool *pmd.Pool, pkts []pmd.Pkt, i int, r *Result) Reason {
	j := i + 1 // the chain is pkts[i:j]
	for j < len(pkts) && pkts[j-1].Flags&pmd.PktMore != 0 {
		j++
	}
	total, ok := chainBytes(pool, pkts[i:j])
	if !ok {
		return DropTooLong
	}
	pk := &pkts[i]
	off, end := int(pk.Off), int(pk.Off)+int(pk.Len)
	var pend pendingSum
	if why := d.classify(pool.Bytes(pk.Frame)[off:end:end], total, pk.Flags&pmd.PktCsumValid != 0, r, &pend); why.NotTunnel() {
		return why
	}
	return DropTooLong
}

// commit sets b's length to n after its packets were compacted to the front.
func commit(b *pmd.Batch, n int) {
	b.Reset()
	b.Grow(n) // the first n packets of Room are the compacted ones
}

// ClassifyStage is the first stage of a decap pipeline, where one goroutine receives
// and others decapsulate: it keeps b's tunnel frames, in order, with Hash set to the
// flow hash of their inner packet (pmd.PktHashValid) and Meta to their Key, so that
// Spread can send each inner flow to one worker. The frames are not changed. Frames
// that are not tunnel traffic or are malformed go to other with the reason (see
// Reason.NotTunnel) and are counted; frames kept are counted by the Decap that
// follows, not here (which may still drop one under DecapOptions.ECN). A chained
// packet (pmd.PktMore), which the stages do not take, goes to other whole, each of
// its segments with the same reason, and counts once: the NotTunnel reason of a
// chain that is not tunnel traffic, DropTooLong for any other.
func (d *Decapper) ClassifyStage(pool *pmd.Pool, b *pmd.Batch, hash HashOptions, other DropFunc) {
	pkts := b.Pkts()
	var r Result
	var sink byte
	n := 0
	for i := 0; i < len(pkts); i++ {
		sink += touch(pool, pkts, i)
		pk := &pkts[i]
		if pk.Flags&pmd.PktMore != 0 {
			why := d.chainReason(pool, pkts, i, &r)
			d.count[why]++
			i = refuseChain(pkts, i, why, other)
			continue
		}
		f := pool.Bytes(pk.Frame)
		off, end := int(pk.Off), int(pk.Off)+int(pk.Len)
		why := DropTruncated
		if end <= len(f) {
			why = d.Classify(f[off:end:end], pk.Flags&pmd.PktCsumValid != 0, &r)
		}
		if why != OK {
			d.count[why]++
			other(pk, why)
			continue
		}
		l2 := r.Type == VXLAN || (r.NLabels > 0 && d.o.MPLSPayloadEthernet)
		inner := f[off+r.OuterLen : off+r.OuterLen+r.InnerLen]
		pk.Hash = FlowHash(inner, l2, hash)
		pk.Flags |= pmd.PktHashValid
		pk.Meta = r.Key()
		if n != i { // copying a Pkt just written field by field stalls store forwarding
			pkts[n] = *pk
		}
		n++
	}
	keep(sink)
	commit(b, n)
	d.Flush()
}

// DecapStage strips the outer headers of b's tunnel frames in place (see Decap) and
// keeps them, in order, with Meta set to their Key: the VNI or bottom label that the
// lookup stage maps to a VRF or interface. The flow hash is the inner packet's with
// DecapOptions.InnerFlowHash, and cleared otherwise (an ECMP or encap stage computes
// it when it needs it). Frames refused go to drop with the reason; a chained packet
// (pmd.PktMore) goes whole, each of its segments with DropTooLong, and counts once.
// The counts are flushed on the way out.
func (d *Decapper) DecapStage(pool *pmd.Pool, b *pmd.Batch, drop DropFunc) {
	pkts := b.Pkts()
	var r Result
	var sink byte
	n := 0
	for i := 0; i < len(pkts); i++ {
		sink += touch(pool, pkts, i)
		pk := &pkts[i]
		if pk.Flags&pmd.PktMore != 0 {
			d.count[DropTooLong]++
			i = refuseChain(pkts, i, DropTooLong, drop)
			continue
		}
		if why := d.Decap(pool, pk, &r); why != OK {
			drop(pk, why)
			continue
		}
		pk.Meta = r.Key()
		if n != i { // copying a Pkt just written field by field stalls store forwarding
			pkts[n] = *pk
		}
		n++
	}
	keep(sink)
	commit(b, n)
	d.Flush()
}

// EncapStage encapsulates each packet of b in place with tunnels[pk.Meta] (the next
// hop the lookup stage chose) and keeps those it encapsulated, in order. Packets whose
// Meta names no tunnel go to drop with DropNoTunnel, those Encap refuses with
// DropNoHeadroom, DropMTU or DropTooLong, and a chained packet (pmd.PktMore) goes
// whole, each of its segments with DropTooLong. tunnels is only read and may be
// shared by workers.
func EncapStage(pool *pmd.Pool, b *pmd.Batch, tunnels []*Tunnel, drop DropFunc) {
	pkts := b.Pkts()
	var sink byte
	n := 0
	for i := 0; i < len(pkts); i++ {
		sink += touch(pool, pkts, i)
		pk := &pkts[i]
		if pk.Flags&pmd.PktMore != 0 {
			i = refuseChain(pkts, i, DropTooLong, drop)
			continue
		}
		if pk.Meta >= uint32(len(tunnels)) || tunnels[pk.Meta] == nil {
			drop(pk, DropNoTunnel)
			continue
		}
		if err := tunnels[pk.Meta].encap(pool, pk); err != nil {
			why := DropTooLong
			switch err {
			case ErrNoHeadroom:
				why = DropNoHeadroom
			case ErrMTU:
				why = DropMTU
			}
			drop(pk, why)
			continue
		}
		if n != i { // copying a Pkt just written field by field stalls store forwarding
			pkts[n] = *pk
		}
		n++
	}
	keep(sink)
	commit(b, n)
}

// Spread moves src's packets into dst[k], k chosen from the packet's flow hash by a
// multiply-shift over len(dst), the way RSS spreads flows over queues: one flow always
// lands in the same batch, so its packets stay in order on one worker. Packets without
// pmd.PktHashValid go to dst[0]. Packets whose batch is full stay in src, in order, as
// all do when dst is empty. A chained packet (pmd.PktMore) moves whole, by its first
// segment's hash, or stays whole in src when its batch lacks room for it; then the
// packets after it stay in src too, so that none of its flow overtakes it. src may be
// one of dst (a receiving worker that keeps its share of the flows): the packets for
// it stay in src, in order.
func Spread(src *pmd.Batch, dst []*pmd.Batch) {
	if len(dst) == 0 {
		return
	}
	pkts := src.Pkts()
	n := 0
	k := uint64(len(dst))
	for i := 0; i < len(pkts); i++ {
		pk := &pkts[i]
		q := 0
		if pk.Flags&pmd.PktHashValid != 0 {
			q = int(uint64(pk.Hash) * k >> 32)
		}
		if dst[q] == src { // its share stays, in order
			for {
				pkts[n] = pkts[i]
				n++
				if pkts[i].Flags&pmd.PktMore == 0 || i == len(pkts)-1 {
					break
				}
				i++
			}
			continue
		}
		if pk.Flags&pmd.PktMore != 0 {
			j := i + 1 // the chain is pkts[i:j]
			for j < len(pkts) && pkts[j-1].Flags&pmd.PktMore != 0 {
				j++
			}
			if room := dst[q].Room(); len(room) >= j-i {
				dst[q].Grow(copy(room, pkts[i:j]))
				i = j - 1
				continue
			}
			// The chain and all after it stay (copy moves overlapping slices safely).
			n += copy(pkts[n:], pkts[i:])
			break
		}
		if !dst[q].Push(*pk) {
			pkts[n] = *pk
			n++
		}
	}
	commit(src, n)
}
