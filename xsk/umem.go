package xsk

import (
	"fmt"
	"sync"

	"github.com/dpkit/dpkit/internal/afxdp"
	"github.com/dpkit/dpkit/pmd"
)

// UMEMOptions configure NewUMEM. The zero value gives a UMEM of its own with 4096
// frames of 2048 bytes, aligned mode.
type UMEMOptions struct {
	// Pool, when set, is registered as the UMEM: its frames are the UMEM chunks (a
	// frame's pool address is its UMEM address), so packets move between AF_XDP ports
	// and other ports of the same pool without copies. The pool must outlive the UMEM.
	// When nil, NewUMEM makes a pool from the fields below and closes it with the UMEM.
	Pool *pmd.Pool
	// Frames of the UMEM's own pool; 0 means 4096 (Open and OpenAll: enough to fill
	// every queue's fill and tx rings). Ignored with Pool.
	Frames int
	// FrameSize of the UMEM's own pool; 0 means 2048. Ignored with Pool.
	FrameSize int
	// Headroom of the UMEM's own pool (where packet data starts in a fresh frame); 0
	// means 256. Ignored with Pool.
	Headroom int
	// Unaligned registers the UMEM in unaligned-chunk mode
	// (XDP_UMEM_UNALIGNED_CHUNK_FLAG): needed for frame sizes other than 2048 and 4096.
	// Frames stay pool-aligned either way; the flag only changes how the kernel reads
	// addresses.
	Unaligned bool
}

// Validate reports whether the options are usable, naming the bad field.
func (o *UMEMOptions) Validate() error {
	if o.Pool != nil {
		fs := o.Pool.FrameSize()
		if fs < 2048 {
			return fmt.Errorf("%w: pool FrameSize %d below the kernel's 2048-byte chunk minimum", ErrOptions, fs)
		}
		if !o.Unaligned && fs != 2048 && fs != 4096 {
			return fmt.Errorf("%w: pool FrameSize %d needs Unaligned (aligned mode takes 2048 or 4096)", ErrOptions, fs)
		}
		return nil
	}
	if o.Frames < 0 || o.Frames > pmd.MaxRingSize {
		return fmt.Errorf("%w: Frames %d", ErrOptions, o.Frames)
	}
	fs := o.FrameSize
	if fs == 0 {
		fs = 2048
	}
	if fs < 2048 || fs > pmd.MaxFrameSize || fs&(fs-1) != 0 {
		return fmt.Errorf("%w: FrameSize %d must be a power of two from 2048", ErrOptions, fs)
	}
	if !o.Unaligned && fs > 4096 {
		return fmt.Errorf("%w: FrameSize %d needs Unaligned", ErrOptions, fs)
	}
	if o.Headroom < 0 || o.Headroom > fs-64 {
		return fmt.Errorf("%w: Headroom %d", ErrOptions, o.Headroom)
	}
	return nil
}

// UMEM is the packet memory AF_XDP sockets share with the kernel: a pmd.Pool's region,
// registered with the first socket bound on it; later sockets share it with
// XDP_SHARED_UMEM, each with its own fill and completion rings.
//
// UMEM is safe for concurrent use by its sockets' control calls (open, close). It must
// be closed after all its sockets.
type UMEM struct {
	pool      *pmd.Pool
	ownPool   bool
	headroom  uint32 // UMEM headroom registered with the kernel
	unaligned bool
	shift     uint8 // log2(frame size)

	mu     sync.Mutex
	socks  []*Socket // bound sockets, any of which can lend its fd to XDP_SHARED_UMEM
	closed bool
}

// NewUMEM prepares a UMEM. Nothing is registered with the kernel until the first
// socket is created on it.
//
// Headroom: the kernel puts received data XDP_PACKET_HEADROOM (256) bytes plus the
// UMEM headroom into a chunk. NewUMEM sets the UMEM headroom to the pool's headroom
// minus 256, so a received packet starts where the pool puts data in a fresh frame;
// pools with less than 256 bytes of headroom see received data at offset 256.
func NewUMEM(opts UMEMOptions) (*UMEM, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	u := &UMEM{pool: opts.Pool, unaligned: opts.Unaligned}
	if u.pool == nil {
		frames := opts.Frames
		if frames == 0 {
			frames = 4096
		}
		p, err := pmd.NewPool(pmd.PoolOptions{Frames: frames, FrameSize: opts.FrameSize, Headroom: opts.Headroom, Name: "xsk-umem"})
		if err != nil {
			return nil, err
		}
		u.pool, u.ownPool = p, true
	}
	if hr := u.pool.Headroom(); hr > afxdp.XDPPacketHeadroom {
		u.headroom = uint32(hr - afxdp.XDPPacketHeadroom)
	}
	for fs := u.pool.FrameSize(); fs > 1; fs >>= 1 {
		u.shift++
	}
	return u, nil
}

// Pool returns the pool whose region is the UMEM.
func (u *UMEM) Pool() *pmd.Pool { return u.pool }

// Unaligned reports whether the UMEM is in unaligned-chunk mode.
func (u *UMEM) Unaligned() bool { return u.unaligned }

// Close releases the UMEM's own pool, if it made one. Every socket on it must be
// closed first.
func (u *UMEM) Close() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	if len(u.socks) != 0 {
		return fmt.Errorf("xsk: UMEM closed with %d sockets open", len(u.socks))
	}
	u.closed = true
	if u.ownPool {
		return u.pool.Close()
	}
	return nil
}

// decode turns an rx or completion address into its frame and offset. In unaligned
// mode the kernel returns base | offset<<48 (xp_get_handle).
func (u *UMEM) decode(a uint64) (frame uint64, off uint64) {
	if u.unaligned {
		a = a&afxdp.UnalignedAddrMask + a>>afxdp.UnalignedOffsetShift
	}
	return a >> u.shift, a & (1<<u.shift - 1)
}
