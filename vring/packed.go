package vring

// Packed virtqueue, VIRTIO 1.2 §2.8.
//
// Layout (little-endian):
//
//	desc:         N × {addr u64, len u32, id u16, flags u16}
//	              written by the driver when made available, by the device
//	              when marked used; the flags word (id+flags) publishes it
//	driver event: off_wrap u16, flags u16  (driver writes: device→driver
//	              notification suppression)
//	device event: off_wrap u16, flags u16  (device writes: driver→device
//	              notification suppression)
//
// A descriptor is available when its AVAIL bit equals the driver's wrap
// counter and its USED bit does not; used when both equal the device's used
// wrap counter (§2.8.1).

// PackedSizes returns the byte sizes of the packed ring areas.
func PackedSizes(n int) (desc, event int) { return 16 * n, 4 }

// PackedRing is the host memory of a packed ring, already translated. The
// queue does not own it. All three slices must start 4-byte aligned. Plain
// data; the memory itself is shared with the peer.
type PackedRing struct {
	Desc        []byte
	DriverEvent []byte
	DeviceEvent []byte
}

const descWordOff = 12 // id u16 | flags u16 << 16

type packedCommon struct {
	desc, drvEv, devEv []byte
	mem                *Memory
	size               uint16
	eventIdx           bool
	indirect           bool
	inOrder            bool
	descFast           bool // desc is 8-byte aligned: batch loops may use descAt
	err                error
}

func (q *packedCommon) init(r PackedRing, mem *Memory, o Options) error {
	if !littleEndian {
		return ErrNotSupported
	}
	if err := o.validate(true); err != nil {
		return err
	}
	if len(r.Desc) < 16*o.Size || len(r.DriverEvent) < 4 || len(r.DeviceEvent) < 4 ||
		!aligned4(r.Desc) || !aligned4(r.DriverEvent) || !aligned4(r.DeviceEvent) {
		return ErrLayout
	}
	q.desc, q.drvEv, q.devEv, q.mem = r.Desc, r.DriverEvent, r.DeviceEvent, mem
	q.size = uint16(o.Size)
	q.eventIdx = o.Features&FeatureEventIdx != 0
	q.indirect = o.Features&FeatureIndirectDesc != 0
	q.inOrder = o.Features&FeatureInOrder != 0
	q.descFast = aligned8(r.Desc)
	return nil
}

// Err returns the error that broke the queue, or nil.
func (q *packedCommon) Err() error { return q.err }

// Size returns the queue size.
func (q *packedCommon) Size() int { return int(q.size) }

// advance moves ring position pos (with wrap counter) forward by k < 2*size.
func (q *packedCommon) advance(pos uint16, wrap bool, k uint16) (uint16, bool) {
	p := uint32(pos) + uint32(k)
	if p >= uint32(q.size) {
		p -= uint32(q.size)
		wrap = !wrap
	}
	return uint16(p), wrap
}

func isAvail(flags uint16, wrap bool) bool {
	a, u := flags&DescAvail != 0, flags&DescUsed != 0
	return a == wrap && u != wrap
}

func isUsed(flags uint16, wrap bool) bool {
	a, u := flags&DescAvail != 0, flags&DescUsed != 0
	return a == wrap && u == wrap
}

func wrapFlags(wrap bool, avail bool) uint16 {
	// Available: AVAIL = wrap, USED = !wrap. Used: both = wrap.
	switch {
	case avail && wrap:
		return DescAvail
	case avail:
		return DescUsed
	case wrap:
		return DescAvail | DescUsed
	}
	return 0
}

func offWrap(pos uint16, wrap bool) uint16 {
	if wrap {
		return pos | 1<<15
	}
	return pos
}

// packedNeedEvent decides a notification from an event suppression word
// (off_wrap | flags<<16) for positions published in (old, new], where new is
// at wrap counter wrap and k positions were published since old (§2.8.10).
func packedNeedEvent(ev uint32, eventIdx bool, new uint16, wrap bool, k int, size uint16) bool {
	if k == 0 {
		return false
	}
	switch uint16(ev >> 16) {
	case EventDisable:
		return false
	case EventDesc:
		if !eventIdx {
			return true
		}
	default:
		return true
	}
	if k >= int(size) {
		return true // the whole ring went by: the event position is inside
	}
	off := uint16(ev) & 0x7fff
	if (uint16(ev)>>15 != 0) != wrap {
		off -= size // event refers to the previous lap
	}
	return needEvent(off, new, new-uint16(k))
}
