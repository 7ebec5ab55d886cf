package vringtest

import (
	"encoding/binary"
	"fmt"

	"github.com/dpkit/dpkit/vring"
)

var le = binary.LittleEndian

// Guest is fake guest memory: region A and region B with an unmapped gap
// between them. Rings and buffers are allocated from A.
type Guest struct {
	Mem   *vring.Memory
	A, B  []byte
	ABase uint64
	BBase uint64
	next  uint64 // bump allocator offset in A
}

// Region placement of NewGuest.
const (
	ABase    = 0x10000    // guest address of region A
	GapSize  = 0x10000    // unmapped bytes between A and B
	UserBase = 0x7f000000 // UserAddr = UserBase + guest address
)

// NewGuest builds two regions of sizeA and sizeB bytes.
func NewGuest(sizeA, sizeB int) *Guest {
	g := &Guest{A: make([]byte, sizeA), B: make([]byte, sizeB), ABase: ABase}
	g.BBase = ABase + uint64(sizeA) + GapSize
	var err error
	g.Mem, err = vring.NewMemory(
		vring.Region{Addr: g.ABase, UserAddr: UserBase + g.ABase, Host: g.A},
		vring.Region{Addr: g.BBase, UserAddr: UserBase + g.BBase, Host: g.B},
	)
	if err != nil {
		panic(err)
	}
	return g
}

// Gap returns a guest address inside the unmapped gap.
func (g *Guest) Gap() uint64 { return g.ABase + uint64(len(g.A)) + GapSize/2 }

// AEnd returns the first guest address after region A.
func (g *Guest) AEnd() uint64 { return g.ABase + uint64(len(g.A)) }

// Alloc returns the guest address of n zeroed bytes in A aligned to align.
func (g *Guest) Alloc(n, align int) uint64 {
	off := (g.next + uint64(align) - 1) &^ (uint64(align) - 1)
	if off+uint64(n) > uint64(len(g.A)) {
		panic(fmt.Sprintf("vringtest: guest region A exhausted (%d bytes)", len(g.A)))
	}
	g.next = off + uint64(n)
	clear(g.A[off : off+uint64(n)])
	return g.ABase + off
}

// Reset frees every allocation.
func (g *Guest) Reset() { g.next = 0 }

// Bytes returns the host bytes of [addr, addr+n) or nil if not contiguous.
func (g *Guest) Bytes(addr uint64, n int) []byte {
	b, err := g.Mem.Slice(addr, uint64(n))
	if err != nil {
		return nil
	}
	return b
}

// Desc is a split descriptor as the driver writes it (§2.7.5).
type Desc struct {
	Addr  uint64
	Len   uint32
	Flags uint16
	Next  uint16
}

// Split is a split ring in guest memory plus a mock driver and a mock
// device writing it with plain stores.
type Split struct {
	G                             *Guest
	N                             int
	DescAddr, AvailAddr, UsedAddr uint64
	Ring                          vring.SplitRing
	nextDesc                      int
}

// NewSplit allocates a split ring of n entries in g (zeroed).
func NewSplit(g *Guest, n int) *Split {
	d, a, u := vring.SplitSizes(n)
	s := &Split{G: g, N: n}
	s.DescAddr = g.Alloc(d, 16)
	s.AvailAddr = g.Alloc(a, 4)
	s.UsedAddr = g.Alloc(u, 4)
	s.Ring = vring.SplitRing{Desc: g.Bytes(s.DescAddr, d), Avail: g.Bytes(s.AvailAddr, a), Used: g.Bytes(s.UsedAddr, u)}
	return s
}

// SetDesc writes descriptor i of the table verbatim.
func (s *Split) SetDesc(i int, d Desc) { putDesc(s.Ring.Desc[16*i:], d) }

// GetDesc reads descriptor i.
func (s *Split) GetDesc(i int) Desc { return getDesc(s.Ring.Desc[16*i:]) }

func putDesc(b []byte, d Desc) {
	le.PutUint64(b[0:], d.Addr)
	le.PutUint32(b[8:], d.Len)
	le.PutUint16(b[12:], d.Flags)
	le.PutUint16(b[14:], d.Next)
}

func getDesc(b []byte) Desc {
	return Desc{Addr: le.Uint64(b), Len: le.Uint32(b[8:]), Flags: le.Uint16(b[12:]), Next: le.Uint16(b[14:])}
}

// Chain writes segs as a chain at consecutive descriptor indices (wrapping)
// from an internal cursor and returns the head. It does not offer it.
func (s *Split) Chain(segs ...vring.Seg) uint16 {
	head := s.nextDesc
	for k, sg := range segs {
		i := (head + k) % s.N
		d := Desc{Addr: sg.Addr, Len: sg.Len}
		if sg.Write {
			d.Flags |= vring.DescWrite
		}
		if k < len(segs)-1 {
			d.Flags |= vring.DescNext
			d.Next = uint16((i + 1) % s.N)
		}
		s.SetDesc(i, d)
	}
	s.nextDesc = (head + len(segs)) % s.N
	return uint16(head)
}

// Indirect writes descs as an indirect table in guest memory and returns
// its address and byte length.
func (s *Split) Indirect(descs ...Desc) (uint64, uint32) {
	addr := s.G.Alloc(16*max(len(descs), 1), 16)
	b := s.G.Bytes(addr, 16*max(len(descs), 1))
	for k, d := range descs {
		putDesc(b[16*k:], d)
	}
	return addr, uint32(16 * len(descs))
}

// Offer writes heads into the avail ring and advances avail.idx.
func (s *Split) Offer(heads ...uint16) {
	idx := s.AvailIdx()
	for _, h := range heads {
		le.PutUint16(s.Ring.Avail[4+2*(int(idx)%s.N):], h)
		idx++
	}
	s.SetAvailIdx(idx)
}

// AvailIdx returns avail.idx.
func (s *Split) AvailIdx() uint16 { return le.Uint16(s.Ring.Avail[2:]) }

// SetAvailIdx writes avail.idx verbatim.
func (s *Split) SetAvailIdx(v uint16) { le.PutUint16(s.Ring.Avail[2:], v) }

// AvailFlags returns avail.flags.
func (s *Split) AvailFlags() uint16 { return le.Uint16(s.Ring.Avail[0:]) }

// SetAvailFlags writes avail.flags.
func (s *Split) SetAvailFlags(v uint16) { le.PutUint16(s.Ring.Avail[0:], v) }

// SetUsedEvent writes used_event.
func (s *Split) SetUsedEvent(v uint16) { le.PutUint16(s.Ring.Avail[4+2*s.N:], v) }

// UsedIdx returns used.idx.
func (s *Split) UsedIdx() uint16 { return le.Uint16(s.Ring.Used[2:]) }

// UsedFlags returns used.flags.
func (s *Split) UsedFlags() uint16 { return le.Uint16(s.Ring.Used[0:]) }

// AvailEvent returns avail_event.
func (s *Split) AvailEvent() uint16 { return le.Uint16(s.Ring.Used[4+8*s.N:]) }

// UsedElem returns the used entry at ring position pos (taken mod N).
func (s *Split) UsedElem(pos uint16) (id, n uint32) {
	e := s.Ring.Used[4+8*(int(pos)%s.N):]
	return le.Uint32(e), le.Uint32(e[4:])
}

// PutUsed acts as a (possibly hostile) device: it writes a used entry at
// used.idx and advances used.idx.
func (s *Split) PutUsed(id, n uint32) {
	idx := s.UsedIdx()
	e := s.Ring.Used[4+8*(int(idx)%s.N):]
	le.PutUint32(e, id)
	le.PutUint32(e[4:], n)
	s.SetUsedIdx(idx + 1)
}

// PutUsedBatch acts as a device with VIRTIO_F_IN_ORDER completing a batch of
// batch buffers with one used entry (§2.7.9): the entry, for the batch's last
// buffer, goes at used.idx, the position of its first, and used.idx advances by
// batch.
func (s *Split) PutUsedBatch(id, n uint32, batch uint16) {
	idx := s.UsedIdx()
	e := s.Ring.Used[4+8*(int(idx)%s.N):]
	le.PutUint32(e, id)
	le.PutUint32(e[4:], n)
	s.SetUsedIdx(idx + batch)
}

// SetUsedIdx writes used.idx verbatim.
func (s *Split) SetUsedIdx(v uint16) { le.PutUint16(s.Ring.Used[2:], v) }

// PackedDesc is a packed descriptor (§2.8), flags verbatim.
type PackedDesc struct {
	Addr  uint64
	Len   uint32
	ID    uint16
	Flags uint16
}

// Packed is a packed ring in guest memory with a mock driver (Offer) and a
// mock device (PutUsed) that keep their own positions and wrap counters.
type Packed struct {
	G                              *Guest
	N                              int
	DescAddr, DrvEvAddr, DevEvAddr uint64
	Ring                           vring.PackedRing
	availPos                       int
	availWrap                      bool
	usedPos                        int
	usedWrap                       bool
}

// NewPacked allocates a packed ring of n entries in g (zeroed); both mock
// wrap counters start at 1.
func NewPacked(g *Guest, n int) *Packed {
	p := &Packed{G: g, N: n, availWrap: true, usedWrap: true}
	p.DescAddr = g.Alloc(16*n, 16)
	p.DrvEvAddr = g.Alloc(4, 4)
	p.DevEvAddr = g.Alloc(4, 4)
	p.Ring = vring.PackedRing{Desc: g.Bytes(p.DescAddr, 16*n), DriverEvent: g.Bytes(p.DrvEvAddr, 4), DeviceEvent: g.Bytes(p.DevEvAddr, 4)}
	return p
}

// SetDesc writes descriptor i verbatim.
func (p *Packed) SetDesc(i int, d PackedDesc) {
	b := p.Ring.Desc[16*i:]
	le.PutUint64(b, d.Addr)
	le.PutUint32(b[8:], d.Len)
	le.PutUint16(b[12:], d.ID)
	le.PutUint16(b[14:], d.Flags)
}

// GetDesc reads descriptor i.
func (p *Packed) GetDesc(i int) PackedDesc {
	b := p.Ring.Desc[16*i:]
	return PackedDesc{Addr: le.Uint64(b), Len: le.Uint32(b[8:]), ID: le.Uint16(b[12:]), Flags: le.Uint16(b[14:])}
}

// AvailBits returns the AVAIL/USED bits that make a descriptor available
// for driver wrap counter wrap.
func AvailBits(wrap bool) uint16 {
	if wrap {
		return vring.DescAvail
	}
	return vring.DescUsed
}

// UsedBits returns the bits that mark a descriptor used for wrap.
func UsedBits(wrap bool) uint16 {
	if wrap {
		return vring.DescAvail | vring.DescUsed
	}
	return 0
}

// Offer writes descs at the mock driver position, OR-ing the available
// bits of the current wrap counter into each Flags (NEXT, WRITE, INDIRECT
// are the caller's), head last. It returns the head position.
func (p *Packed) Offer(descs ...PackedDesc) int {
	head := p.availPos
	pos, wrap := p.availPos, p.availWrap
	var headDesc PackedDesc
	for k, d := range descs {
		d.Flags = d.Flags&^(vring.DescAvail|vring.DescUsed) | AvailBits(wrap)
		if k == 0 {
			headDesc = d
		} else {
			p.SetDesc(pos, d)
		}
		pos++
		if pos == p.N {
			pos, wrap = 0, !wrap
		}
	}
	if len(descs) > 0 {
		p.SetDesc(head, headDesc)
	}
	p.availPos, p.availWrap = pos, wrap
	return head
}

// Chain offers segs as one buffer with id, NEXT set on all but the last.
func (p *Packed) Chain(id uint16, segs ...vring.Seg) int {
	ds := make([]PackedDesc, len(segs))
	for k, s := range segs {
		ds[k] = PackedDesc{Addr: s.Addr, Len: s.Len, ID: id}
		if s.Write {
			ds[k].Flags |= vring.DescWrite
		}
		if k < len(segs)-1 {
			ds[k].Flags |= vring.DescNext
		}
	}
	return p.Offer(ds...)
}

// Indirect writes an indirect table (packed layout: id and flags per
// entry) and returns its address and byte length.
func (p *Packed) Indirect(descs ...PackedDesc) (uint64, uint32) {
	addr := p.G.Alloc(16*max(len(descs), 1), 16)
	b := p.G.Bytes(addr, 16*max(len(descs), 1))
	for k, d := range descs {
		le.PutUint64(b[16*k:], d.Addr)
		le.PutUint32(b[16*k+8:], d.Len)
		le.PutUint16(b[16*k+12:], d.ID)
		le.PutUint16(b[16*k+14:], d.Flags)
	}
	return addr, uint32(16 * len(descs))
}

// AvailPos returns the mock driver's next position and wrap counter.
func (p *Packed) AvailPos() (int, bool) { return p.availPos, p.availWrap }

// PutUsed acts as a (possibly hostile) device: it writes a used descriptor
// at the mock used position and skips slots positions.
func (p *Packed) PutUsed(id uint16, n uint32, slots int) {
	f := UsedBits(p.usedWrap)
	if n > 0 {
		f |= vring.DescWrite // §2.8.4: len is valid only with WRITE
	}
	p.SetDesc(p.usedPos, PackedDesc{Len: n, ID: id, Flags: f})
	p.usedPos += slots
	for p.usedPos >= p.N {
		p.usedPos -= p.N
		p.usedWrap = !p.usedWrap
	}
}

// DriverEvent returns the driver event suppression structure.
func (p *Packed) DriverEvent() (offWrap, flags uint16) {
	return le.Uint16(p.Ring.DriverEvent), le.Uint16(p.Ring.DriverEvent[2:])
}

// SetDriverEvent writes the driver event suppression structure.
func (p *Packed) SetDriverEvent(offWrap, flags uint16) {
	le.PutUint16(p.Ring.DriverEvent, offWrap)
	le.PutUint16(p.Ring.DriverEvent[2:], flags)
}

// DeviceEvent returns the device event suppression structure.
func (p *Packed) DeviceEvent() (offWrap, flags uint16) {
	return le.Uint16(p.Ring.DeviceEvent), le.Uint16(p.Ring.DeviceEvent[2:])
}

// SetDeviceEvent writes the device event suppression structure.
func (p *Packed) SetDeviceEvent(offWrap, flags uint16) {
	le.PutUint16(p.Ring.DeviceEvent, offWrap)
	le.PutUint16(p.Ring.DeviceEvent[2:], flags)
}
