package pmd

// Pkt describes one packet (or one segment of a chained packet) held in a pool frame.
// It is a small value: batches and rings carry Pkts by value, and the packet data stays
// in its frame.
type Pkt struct {
	Frame Frame  // the frame holding the data
	Off   uint16 // offset of the first data byte from the start of the frame
	Len   uint16 // data length in bytes
	Hash  uint32 // flow hash, valid when Flags has PktHashValid
	Port  uint16 // ingress port id, set by the receiving port
	Flags PktFlags
	Meta  uint32 // free for the application (a VRF, a next hop, a queue)
}

// PktFlags describe a packet.
type PktFlags uint16

const (
	// PktMore: the packet continues in the next Pkt of the batch (a multi-buffer
	// chain, as AF_XDP's XDP_PKT_CONTD). The last segment has it clear.
	PktMore PktFlags = 1 << iota
	// PktHashValid: Hash holds the flow hash.
	PktHashValid
	// PktCsumPartial: the L4 checksum still needs finishing (virtio-net NEEDS_CSUM).
	PktCsumPartial
	// PktCsumValid: a device vouched for the L4 checksum (virtio-net DATA_VALID).
	PktCsumValid
)

// PacketCount returns how many packets pkts holds, a chain counting once (an
// unterminated chain at the end counts too).
func PacketCount(pkts []Pkt) int {
	n := 0
	for i := range pkts {
		if pkts[i].Flags&PktMore == 0 {
			n++
		}
	}
	if len(pkts) > 0 && pkts[len(pkts)-1].Flags&PktMore != 0 {
		n++
	}
	return n
}

// Prepend moves the start of the packet n bytes into the headroom, growing it, and
// reports whether the headroom was large enough. The new bytes are not initialised.
func (p *Pkt) Prepend(n int) bool {
	if n < 0 || n > int(p.Off) || int(p.Len)+n > 0xffff {
		return false
	}
	p.Off -= uint16(n)
	p.Len += uint16(n)
	return true
}

// Adj removes n bytes from the start of the packet and reports whether it had them.
func (p *Pkt) Adj(n int) bool {
	if n < 0 || n > int(p.Len) {
		return false
	}
	p.Off += uint16(n)
	p.Len -= uint16(n)
	return true
}

// Trim removes n bytes from the end of the packet and reports whether it had them.
func (p *Pkt) Trim(n int) bool {
	if n < 0 || n > int(p.Len) {
		return false
	}
	p.Len -= uint16(n)
	return true
}

// MaxBurst is the largest batch a Batch holds.
const MaxBurst = 256

// DefaultBurst is the burst size ports and examples use unless told otherwise.
const DefaultBurst = 32

// Batch holds up to MaxBurst packets on their way through a poll loop. It works like a
// slice with a fixed backing array: Pkts is the filled part, Room the free part.
//
// A Batch is owned by one goroutine; the frames of the packets in it are that
// goroutine's to free or hand on.
type Batch struct {
	n    int
	pkts [MaxBurst]Pkt
}

// Len returns how many packets the batch holds.
func (b *Batch) Len() int { return b.n }

// Pkts returns the packets in the batch. The slice aliases the batch: it is valid until
// the batch is next changed.
func (b *Batch) Pkts() []Pkt { return b.pkts[:b.n] }

// Room returns the unused tail of the batch, to be filled and then committed with
// Grow.
func (b *Batch) Room() []Pkt { return b.pkts[b.n:] }

// Grow commits n packets written into Room.
func (b *Batch) Grow(n int) {
	// n against the room, not b.n+n against MaxBurst: the sum overflows for an n
	// near math.MaxInt and would let a negative length through.
	if n < 0 || n > MaxBurst-b.n {
		panic("pmd: Batch.Grow beyond capacity")
	}
	b.n += n
}

// Push appends one packet and reports whether there was room.
func (b *Batch) Push(p Pkt) bool {
	if b.n == MaxBurst {
		return false
	}
	b.pkts[b.n] = p
	b.n++
	return true
}

// Reset empties the batch without touching the frames; the caller must have passed
// them on or freed them.
func (b *Batch) Reset() { b.n = 0 }

// Rx receives from port into the batch's room and returns how many packets arrived.
func (b *Batch) Rx(port Port) int {
	n := port.Rx(b.pkts[b.n:])
	b.n += n
	return n
}

// Tx offers the batch to port and keeps, at the front, the packets it did not accept.
// It returns how many the port took.
func (b *Batch) Tx(port Port) int {
	n := port.Tx(b.pkts[:b.n])
	b.n = copy(b.pkts[:], b.pkts[n:b.n])
	return n
}

// Filter keeps the packets for which keep returns true, in order, and hands the others
// to drop (which takes ownership of their frames). A chain (PktMore) is one packet:
// keep sees its first segment, the whole chain stays or goes, and drop gets each of
// its segments. It returns how many packets were dropped.
func (b *Batch) Filter(keep func(*Pkt) bool, drop func(*Pkt)) int {
	w, dropped := 0, 0
	for i := 0; i < b.n; {
		j := i + 1 // the packet is pkts[i:j]
		for j < b.n && b.pkts[j-1].Flags&PktMore != 0 {
			j++
		}
		if keep(&b.pkts[i]) {
			if w != i { // a copy onto itself would stall store forwarding
				copy(b.pkts[w:], b.pkts[i:j])
			}
			w += j - i
		} else {
			for k := i; k < j; k++ {
				drop(&b.pkts[k])
			}
			dropped++
		}
		i = j
	}
	b.n = w
	return dropped
}
