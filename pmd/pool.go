package pmd

import (
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/dpkit/dpkit/internal/sysmem"
)

// Frame is a handle to one fixed-size frame of a Pool: its index. Handles, not
// pointers, travel through rings and batches, so a million packets in flight cost the
// garbage collector nothing.
type Frame uint32

// Hugepage policy of a pool's region.
type HugeMode int8

const (
	// HugeAuto uses 2 MiB hugepages when the machine has free ones and ordinary pages
	// otherwise, logging the fallback.
	HugeAuto HugeMode = 0
	// HugeRequire fails pool creation without hugepages.
	HugeRequire HugeMode = 1
	// HugeNever uses ordinary pages.
	HugeNever HugeMode = -1
)

// Defaults and limits of a pool.
const (
	DefaultFrameSize = 2048
	DefaultHeadroom  = 256
	MinHeadroom      = 128
	DefaultCacheSize = 256
	// MaxFrameSize keeps a frame's offsets and lengths within a Pkt's uint16 fields.
	MaxFrameSize = 1 << 16
)

// Errors of the pool.
var (
	ErrPoolOptions = errors.New("pmd: invalid pool options")
	// ErrBadFree counts in PoolStats.BadFrees; it is never returned on the hot path.
	// Only the bad frees the pool can see count (see Pool).
	ErrBadFree = errors.New("pmd: frame freed twice or not from this pool")
)

// PoolOptions configure NewPool. The zero value of each field but Frames is usable.
type PoolOptions struct {
	// Frames is the number of frames; required.
	Frames int
	// FrameSize in bytes, a power of two from 512 to 65536; 0 means 2048. AF_XDP's
	// aligned UMEM mode takes 2048 or 4096.
	FrameSize int
	// Headroom is where packet data starts in a fresh frame, leaving room to prepend
	// headers in place; at least 128, 0 means 256.
	Headroom int
	// Huge chooses hugepages; the zero value tries them and falls back.
	Huge HugeMode
	// Shared backs the region with a memfd so another process can map it (vhost-user
	// frontends hand it to the backend). Fd returns the descriptor.
	Shared bool
	// Name labels the region in logs and /proc.
	Name string
	// Logger receives the hugepage fallback notice; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether the options are usable, naming the bad field.
func (o *PoolOptions) Validate() error {
	if o.Frames <= 0 || o.Frames > MaxRingSize {
		return fmt.Errorf("%w: Frames %d must be in 1..%d", ErrPoolOptions, o.Frames, MaxRingSize)
	}
	fs := o.frameSize()
	if fs < 512 || fs > MaxFrameSize || fs&(fs-1) != 0 {
		return fmt.Errorf("%w: FrameSize %d must be a power of two in 512..65536", ErrPoolOptions, fs)
	}
	hr := o.headroom()
	if hr < MinHeadroom || hr > fs-64 {
		return fmt.Errorf("%w: Headroom %d must be in %d..FrameSize-64", ErrPoolOptions, hr, MinHeadroom)
	}
	if o.Huge < HugeNever || o.Huge > HugeRequire {
		return fmt.Errorf("%w: Huge %d unknown", ErrPoolOptions, o.Huge)
	}
	return nil
}

func (o *PoolOptions) frameSize() int {
	if o.FrameSize == 0 {
		return DefaultFrameSize
	}
	return o.FrameSize
}

func (o *PoolOptions) headroom() int {
	if o.Headroom == 0 {
		return DefaultHeadroom
	}
	return o.Headroom
}

// Frame ownership states.
const (
	frameFree  = 0
	frameInUse = 1
)

// Pool is a fixed set of equal frames carved from one mapped region, with a lockless
// shared free list, in the manner of a DPDK mempool. Workers take and return frames
// through their own Cache, which touches the shared list only in bulk.
//
// The region is exposed (Region, Addr, FrameAt) so that one region can be registered as
// an AF_XDP UMEM and as a VFIO DMA mapping at once: a frame's offset in the region is its
// UMEM address and, plus the IOVA base, its DMA address.
//
// Pool is safe for concurrent use. Ownership of a frame moves with its handle: whoever
// holds a handle taken from the pool must return it exactly once. Returning a frame
// that is already free, or a handle out of range, is refused and counted in BadFrees.
// Not every bad free can be seen, a handle being an index: a second free after the
// frame was taken again, and a frame of another pool whose index is in range and in
// use in this one, are accepted, and the pool then hands out a frame still in use.
// Two goroutines freeing the same frame at the same moment is a data race on its state
// byte that the race detector reports.
type Pool struct {
	name      string
	m         *sysmem.Mapping
	mem       []byte
	frameSize int
	headroom  int
	n         uint32

	free *Ring[Frame]
	// state has one byte per frame: frameFree or frameInUse. A frame's byte is written
	// only by the goroutine that owns the frame; ownership moves through the free ring,
	// whose release/acquire pairs order those writes.
	state []uint8

	exhausted atomic.Uint64
	badFrees  atomic.Uint64
	closed    atomic.Bool
}

// NewPool maps a region and carves it into frames, all free.
func NewPool(opts PoolOptions) (*Pool, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	fs, hr := opts.frameSize(), opts.headroom()
	huge := map[HugeMode]int{HugeAuto: 0, HugeRequire: 1, HugeNever: -1}[opts.Huge]
	m, hugeErr, err := sysmem.Map(sysmem.Options{
		Size: opts.Frames * fs, Huge: huge, Shared: opts.Shared, Name: opts.Name,
	})
	if err != nil {
		return nil, fmt.Errorf("pmd: pool %q: %w", opts.Name, err)
	}
	if hugeErr != nil {
		log := opts.Logger
		if log == nil {
			log = slog.Default()
		}
		log.Info("pmd: pool uses ordinary pages", "pool", opts.Name, "reason", hugeErr)
	}
	ringSize := 1
	for ringSize < opts.Frames {
		ringSize <<= 1
	}
	r, err := NewRing[Frame](ringSize, RingMPMC)
	if err != nil {
		m.Unmap()
		return nil, err
	}
	p := &Pool{
		name:      opts.Name,
		m:         m,
		mem:       m.Mem[:opts.Frames*fs],
		frameSize: fs,
		headroom:  hr,
		n:         uint32(opts.Frames),
		free:      r,
		state:     make([]uint8, opts.Frames),
	}
	var chunk [256]Frame
	for f := 0; f < opts.Frames; {
		k := 0
		for ; k < len(chunk) && f < opts.Frames; k, f = k+1, f+1 {
			chunk[k] = Frame(f)
		}
		r.Enqueue(chunk[:k])
	}
	return p, nil
}

// Close unmaps the region. Every frame must be back in the pool and no Cache may be
// used afterwards; Close reports frames still out as an error but unmaps regardless.
func (p *Pool) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	out := int(p.n) - p.free.Len()
	err := p.m.Unmap()
	p.mem = nil
	if out != 0 && err == nil {
		err = fmt.Errorf("pmd: pool %q closed with %d frames not returned", p.name, out)
	}
	return err
}

// Frames returns the number of frames in the pool.
func (p *Pool) Frames() int { return int(p.n) }

// FrameSize returns the size of each frame in bytes.
func (p *Pool) FrameSize() int { return p.frameSize }

// Headroom returns the offset at which data starts in a freshly taken frame.
func (p *Pool) Headroom() int { return p.headroom }

// Huge reports whether the region lives on hugepages.
func (p *Pool) Huge() bool { return p.m.Huge }

// Fd returns the memfd behind a Shared pool, or -1.
func (p *Pool) Fd() int { return p.m.Fd }

// Region returns the whole mapped region. It stays valid until Close.
func (p *Pool) Region() []byte { return p.mem }

// Addr returns the offset of frame f in the region: its AF_XDP UMEM address and its
// DMA address relative to the region's IOVA base.
func (p *Pool) Addr(f Frame) uint64 { return uint64(f) * uint64(p.frameSize) }

// FrameAt returns the frame holding region offset addr, and whether addr lies in the
// region. Addresses coming back from a kernel ring or a device go through it.
func (p *Pool) FrameAt(addr uint64) (Frame, bool) {
	f := addr / uint64(p.frameSize)
	return Frame(f), f < uint64(p.n)
}

// Bytes returns the whole of frame f. The slice aliases the region: it stays valid while
// the caller owns f and must not be kept after f is freed.
func (p *Pool) Bytes(f Frame) []byte {
	off := int(f) * p.frameSize
	return p.mem[off : off+p.frameSize : off+p.frameSize]
}

// Data returns the packet bytes of pk, pk.Len bytes from pk.Off in its frame. Like
// Bytes, it stays valid while the caller owns the frame.
func (p *Pool) Data(pk *Pkt) []byte {
	return p.Bytes(pk.Frame)[pk.Off:][:pk.Len]
}

// Append grows pk by n bytes at its end, within the frame and the 16-bit length, and
// reports whether it fit.
func (p *Pool) Append(pk *Pkt, n int) bool {
	// Compare n with the room left rather than adding it to the offset and length:
	// the sum overflows for an n near math.MaxInt, turns negative and passes both
	// checks. The room is at most a frame, so Len+n below cannot overflow.
	room := p.frameSize - int(pk.Off) - int(pk.Len)
	if n < 0 || n > room || int(pk.Len)+n > 0xffff {
		return false
	}
	pk.Len += uint16(n)
	return true
}

// Get takes up to len(dst) frames from the shared free list and returns how many it
// took. Workers should use a Cache instead; Get suits control paths.
func (p *Pool) Get(dst []Frame) int {
	n := p.free.Dequeue(dst)
	for _, f := range dst[:n] {
		p.state[f] = frameInUse
	}
	if n < len(dst) {
		p.exhausted.Add(1)
	}
	return n
}

// Put returns frames to the shared free list. Frames that are already free or not of
// this pool are refused and counted in BadFrees.
func (p *Pool) Put(src []Frame) {
	start := 0
	for i, f := range src {
		if !p.release(f) {
			p.putRun(src[start:i])
			start = i + 1
		}
	}
	p.putRun(src[start:])
}

// release marks f free, refusing a double or foreign free.
func (p *Pool) release(f Frame) bool {
	if uint32(f) >= p.n || p.state[f] != frameInUse {
		p.badFrees.Add(1)
		return false
	}
	p.state[f] = frameFree
	return true
}

func (p *Pool) putRun(run []Frame) {
	if len(run) > 0 && !p.free.EnqueueBulk(run) {
		// The ring holds every frame of the pool, so a free frame always has a slot.
		panic("pmd: pool free ring overflow")
	}
}

// PoolStats are a pool's counters.
type PoolStats struct {
	Frames    int    // frames in the pool
	Free      int    // frames in the shared free list (not counting those in caches)
	Exhausted uint64 // requests that got fewer frames than asked
	BadFrees  uint64 // double or foreign frees refused
}

// Stats returns a snapshot of the pool's counters.
func (p *Pool) Stats() PoolStats {
	return PoolStats{
		Frames:    int(p.n),
		Free:      min(p.free.Len(), int(p.n)), // the ring may be larger than the pool
		Exhausted: p.exhausted.Load(),
		BadFrees:  p.badFrees.Load(),
	}
}
