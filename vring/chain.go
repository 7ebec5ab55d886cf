package vring

import "encoding/binary"

var le = binary.LittleEndian

// Seg is one descriptor of a chain: a guest address range the device reads
// (Write false) or writes (Write true). Addr is a guest address (guest
// physical or IOVA); translate it with Memory.Translate. The device side has
// already checked that the whole range is mapped. Plain data.
type Seg struct {
	Addr  uint64
	Len   uint32
	Write bool
}

// Chain is one available buffer popped by the device. Pop fills caller-owned
// Chains and reuses Segs' capacity like append: preallocate Segs with the
// largest chain you expect and popping allocates nothing. A Chain is plain
// data owned by the caller (not safe for concurrent use); its Segs describe
// guest memory the device may use until it pushes the chain's Used entry.
type Chain struct {
	// ID identifies the buffer in the used entry: the head descriptor index
	// (split) or the buffer id (packed).
	ID uint16
	// Slots is the number of ring descriptors the chain occupied (an
	// indirect chain occupies 1). Packed rings need it to place used
	// entries; Chain.Used copies it.
	Slots uint16
	// Segs lists the descriptors in chain order, indirect tables expanded.
	Segs []Seg
	// ReadLen and WriteLen are the total readable and writable bytes.
	ReadLen, WriteLen uint32
}

// Used returns the used entry that completes c with n bytes written.
func (c *Chain) Used(n uint32) Used { return Used{ID: c.ID, Len: n, Slots: c.Slots} }

// Used is one used (completed) buffer. Plain data.
type Used struct {
	ID  uint16 // head index (split) or buffer id (packed)
	Len uint32 // bytes the device wrote into the buffer's writable part
	// Slots is the ring descriptors the buffer occupied; required by the
	// packed device side (use Chain.Used), ignored by split rings.
	Slots uint16
}

// chainWalk accumulates one chain on the device side, checking each
// descriptor against the memory and the caps. It caches the bounds of the
// last region hit (per queue, so no sharing) to skip the region search.
type chainWalk struct {
	mem      *Memory
	maxBytes uint64
	maxDescs int
	total    uint64
	hitAddr  uint64 // last region hit: [hitAddr, hitAddr+hitLen)
	hitLen   uint64
}

// add appends one descriptor to c after the range checks. It returns the
// sentinel on failure. The fast path (range inside the cached region) is
// small enough to inline.
func (w *chainWalk) add(c *Chain, addr uint64, n uint32, write bool) error {
	off := addr - w.hitAddr
	if addr < w.hitAddr || off >= w.hitLen || uint64(n) > w.hitLen-off || len(c.Segs) >= w.maxDescs {
		return w.addSlow(c, addr, n, write)
	}
	w.total += uint64(n)
	c.Segs = append(c.Segs, Seg{Addr: addr, Len: n, Write: write})
	return nil
}

func (w *chainWalk) addSlow(c *Chain, addr uint64, n uint32, write bool) error {
	if len(c.Segs) >= w.maxDescs {
		return ErrChainTooLong
	}
	if err := w.mem.Check(addr, uint64(n)); err != nil {
		return err
	}
	if i := w.mem.find(addr); i >= 0 {
		r := &w.mem.regions[i]
		w.hitAddr, w.hitLen = r.Addr, uint64(len(r.Host))
	}
	w.total += uint64(n)
	c.Segs = append(c.Segs, Seg{Addr: addr, Len: n, Write: write})
	return nil
}

// finish checks the byte cap and computes the chain's totals.
func (w *chainWalk) finish(c *Chain) error {
	if w.total > w.maxBytes {
		return ErrChainTooLong
	}
	var r, wr uint32
	for i := range c.Segs {
		if c.Segs[i].Write {
			wr += c.Segs[i].Len
		} else {
			r += c.Segs[i].Len
		}
	}
	c.ReadLen, c.WriteLen = r, wr
	return nil
}

// ReadChain copies the readable part of c, in chain order, into p. It
// returns the bytes copied (short when p or the readable part is shorter).
func (m *Memory) ReadChain(p []byte, c *Chain) (int, error) {
	done := 0
	for _, s := range c.Segs {
		if s.Write || done == len(p) {
			continue
		}
		n := min(int(s.Len), len(p)-done)
		k, err := m.ReadAt(p[done:done+n], s.Addr)
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// WriteChain copies p into the writable part of c, in chain order. It
// returns the bytes written (short when the writable part is smaller).
func (m *Memory) WriteChain(p []byte, c *Chain) (int, error) {
	done := 0
	for _, s := range c.Segs {
		if !s.Write || done == len(p) {
			continue
		}
		n := min(int(s.Len), len(p)-done)
		k, err := m.WriteAt(p[done:done+n], s.Addr)
		done += k
		if err != nil {
			return done, err
		}
	}
	return done, nil
}

// IndirectTable is driver-owned memory for one indirect descriptor table:
// its guest address (or IOVA) and host bytes, at least 16 bytes per
// descriptor, 16-byte aligned in guest memory. The driver must not reuse
// it before the buffer is collected. Plain data.
type IndirectTable struct {
	Addr uint64
	Host []byte
}

// chainFits reports whether segs total at most 2^32-1 bytes: a driver must
// not add a longer chain (§2.7.5.2, §2.8.6), and neither a used length nor
// the writable capacity the driver checks it against can count past that.
func chainFits(segs []Seg) bool {
	var total uint64
	for i := range segs {
		total += uint64(segs[i].Len)
	}
	return total <= 1<<32-1
}

func putDesc(b []byte, addr uint64, n uint32, flags, next uint16) {
	b = b[:16]
	le.PutUint64(b[0:], addr)
	le.PutUint32(b[8:], n)
	le.PutUint16(b[12:], flags)
	le.PutUint16(b[14:], next)
}
