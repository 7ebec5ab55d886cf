package vring

// Feature bits relevant to the ring (VIRTIO 1.2 §6). Options.Features holds the
// negotiated set as a mask of these values.
const (
	FeatureIndirectDesc   uint64 = 1 << 28 // VIRTIO_RING_F_INDIRECT_DESC
	FeatureEventIdx       uint64 = 1 << 29 // VIRTIO_RING_F_EVENT_IDX
	FeatureVersion1       uint64 = 1 << 32 // VIRTIO_F_VERSION_1
	FeatureAccessPlatform uint64 = 1 << 33 // VIRTIO_F_ACCESS_PLATFORM
	FeatureRingPacked     uint64 = 1 << 34 // VIRTIO_F_RING_PACKED
	FeatureInOrder        uint64 = 1 << 35 // VIRTIO_F_IN_ORDER
)

// Descriptor flags (§2.7.5, §2.8).
const (
	DescNext     uint16 = 1       // VIRTQ_DESC_F_NEXT
	DescWrite    uint16 = 2       // VIRTQ_DESC_F_WRITE
	DescIndirect uint16 = 4       // VIRTQ_DESC_F_INDIRECT
	DescAvail    uint16 = 1 << 7  // VIRTQ_DESC_F_AVAIL (packed)
	DescUsed     uint16 = 1 << 15 // VIRTQ_DESC_F_USED (packed)
)

// Split ring flags (§2.7.7, §2.7.10).
const (
	AvailNoInterrupt uint16 = 1 // VIRTQ_AVAIL_F_NO_INTERRUPT
	UsedNoNotify     uint16 = 1 // VIRTQ_USED_F_NO_NOTIFY
)

// Packed ring event suppression flags (§2.8.10).
const (
	EventEnable  uint16 = 0 // RING_EVENT_FLAGS_ENABLE
	EventDisable uint16 = 1 // RING_EVENT_FLAGS_DISABLE
	EventDesc    uint16 = 2 // RING_EVENT_FLAGS_DESC (needs EVENT_IDX)
)

// MaxQueueSize is the largest queue size for both layouts (§2.7, §2.8).
const MaxQueueSize = 32768

// Options configure a queue. The zero value is invalid (Size must be set);
// zero Features means no optional ring feature, zero MaxChainBytes means no
// cap beyond 4 GiB-1, zero MaxChainDescs the queue size. Plain data, copied
// by the constructors.
type Options struct {
	// Size is the queue size: 1..32768; a power of two for split rings,
	// any value for packed rings.
	Size int
	// Features is the negotiated feature mask (Feature* constants). Only
	// EVENT_IDX, INDIRECT_DESC and IN_ORDER change ring behaviour; VERSION_1
	// and ACCESS_PLATFORM change nothing here (the Memory is keyed by
	// whatever address space the device uses: guest-physical or IOVA).
	Features uint64
	// MaxChainBytes caps the total length of a chain popped by the device.
	// Zero means the only cap is that the total fits in uint32 (4 GiB-1).
	MaxChainBytes uint32
	// MaxChainDescs caps the descriptors of a chain popped by the device,
	// indirect tables expanded; a longer chain breaks the queue with
	// ErrChainTooLong. Zero, or more than Size, means Size, the spec's own
	// limit (§2.7.5.3, §2.8.7). Without a lower cap one chain of a large
	// queue can hold 32768 descriptors (a single indirect table of
	// zero-length entries), each walked on every pop and kept in the
	// Chain's Segs; DPDK's vhost stops at 256 (BUF_VECTOR_MAX), Linux's at
	// 1024 (UIO_MAXIOV).
	MaxChainDescs int
}

// Validate checks o: Size in 1..32768 and, unless Features has
// FeatureRingPacked, a power of two; MaxChainDescs not negative.
func (o *Options) Validate() error { return o.validate(o.Features&FeatureRingPacked != 0) }

func (o *Options) validate(packed bool) error {
	if o.Size < 1 || o.Size > MaxQueueSize {
		return ErrQueueSize
	}
	if !packed && o.Size&(o.Size-1) != 0 {
		return ErrQueueSize
	}
	if o.MaxChainDescs < 0 {
		return ErrInvalid
	}
	return nil
}

func (o *Options) maxDescs() int {
	if o.MaxChainDescs == 0 || o.MaxChainDescs > o.Size {
		return o.Size
	}
	return o.MaxChainDescs
}

func (o *Options) maxBytes() uint64 {
	if o.MaxChainBytes == 0 {
		return 1<<32 - 1
	}
	return uint64(o.MaxChainBytes)
}

// needEvent is vring_need_event (§2.7.10): true when event lies in the
// window (old, new] of indices published since the last decision. All
// arithmetic is modulo 2^16, as the spec requires.
func needEvent(event, new, old uint16) bool {
	return new-event-1 < new-old
}

// NeedEvent exposes vring_need_event for tests and peers.
func NeedEvent(event, new, old uint16) bool { return needEvent(event, new, old) }
