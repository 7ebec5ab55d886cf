package xsk

import (
	"errors"
	"fmt"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpkit/dpkit/internal/afxdp"
)

// BindMode chooses between zero-copy and copy mode.
type BindMode int8

const (
	// BindAuto tries zero-copy and falls back to copy mode; Socket.ZeroCopy says which
	// one is active.
	BindAuto BindMode = iota
	// BindZeroCopy requires zero-copy (XDP_ZEROCOPY).
	BindZeroCopy
	// BindCopy requires copy mode (XDP_COPY).
	BindCopy
)

func (m BindMode) String() string {
	switch m {
	case BindAuto:
		return "auto"
	case BindZeroCopy:
		return "zero-copy"
	case BindCopy:
		return "copy"
	}
	return "unknown"
}

// DefaultRingSize is the size of each ring when Config leaves it zero.
const DefaultRingSize = 2048

// Config configure a socket. The zero value binds queue 0 with 2048-entry rings, tries
// zero-copy, and uses need_wakeup.
type Config struct {
	// Queue is the device queue to bind.
	Queue int
	// RxSize, TxSize, FillSize and CompSize are ring sizes (powers of two); 0 means
	// DefaultRingSize. A negative RxSize or TxSize leaves that ring out (a tx-only or
	// rx-only socket).
	RxSize, TxSize, FillSize, CompSize int
	// Bind chooses zero-copy or copy mode. A socket sharing a UMEM gets the mode of
	// the UMEM's sockets: BindZeroCopy or BindCopy must match it (else ErrOptions).
	Bind BindMode
	// NoNeedWakeup turns off XDP_USE_NEED_WAKEUP: the kernel then never waits for a
	// kick on rx, and every transmit kicks. Only useful with busy polling drivers.
	NoNeedWakeup bool
	// MultiBuffer sets XDP_USE_SG: packets larger than a frame arrive, and may be
	// sent, as chains of descriptors. Needs a frags-aware XDP program (the built-in one
	// is) and kernel 6.6+.
	MultiBuffer bool
	// BusyPoll, when > 0, sets SO_PREFER_BUSY_POLL and SO_BUSY_POLL to this many
	// microseconds, and SO_BUSY_POLL_BUDGET to BusyPollBudget (0 means 64). Failing to
	// set them is an error wrapping ErrNotSupported. The socket's syscalls then run the
	// driver's NAPI, so every empty receive and every transmit makes one, need_wakeup
	// or not.
	BusyPoll       time.Duration
	BusyPollBudget int
	// TxBudget, when > 0, sets how many frames one kick transmits in copy mode
	// (XDP_MAX_TX_SKB_BUDGET, kernel 6.17+); ignored where unsupported. The kernel
	// takes 32 (its default) up to the tx ring's size, on a socket with a tx ring.
	TxBudget int
}

func ringSize(v int) (uint32, bool) {
	if v == 0 {
		return DefaultRingSize, true
	}
	if v < 0 {
		return 0, true
	}
	return uint32(v), v&(v-1) == 0 && v <= 1<<20
}

// Validate reports whether the configuration is usable, naming the bad field.
func (c *Config) Validate() error {
	if c.Queue < 0 {
		return fmt.Errorf("%w: Queue %d", ErrOptions, c.Queue)
	}
	for _, f := range []struct {
		name string
		v    int
		opt  bool
	}{{"RxSize", c.RxSize, true}, {"TxSize", c.TxSize, true}, {"FillSize", c.FillSize, false}, {"CompSize", c.CompSize, false}} {
		if f.v < 0 && !f.opt {
			return fmt.Errorf("%w: %s %d", ErrOptions, f.name, f.v)
		}
		if _, ok := ringSize(f.v); !ok {
			return fmt.Errorf("%w: %s %d is not a power of two up to 2^20", ErrOptions, f.name, f.v)
		}
	}
	if c.RxSize < 0 && c.TxSize < 0 {
		return fmt.Errorf("%w: a socket needs an rx or a tx ring", ErrOptions)
	}
	if c.Bind < BindAuto || c.Bind > BindCopy {
		return fmt.Errorf("%w: Bind %d", ErrOptions, c.Bind)
	}
	if c.BusyPoll < 0 || c.BusyPollBudget < 0 || c.TxBudget < 0 {
		return fmt.Errorf("%w: negative busy-poll or tx budget", ErrOptions)
	}
	// The kernel takes SO_BUSY_POLL as an int of microseconds and the budget as at
	// most 65535 (sk_setsockopt): a shorter or longer time would be cut, to 0 (off)
	// or to another value, without an error.
	if c.BusyPoll != 0 && (c.BusyPoll < time.Microsecond || c.BusyPoll/time.Microsecond > math.MaxInt32) {
		return fmt.Errorf("%w: BusyPoll %v not in 1µs..%v", ErrOptions, c.BusyPoll, math.MaxInt32*time.Microsecond)
	}
	if c.BusyPollBudget > math.MaxUint16 {
		return fmt.Errorf("%w: BusyPollBudget %d above 65535", ErrOptions, c.BusyPollBudget)
	}
	if c.TxBudget > 0 {
		// The kernel refuses any other budget with EACCES (xsk_setsockopt), which
		// would surface from NewSocket as "permission denied".
		tx, _ := ringSize(c.TxSize)
		if tx == 0 || c.TxBudget < minTxBudget || c.TxBudget > int(tx) {
			return fmt.Errorf("%w: TxBudget %d needs a tx ring and must be from %d to the tx ring's size %d", ErrOptions, c.TxBudget, minTxBudget, tx)
		}
	}
	return nil
}

// minTxBudget is the least XDP_MAX_TX_SKB_BUDGET the kernel takes (TX_BATCH_SIZE, also
// its default).
const minTxBudget = 32

// Desc is an AF_XDP descriptor (struct xdp_desc): Len bytes at UMEM address Addr.
// Options has OptMore on every fragment of a multi-buffer packet but the last.
type Desc struct {
	Addr    uint64
	Len     uint32
	Options uint32
}

// OptMore is XDP_PKT_CONTD: the packet continues in the next descriptor.
const OptMore = afxdp.XDPPktContd

// Socket is one AF_XDP socket bound to a device queue, with its four rings. It is the
// low-level API: it moves UMEM addresses and descriptors and leaves frame ownership to
// the caller (Port builds on it and tracks every frame).
//
// A Socket is owned by one goroutine for its rx side (Fill, Receive) and one for its tx
// side (Transmit, Complete); Stats may be called from any goroutine; Close once, after
// both have stopped.
type Socket struct {
	fd       int
	umem     *UMEM
	ifindex  int
	nsDev    uint64 // network namespace the socket was created in, where ifindex
	nsIno    uint64 // names its device (nsfs device and inode)
	queue    int
	zeroCopy bool
	wakeup   bool
	busyPoll bool // the syscalls drive the device: make them whether asked or not
	sg       bool
	maxSegs  int // most descriptors the kernel takes for one tx packet
	fill     *afxdp.ProdRing[uint64]
	comp     *afxdp.ConsRing[uint64]
	rx       *afxdp.ConsRing[afxdp.Desc]
	tx       *afxdp.ProdRing[afxdp.Desc]
	maps     [4][]byte
	kicks    atomic.Uint64 // wakeups from the rx and the tx goroutine
	kickErrs atomic.Uint64
	kickBusy atomic.Uint64
	kickDown atomic.Uint64

	// mu guards closed and fd between Close and Stats, which any goroutine may call:
	// without it Stats could read the descriptor as Close releases it, and ask a new
	// socket that reused the number for its counters. Taken after umem.mu.
	mu     sync.Mutex
	closed bool
}

// rebindWindow is how long bind retries EBUSY: closing a socket releases its queue from
// deferred kernel work, some tens of milliseconds later.
const rebindWindow = 500 * time.Millisecond

// NewSocket creates a socket on u bound to queue cfg.Queue of device ifindex. The first
// socket of a UMEM registers it; later ones share it (XDP_SHARED_UMEM) with their own
// fill and completion rings, which the kernel allows for another queue or device only.
// ifindex names a device of the calling thread's network namespace, where the socket
// is created; the same index in another namespace is another device.
//
// The socket receives nothing until an XDP program redirects to it: register it with
// Program.Register.
func NewSocket(u *UMEM, ifindex int, cfg Config) (*Socket, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if ifindex <= 0 {
		return nil, fmt.Errorf("%w: ifindex %d", ErrOptions, ifindex)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, ErrClosed
	}
	fd, err := afxdp.Socket()
	if err != nil {
		return nil, err
	}
	s := &Socket{fd: fd, umem: u, ifindex: ifindex, queue: cfg.Queue, wakeup: !cfg.NoNeedWakeup, sg: cfg.MultiBuffer}
	// The device is (namespace, ifindex): an index means the device of the namespace
	// the socket was created in, and another namespace may have the same index.
	if s.nsDev, s.nsIno, err = afxdp.SocketNetns(fd); err != nil {
		s.release()
		return nil, err
	}
	var share *Socket
	for _, o := range u.socks {
		if o.sameDevice(s) && o.queue == s.queue {
			s.release()
			return nil, fmt.Errorf("%w: a second socket on the same queue of a shared UMEM (shares fill and completion rings)", ErrNotSupported)
		}
		share = o
	}
	if err := s.setup(share, cfg); err != nil {
		s.release()
		return nil, err
	}
	u.socks = append(u.socks, s)
	return s, nil
}

func (s *Socket) setup(share *Socket, cfg Config) error {
	u := s.umem
	if share == nil {
		var flags uint32
		if u.unaligned {
			flags |= afxdp.UMEMUnaligned
		}
		if err := afxdp.RegisterUMEM(s.fd, u.pool.Region(), uint32(u.pool.FrameSize()), u.headroom, flags); err != nil {
			return err
		}
	}
	fillN, _ := ringSize(cfg.FillSize)
	compN, _ := ringSize(cfg.CompSize)
	rxN, _ := ringSize(cfg.RxSize)
	txN, _ := ringSize(cfg.TxSize)
	for _, r := range []struct {
		id int
		n  uint32
	}{{afxdp.RingFill, fillN}, {afxdp.RingComp, compN}, {afxdp.RingRx, rxN}, {afxdp.RingTx, txN}} {
		if r.n == 0 {
			continue
		}
		if err := afxdp.SetRingSize(s.fd, r.id, r.n); err != nil {
			return err
		}
	}
	off, err := afxdp.GetMmapOffsets(s.fd)
	if err != nil {
		return err
	}
	if s.maps[0], err = afxdp.MapRing(s.fd, afxdp.PgoffFill, off.Fill, fillN, afxdp.SizeofAddr); err != nil {
		return err
	}
	if s.fill, err = afxdp.NewProdRing[uint64](s.maps[0], off.Fill, fillN); err != nil {
		return err
	}
	if s.maps[1], err = afxdp.MapRing(s.fd, afxdp.PgoffComp, off.Comp, compN, afxdp.SizeofAddr); err != nil {
		return err
	}
	if s.comp, err = afxdp.NewConsRing[uint64](s.maps[1], off.Comp, compN); err != nil {
		return err
	}
	if rxN > 0 {
		if s.maps[2], err = afxdp.MapRing(s.fd, afxdp.PgoffRx, off.Rx, rxN, afxdp.SizeofDesc); err != nil {
			return err
		}
		if s.rx, err = afxdp.NewConsRing[afxdp.Desc](s.maps[2], off.Rx, rxN); err != nil {
			return err
		}
	}
	if txN > 0 {
		if s.maps[3], err = afxdp.MapRing(s.fd, afxdp.PgoffTx, off.Tx, txN, afxdp.SizeofDesc); err != nil {
			return err
		}
		if s.tx, err = afxdp.NewProdRing[afxdp.Desc](s.maps[3], off.Tx, txN); err != nil {
			return err
		}
	}
	if cfg.BusyPoll > 0 {
		budget := cfg.BusyPollBudget
		if budget == 0 {
			budget = 64
		}
		for _, o := range []struct {
			opt, v int
		}{{afxdp.SoPreferBusyPoll, 1}, {afxdp.SoBusyPoll, int(cfg.BusyPoll / time.Microsecond)}, {afxdp.SoBusyPollBudget, budget}} {
			if err := afxdp.SetSockoptInt(s.fd, afxdp.SolSocket, o.opt, o.v); err != nil {
				return fmt.Errorf("%w: busy poll option %d: %v", ErrNotSupported, o.opt, err)
			}
		}
		s.busyPoll = true
	}
	if cfg.TxBudget > 0 {
		// Older kernels lack the option (ENOPROTOOPT): keep their default of 32.
		if err := afxdp.SetSockoptInt(s.fd, afxdp.SolXDP, afxdp.XDPMaxTxSkbBudget, cfg.TxBudget); err != nil && !afxdp.IsNoOption(err) {
			return fmt.Errorf("xsk: XDP_MAX_TX_SKB_BUDGET %d: %w", cfg.TxBudget, err)
		}
	}

	if share != nil && (share.wakeup != s.wakeup || share.sg != s.sg) {
		// The kernel takes these from the UMEM's first socket and refuses them in a
		// shared bind (xsk_bind: "Cannot specify flags for shared sockets").
		return fmt.Errorf("%w: NoNeedWakeup and MultiBuffer must match the UMEM's first socket", ErrOptions)
	}
	if share != nil && ((cfg.Bind == BindZeroCopy && !share.zeroCopy) || (cfg.Bind == BindCopy && share.zeroCopy)) {
		// So is the mode (xp_assign_dev_shared binds with the UMEM's zero-copy or copy),
		// which would silently override a required one.
		return fmt.Errorf("%w: Bind %v, but the UMEM's sockets are bound zero-copy %v", ErrOptions, cfg.Bind, share.zeroCopy)
	}
	var flags uint16
	if s.wakeup {
		flags |= afxdp.BindNeedWakeup
	}
	if s.sg {
		flags |= afxdp.BindSG
	}
	sharedFd := -1
	modes := []uint16{afxdp.BindZeroCopy, afxdp.BindCopy}
	switch cfg.Bind {
	case BindZeroCopy:
		modes = modes[:1]
	case BindCopy:
		modes = modes[1:]
	}
	if share != nil {
		// A shared bind inherits copy/zero-copy, need_wakeup and SG from the UMEM.
		flags, modes = afxdp.BindSharedUMEM, []uint16{0}
		sharedFd = share.fd
	}
	for i, m := range modes {
		err = bindRetry(s.fd, flags|m, s.ifindex, s.queue, sharedFd)
		if err == nil || i == len(modes)-1 || !afxdp.IsNotSupported(err) {
			break
		}
	}
	if err != nil {
		switch {
		case afxdp.IsBusy(err):
			return fmt.Errorf("%w: ifindex %d queue %d: %v", ErrBusy, s.ifindex, s.queue, err)
		case afxdp.IsNotSupported(err):
			return fmt.Errorf("%w: bind ifindex %d queue %d (mode %v, multi-buffer %v): %v", ErrNotSupported, s.ifindex, s.queue, cfg.Bind, s.sg, err)
		}
		return err
	}
	if s.zeroCopy, err = afxdp.ZeroCopy(s.fd); err != nil {
		return err
	}
	s.maxSegs = txMaxSegs(s.ifindex, s.sg, s.zeroCopy)
	return nil
}

// sameDevice reports whether s and o are bound, or to be bound, to the same device:
// the same interface index in the same network namespace.
func (s *Socket) sameDevice(o *Socket) bool {
	return s.ifindex == o.ifindex && s.nsDev == o.nsDev && s.nsIno == o.nsIno
}

// txMaxSegs is how many descriptors the kernel takes for one packet on a socket. A
// longer chain it consumes whole and counts in tx_invalid_descs, so Port drops it
// itself instead of counting it sent.
func txMaxSegs(ifindex int, sg, zeroCopy bool) int {
	if !sg {
		return 1
	}
	if zeroCopy {
		// The driver's own limit (xsk_tx_peek_release_desc_batch checks it); a kernel
		// that does not report it gets the copy-mode one, as good a guess as any.
		if n, ok, err := afxdp.ZeroCopyMaxSegs(ifindex); err == nil && ok && n > 0 {
			return int(min(n, 1<<16))
		}
	}
	return afxdp.CopyMaxSegs
}

func bindRetry(fd int, flags uint16, ifindex, queue, sharedFd int) error {
	deadline := time.Now().Add(rebindWindow)
	for delay := time.Millisecond; ; delay = min(2*delay, 20*time.Millisecond) {
		err := afxdp.Bind(fd, flags, uint32(ifindex), uint32(queue), sharedFd)
		if err == nil || !afxdp.IsBusy(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
	}
}

// FD returns the socket's descriptor, for an XSKMAP entry or poll.
func (s *Socket) FD() int { return s.fd }

// Queue returns the bound queue.
func (s *Socket) Queue() int { return s.queue }

// Ifindex returns the bound device.
func (s *Socket) Ifindex() int { return s.ifindex }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode
// (XDP_OPTIONS).
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// MultiBuffer reports whether the socket was bound with XDP_USE_SG.
func (s *Socket) MultiBuffer() bool { return s.sg }

// UMEM returns the socket's UMEM.
func (s *Socket) UMEM() *UMEM { return s.umem }

// Fill offers UMEM chunk addresses to the kernel for receiving and returns how many the
// fill ring took (none once the socket is closed). The kernel owns them until they
// come back through Receive.
func (s *Socket) Fill(addrs []uint64) int {
	if s.fill == nil {
		return 0 // closed
	}
	n, idx := s.fill.Reserve(uint32(min(len(addrs), 1<<31)))
	for i := range n {
		s.fill.Set(idx+i, addrs[i])
	}
	if n > 0 {
		s.fill.Submit()
	}
	return int(n)
}

// Receive takes up to len(descs) received descriptors. The caller owns their chunks.
// Addresses are as the kernel wrote them (in unaligned mode with the offset in the top
// 16 bits); they are not validated.
func (s *Socket) Receive(descs []Desc) int {
	if s.rx == nil {
		return 0
	}
	n, idx := s.rx.Peek(uint32(min(len(descs), 1<<31)))
	for i := range n {
		descs[i] = Desc(s.rx.Get(idx + i))
	}
	if n > 0 {
		s.rx.Release(n)
	} else if s.rxNeedsKick() {
		s.wakeRx()
	}
	return int(n)
}

// rxNeedsKick reports whether an empty receive should wake the kernel: when it asked
// (need_wakeup on the fill ring) or always with busy polling. With busy polling the
// kernel does not run the driver's NAPI by itself (SO_PREFER_BUSY_POLL defers it to
// the application), so the recvfrom is what moves packets in; libxdp's xdpsock sample
// likewise wakes on busy_poll || needs_wakeup.
func (s *Socket) rxNeedsKick() bool {
	return s.busyPoll || (s.wakeup && s.fill.NeedWakeup())
}

// Transmit queues descriptors for sending, kicks the kernel if it asked (or always
// without need_wakeup), and returns how many the tx ring took. The kernel owns their
// chunks until they come back through Complete.
func (s *Socket) Transmit(descs []Desc) int {
	if s.tx == nil {
		return 0
	}
	n, idx := s.tx.Reserve(uint32(min(len(descs), 1<<31)))
	for i := range n {
		s.tx.Set(idx+i, afxdp.Desc(descs[i]))
	}
	if n > 0 {
		s.tx.Submit()
	}
	s.KickIfNeeded()
	return int(n)
}

// KickIfNeeded wakes the kernel's transmit path if there is anything to send and the
// kernel asked for it (always, without need_wakeup or with busy polling, where the
// sendto is what runs the driver).
//
// In copy mode a wakeup sends, there and then, at most one budget of frames (32, or
// Config.TxBudget) and leaves the rest in the ring; nothing else wakes the kernel, so
// the tail of a long burst would wait for the application's next send, which may not
// come. So in copy mode it wakes the kernel again while frames remain and each wakeup
// takes some; it stops when one takes none (the completion ring is full until the
// application reaps it, or the device is busy).
func (s *Socket) KickIfNeeded() {
	if s.tx == nil {
		return
	}
	left := s.tx.Pending()
	if left == 0 || (s.wakeup && !s.busyPoll && !s.tx.NeedWakeup()) {
		return
	}
	s.Kick()
	for !s.zeroCopy {
		now := s.tx.Pending()
		if now == 0 || now >= left {
			return
		}
		left = now
		s.Kick()
	}
}

// Kick wakes the kernel's transmit path without blocking (see afxdp.Kick for why it
// bypasses the Go scheduler's syscall bookkeeping).
func (s *Socket) Kick() {
	s.kicks.Add(1)
	s.countWake(afxdp.Kick(s.fd))
}

func (s *Socket) wakeRx() {
	s.kicks.Add(1)
	s.countWake(afxdp.WakeRx(s.fd))
}

func (s *Socket) countWake(r afxdp.WakeResult) {
	switch r {
	case afxdp.WakeBusy:
		s.kickBusy.Add(1)
	case afxdp.WakeDown:
		s.kickDown.Add(1)
	case afxdp.WakeFailed:
		s.kickErrs.Add(1)
	}
}

// Complete takes up to len(addrs) addresses of transmitted chunks back from the
// kernel; none once the socket is closed.
func (s *Socket) Complete(addrs []uint64) int {
	if s.comp == nil {
		return 0 // closed
	}
	n, idx := s.comp.Peek(uint32(min(len(addrs), 1<<31)))
	for i := range n {
		addrs[i] = s.comp.Get(idx + i)
	}
	if n > 0 {
		s.comp.Release(n)
	}
	return int(n)
}

// Poll waits up to timeout for received packets (or, with out, for tx room), in the
// ordinary blocking way: a negative timeout waits without limit, 0 returns at once,
// others are rounded up to whole milliseconds (poll(2)'s unit). Poll-mode loops do not
// need it.
func (s *Socket) Poll(out bool, timeout time.Duration) (bool, error) {
	return afxdp.Poll(s.fd, out, pollMillis(timeout))
}

// pollMillis converts a Poll timeout to poll(2)'s: -1 for a negative one, whole
// milliseconds rounded up (a 500 µs wait was 0, a busy return), at most the
// largest int32 (the kernel's type; a longer one wrapped).
func pollMillis(d time.Duration) int {
	switch {
	case d < 0:
		return -1
	case d >= math.MaxInt32*time.Millisecond:
		return math.MaxInt32
	}
	return int((d + time.Millisecond - 1) / time.Millisecond)
}

// Statistics are a socket's kernel counters (XDP_STATISTICS) and its own.
type Statistics struct {
	RxDropped            uint64 // dropped by the kernel for reasons other than a full ring
	RxInvalidDescs       uint64 // fill-ring addresses the kernel refused
	TxInvalidDescs       uint64 // tx descriptors the kernel refused
	RxRingFull           uint64 // dropped because the rx ring was full
	RxFillRingEmptyDescs uint64 // times the kernel found the fill ring empty
	TxRingEmptyDescs     uint64 // times the kernel found the tx ring empty
	Kicks                uint64 // wakeup syscalls made
	KickBusy             uint64 // wakeups answered "try later" (EAGAIN, EBUSY, ENOBUFS; routine in copy mode, once per budget)
	KickDown             uint64 // wakeups refused because the device was down (ENETDOWN): queued frames wait for it
	KickErrors           uint64 // wakeups that failed with an unexpected error
}

// Stats reads the kernel's counters, and the socket's own wakeup counts; any
// goroutine may call it.
func (s *Socket) Stats() (Statistics, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return Statistics{}, ErrClosed
	}
	k, err := afxdp.GetStats(s.fd)
	return Statistics{
		RxDropped: k.RxDropped, RxInvalidDescs: k.RxInvalidDescs, TxInvalidDescs: k.TxInvalidDescs,
		RxRingFull: k.RxRingFull, RxFillRingEmptyDescs: k.RxFillRingEmptyDescs, TxRingEmptyDescs: k.TxRingEmptyDescs,
		Kicks: s.kicks.Load(), KickBusy: s.kickBusy.Load(), KickDown: s.kickDown.Load(), KickErrors: s.kickErrs.Load(),
	}, err
}

// Close unmaps the rings and then closes the descriptor — in that order, since a
// mapping keeps a reference on the socket and with it the bound queue. Chunks still in
// the kernel's rings are the caller's to account for (Port does).
func (s *Socket) Close() error {
	u := s.umem
	u.mu.Lock()
	defer u.mu.Unlock()
	if s.closed {
		return nil
	}
	for i, o := range u.socks {
		if o == s {
			u.socks = append(u.socks[:i], u.socks[i+1:]...)
			break
		}
	}
	return s.release()
}

func (s *Socket) release() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	var errs []error
	for i := range s.maps {
		errs = append(errs, afxdp.Unmap(s.maps[i]))
		s.maps[i] = nil
	}
	s.fill, s.comp, s.rx, s.tx = nil, nil, nil, nil
	if s.fd >= 0 {
		errs = append(errs, afxdp.Close(s.fd))
		s.fd = -1
	}
	return errors.Join(errs...)
}

// Ifindex returns the index of a named interface, wrapping ErrNoDevice.
func Ifindex(name string) (int, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrNoDevice, name, err)
	}
	return ifc.Index, nil
}
