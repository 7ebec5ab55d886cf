package xsk

import (
	"fmt"
	"os"
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
	// FrameSize of the UMEM's own pool: a power of two from 2048 up to the page size
	// (4096 on most machines), the kernel's chunk size limits; 0 means 2048. Ignored
	// with Pool, whose frame size must keep to the same limits. Frames larger than a
	// page are out of reach; packets longer than a frame need Config.MultiBuffer.
	FrameSize int
	// Headroom of the UMEM's own pool (where packet data starts in a fresh frame); 0
	// means 256. Ignored with Pool.
	Headroom int
	// Unaligned registers the UMEM in unaligned-chunk mode
	// (XDP_UMEM_UNALIGNED_CHUNK_FLAG). Pool frames are powers of two, which aligned
	// mode takes, and stay pool-aligned either way; the flag only changes how the
	// kernel reads addresses (the offset in the top 16 bits).
	Unaligned bool
}

// Validate reports whether the options are usable, naming the bad field.
//
// The kernel takes a chunk size from 2048 (XDP_UMEM_MIN_CHUNK_SIZE) to PAGE_SIZE, a
// power of two in aligned mode, in either mode (xdp_umem_reg in net/xdp/xdp_umem.c);
// a larger one fails XDP_UMEM_REG with EINVAL, which would surface only at the first
// socket. Pool frame sizes are powers of two, so only the bounds need checking.
func (o *UMEMOptions) Validate() error {
	page := os.Getpagesize()
	if o.Pool != nil {
		fs := o.Pool.FrameSize()
		if fs < 2048 || fs > page {
			return fmt.Errorf("%w: pool FrameSize %d outside the kernel's chunk sizes, 2048 to the page size %d", ErrOptions, fs, page)
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
	if fs < 2048 || fs > page || fs&(fs-1) != 0 {
		return fmt.Errorf("%w: FrameSize %d must be a power of two from 2048 to the page size %d", ErrOptions, fs, page)
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
	opened *refs // the ports that close the UMEM, when Open made it
}

// openRefs returns the references of the ports that close the UMEM, if Open made it.
func (u *UMEM) openRefs() *refs {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.opened
}

func (u *UMEM) setOpenRefs(r *refs) {
	u.mu.Lock()
	u.opened = r
	u.mu.Unlock()
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
