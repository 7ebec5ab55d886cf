package vhost

import (
	"runtime"
	"sync/atomic"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/vring"
)

// vq is one virtqueue of the device. Its configuration fields belong to the control
// goroutine. The datapath reaches the running ring only through active, under the busy
// handshake:
//
//	datapath: busy CAS 0→1 (fails: return 0); load active; work; busy = 0
//	control:  active = nil; spin (Gosched) until busy == 0; now the ring is its own
//
// so the datapath never waits for the control path, and the control path waits at most
// one burst before it may unmap memory or rewrite the ring.
type vq struct {
	idx     int
	num     uint32
	addr    vringAddr
	addrSet bool
	base    uint32 // SET_VRING_BASE value (packed: avail index | wrap<<15)
	baseSet bool   // base came from SET_VRING_BASE or a stop; else the ring is fresh
	kick    int    // eventfd or -1
	kickSet bool
	call    int // eventfd or -1
	errFd   int
	enabled bool

	// Packed rings: the used position and wrap counter to resume at, when usedSet;
	// else they are the available ones. Kept apart from base, whose used half in
	// QEMU's encoding is 0 both when absent (DPDK) and at position 0, wrap 0.
	usedPos  uint16
	usedWrap bool
	usedSet  bool

	busy   atomic.Uint32
	active atomic.Pointer[ring]
}

func newVQ(i int) *vq { return &vq{idx: i, kick: -1, call: -1, errFd: -1} }

// ring is a running queue: the vring device side plus the datapath's scratch. It is
// built by the control goroutine and used by the datapath under the busy flag.
type ring struct {
	split  *vring.SplitDevice
	packed *vring.PackedDevice
	mem    *vring.Memory
	cur    vring.Cursor // over mem, for the datapath's one-buffer translations
	call   int
	errFd  int // SET_VRING_ERR's eventfd or -1, signalled when the ring breaks
	hdrLen int
	mrg    bool
	broken bool
	// faulted: an access to guest memory faulted (see memfault.go); Rx and Tx
	// return 0 until the control goroutine drops the device.
	faulted bool
	// inOrder: a packed transmit queue with VIRTIO_F_IN_ORDER, completed with one
	// used descriptor per burst (its entries have no length to report).
	inOrder bool

	chains []vring.Chain // pop scratch; for the guest-RX queue also the stash
	burst  int           // chains popped at a time (chains[:burst]); the rest hold one packet's mergeable buffers
	sHead  int           // stash: chains[sHead:sTail] popped, not yet used
	sTail  int
	used   []vring.Used
	src    [][]byte // Rx: each popped chain's packet bytes when in one segment
	touch  byte     // Rx: sink of the loads that bring src in early
	sig    [8]byte
	log    *dirtyLog  // non-nil while LOG_ALL is on
	logAt  []logRange // what a push writes, to log
}

// maxChainSegs is the Segs capacity each chain slot starts with: enough for any
// chain a Linux or DPDK guest makes (at most MAX_SKB_FRAGS+2 buffers, 47 with the
// largest MAX_SKB_FRAGS), so popping allocates nothing.
const maxChainSegs = 64

// maxChainDescs caps the descriptors of one chain (vring Options.MaxChainDescs), as
// DPDK's vhost does (BUF_VECTOR_MAX); a longer chain breaks the ring like any bad
// chain. Without it a guest could make each chain as long as the queue (32768
// descriptors in one indirect table), walked on every burst, and each slot's Segs
// would grow to that and stay. A chain between maxChainSegs and this grows its
// slot's Segs once.
const maxChainDescs = 256

// maxMrgBufs caps the mergeable receive buffers one packet may span (its
// num_buffers), as DPDK's vhost caps them (BUF_VECTOR_MAX): 69 buffers of 1 KiB take
// a 70000-byte packet, more than a burst of chains.
const maxMrgBufs = 256

// mrgSlotSegs is the Segs capacity of the chain slots past a burst, which only a
// packet spanning more mergeable buffers than a burst fills: Linux and DPDK post
// such buffers as one descriptor each. A longer chain grows its slot's Segs once.
const mrgSlotSegs = 4

// newRing returns a ring that pops burst chains at a time and holds up to slots
// (at least burst) popped chains: more than a burst for a guest receive queue with
// MRG_RXBUF, whose packets may span up to maxMrgBufs buffers.
func newRing(burst, slots int) *ring {
	slots = max(slots, burst)
	r := &ring{errFd: -1, burst: burst, chains: make([]vring.Chain, slots), used: make([]vring.Used, slots), src: make([][]byte, burst)}
	for i := range r.chains {
		c := maxChainSegs
		if i >= burst {
			c = mrgSlotSegs
		}
		r.chains[i].Segs = make([]vring.Seg, 0, c)
	}
	return r
}

// fail marks the ring broken: it takes nothing more from the guest. The first time,
// it signals the front-end's error eventfd (vhost-user.rst, VHOST_USER_SET_VRING_ERR).
func (r *ring) fail() {
	if !r.broken {
		r.broken = true
		if r.errFd >= 0 {
			uds.Signal(r.errFd, &r.sig)
		}
	}
}

func (r *ring) pop(c []vring.Chain) (int, error) {
	if r.split != nil {
		return r.split.Pop(c)
	}
	return r.packed.Pop(c)
}

// unpop returns the last popped chains c to the ring (see vring's Unpop).
func (r *ring) unpop(c []vring.Chain) error {
	if r.split != nil {
		return r.split.Unpop(c)
	}
	return r.packed.Unpop(c)
}

func (r *ring) push(u []vring.Used) error {
	if len(u) == 0 {
		return nil
	}
	var err error
	if r.split != nil {
		err = r.split.Push(u)
	} else if r.inOrder {
		err = r.packed.PushInOrder(u)
	} else {
		err = r.packed.Push(u)
	}
	if err != nil {
		return err
	}
	r.notify()
	return nil
}

// notify follows the used entries just written: it logs the rings' pages while
// dirty logging is on and signals the call eventfd if the driver wants it.
func (r *ring) notify() {
	var notify bool
	if r.split != nil {
		notify = r.split.NeedNotify()
	} else {
		notify = r.packed.NeedNotify()
	}
	if r.log != nil {
		// Logged before the call: the front-end may sync the log once the guest
		// has seen the entries.
		r.markRings()
	}
	if notify && r.call >= 0 {
		uds.Signal(r.call, &r.sig)
	}
}

// markRings logs the ring memory a push writes.
func (r *ring) markRings() {
	for _, x := range r.logAt {
		r.log.mark(x.gpa, x.n)
	}
}

// base returns the ring's position for GET_VRING_BASE, giving back the chains popped
// into the stash but never used (they stay available to the next owner), and for a
// packed ring its used position and wrap counter.
func (r *ring) base() (v uint32, upos uint16, uwrap bool) {
	stashed := r.sTail - r.sHead
	if r.split != nil {
		return uint32(r.split.Base() - uint16(stashed)), 0, false
	}
	pos, wrap, upos, uwrap := r.packed.Base()
	size := uint16(r.packed.Size())
	for i := r.sHead; i < r.sTail; i++ {
		s := r.chains[i].Slots
		if pos >= s {
			pos -= s
		} else {
			pos = pos + size - s
			wrap = !wrap
		}
	}
	// QEMU's packed encoding; DPDK reads the low half.
	v = uint32(pos) | uint32(upos)<<16
	if wrap {
		v |= 1 << 15
	}
	if uwrap {
		v |= 1 << 31
	}
	return v, upos, uwrap
}

// stop takes the ring away from the datapath and waits for the datapath to leave it.
// It returns the ring that was running, or nil.
func (q *vq) stop() *ring {
	r := q.active.Swap(nil)
	for q.busy.Load() != 0 {
		runtime.Gosched()
	}
	if r != nil && !r.faulted {
		// base may write guest memory (a packed ring publishes its used flags);
		// a fault there leaves the base as it was.
		if guard(r.owns, func() { q.base, q.usedPos, q.usedWrap = r.base() }) == nil {
			q.baseSet, q.usedSet = true, r.packed != nil
		}
	}
	return r
}

// dropKick closes the kick eventfd: the ring starts again only with a new
// SET_VRING_KICK (vhost-user.rst: a ring stopped by GET_VRING_BASE waits for it).
func (q *vq) dropKick() {
	if q.kick >= 0 {
		uds.Close(q.kick)
		q.kick = -1
	}
	q.kickSet = false
}

// acquire is the datapath side of the handshake: the running ring or nil.
func (q *vq) acquire() *ring {
	if !q.busy.CompareAndSwap(0, 1) {
		return nil
	}
	r := q.active.Load()
	if r == nil {
		q.busy.Store(0)
	}
	return r
}

func (q *vq) release() { q.busy.Store(0) }

// closeFds closes the queue's eventfds.
func (q *vq) closeFds() {
	for _, p := range []*int{&q.kick, &q.call, &q.errFd} {
		if *p >= 0 {
			uds.Close(*p)
			*p = -1
		}
	}
	q.kickSet = false
}

// reset returns the queue to its state before any SET_VRING_*.
func (q *vq) reset() {
	q.stop()
	q.closeFds()
	q.num, q.addr, q.addrSet, q.base, q.baseSet, q.enabled = 0, vringAddr{}, false, 0, false, false
	q.usedPos, q.usedWrap, q.usedSet = 0, false, false
}
