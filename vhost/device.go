package vhost

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/vring"
)

// device is the back-end state of one front-end connection: negotiated features, the
// memory table and the virtqueues. Its handlers run on the connection's control
// goroutine only; the datapath sees the queues through vq.active.
type device struct {
	opts         *Options
	queues       []*vq // 2 per queue pair: even = guest RX (we transmit), odd = guest TX
	features     uint64
	featSet      bool
	proto        uint64
	protoSet     bool
	owner        bool
	mem          guestMem
	status       uint8
	mtu          uint16
	rarp         atomic.Uint64 // a RARP to send for the guest: its MAC | rarpPending; 0 if none
	log          *dirtyLog     // SET_LOG_BASE's bitmap; used while LOG_ALL is negotiated
	loggedStarts atomic.Uint32 // rings started with logging on (for tests and debugging)
	conn         *uds.Conn     // the connection, to wake the control goroutine (set before the datapath sees d)
	faulted      atomic.Bool   // a datapath access to guest memory faulted: drop the device
}

func newDevice(o *Options) *device {
	d := &device{opts: o, queues: make([]*vq, 2*o.queuePairs())}
	for i := range d.queues {
		d.queues[i] = newVQ(i)
	}
	return d
}

// offered is the feature set GET_FEATURES reports.
func (d *device) offered() uint64 {
	f := uint64(FeatureVersion1 | FeatureMrgRxbuf | FeatureRingPacked | FeatureEventIdx |
		FeatureIndirectDesc | FeatureInOrder | FeatureProtocolFeatures | FeatureLogAll |
		// The front-end serves the control queue (QEMU's virtio-net, DPDK's
		// virtio-user both do, as with DPDK's back-end); offering it lets the guest
		// announce itself after a migration (GUEST_ANNOUNCE needs CTRL_VQ).
		FeatureCtrlVQ | FeatureGuestAnnounce)
	if d.opts.queuePairs() > 1 {
		f |= FeatureMQ
	}
	if d.opts.MTU != 0 {
		f |= FeatureMTU
	}
	return f &^ d.opts.DisableFeatures
}

func (d *device) offeredProto() uint64 {
	p := uint64(ProtoMQ | ProtoReplyAck | ProtoConfigureMemSlots | ProtoStatus | ProtoRARP | ProtoNetMTU | ProtoLogShmfd)
	return p
}

func (d *device) has(f uint64) bool { return d.features&f == f }

// hasProto: protocol features count from SET_PROTOCOL_FEATURES on, before
// SET_FEATURES acknowledges PROTOCOL_FEATURES (QEMU and DPDK both rely on REPLY_ACK
// and SET_VRING_ENABLE in that window).
func (d *device) hasProto(f uint64) bool { return d.protoSet && d.proto&f == f }

// handlerSpec is one entry of the dispatch table: the exact payload size (or variable),
// how many descriptors the message must carry, and the handler. The dispatcher checks
// size and descriptor count before the handler runs; the handler takes ownership of
// the descriptors it keeps by setting them to -1, and the dispatcher closes the rest.
type handlerSpec struct {
	size    int // exact payload size; -1: validated by the handler
	fds     fdRule
	replies bool // always replies (GET_*); otherwise replies only for REPLY_ACK
	fn      func(d *device, m *message) ([]byte, error)
}

type fdRule uint8

const (
	fdNone     fdRule = iota // no descriptor
	fdOne                    // exactly one
	fdVring                  // one unless the payload's bit 8 (no fd) is set, then none
	fdRegions                // one per region of the memory table
	fdOptional               // zero or one (REM_MEM_REG, for broken front-ends)
)

type message struct {
	hdr     header
	payload []byte
	fds     []int
}

var handlers = [reqMax]*handlerSpec{
	ReqGetFeatures:         {size: 0, replies: true, fn: (*device).getFeatures},
	ReqSetFeatures:         {size: sizeU64, fn: (*device).setFeatures},
	ReqSetOwner:            {size: 0, fn: (*device).setOwner},
	ReqResetOwner:          {size: 0, fn: (*device).resetOwner},
	ReqSetMemTable:         {size: -1, fds: fdRegions, fn: (*device).setMemTable},
	ReqSetLogBase:          {size: sizeLog, fds: fdOne, fn: (*device).setLogBase},
	ReqSetLogFd:            {size: 0, fds: fdOne, fn: (*device).setLogFd},
	ReqSetVringNum:         {size: sizeState, fn: (*device).setVringNum},
	ReqSetVringAddr:        {size: sizeAddr, fn: (*device).setVringAddr},
	ReqSetVringBase:        {size: sizeState, fn: (*device).setVringBase},
	ReqGetVringBase:        {size: sizeState, replies: true, fn: (*device).getVringBase},
	ReqSetVringKick:        {size: sizeU64, fds: fdVring, fn: (*device).setVringKick},
	ReqSetVringCall:        {size: sizeU64, fds: fdVring, fn: (*device).setVringCall},
	ReqSetVringErr:         {size: sizeU64, fds: fdVring, fn: (*device).setVringErr},
	ReqGetProtocolFeatures: {size: 0, replies: true, fn: (*device).getProtocolFeatures},
	ReqSetProtocolFeatures: {size: sizeU64, fn: (*device).setProtocolFeatures},
	ReqGetQueueNum:         {size: 0, replies: true, fn: (*device).getQueueNum},
	ReqSetVringEnable:      {size: sizeState, fn: (*device).setVringEnable},
	ReqSendRARP:            {size: sizeU64, fn: (*device).sendRARP},
	ReqNetSetMTU:           {size: sizeU64, fn: (*device).netSetMTU},
	ReqGetInflightFd:       {size: sizeInflight, replies: true, fn: (*device).inflight},
	ReqSetInflightFd:       {size: sizeInflight, fds: fdOne, fn: (*device).inflight},
	ReqGetMaxMemSlots:      {size: 0, replies: true, fn: (*device).getMaxMemSlots},
	ReqAddMemReg:           {size: sizeMemReg, fds: fdOne, fn: (*device).addMemReg},
	ReqRemMemReg:           {size: sizeMemReg, fds: fdOptional, fn: (*device).remMemReg},
	ReqSetStatus:           {size: sizeU64, fn: (*device).setStatus},
	ReqGetStatus:           {size: 0, replies: true, fn: (*device).getStatus},
}

// dispatchResult says what the connection does after a message.
type dispatchResult struct {
	reply []byte // full reply message (header included) or nil
	fatal error  // non-nil: drop the connection
	err   error  // the handler's error, if any (reported, maybe fatal)
}

// dispatch validates m against the table and runs its handler. Every descriptor in
// m.fds is either taken by the handler or closed here.
func (d *device) dispatch(m *message) (res dispatchResult) {
	defer func() { uds.CloseAll(m.fds) }()
	h := m.hdr
	if h.flags&flagVersionMask != flagVersion {
		return dispatchResult{fatal: protoErr(h.req, "version %d", h.flags&flagVersionMask)}
	}
	if h.flags&flagReply != 0 {
		return dispatchResult{fatal: protoErr(h.req, "reply flag set on a request")}
	}
	if h.req >= reqMax || handlers[h.req] == nil {
		return dispatchResult{fatal: protoErr(h.req, "unsupported request")}
	}
	spec := handlers[h.req]
	if spec.size >= 0 && len(m.payload) != spec.size {
		return dispatchResult{fatal: protoErr(h.req, "payload %d bytes, want %d", len(m.payload), spec.size)}
	}
	if err := checkFds(spec.fds, m); err != nil {
		return dispatchResult{fatal: err}
	}
	out, err := spec.fn(d, m)
	needAck := !spec.replies && h.flags&flagNeedReply != 0 && d.hasProto(ProtoReplyAck)
	switch {
	case spec.replies && err == nil:
		res.reply = encodeReply(h.req, out)
	case spec.replies:
		// A GET that fails cannot be answered meaningfully: drop the connection.
		return dispatchResult{fatal: err, err: err}
	case needAck:
		var ack [8]byte
		if err != nil {
			le.PutUint64(ack[:], 1)
		}
		res.reply = encodeReply(h.req, ack[:])
	case out != nil:
		// SET_LOG_BASE answers even without REPLY_ACK.
		res.reply = encodeReply(h.req, out)
	}
	res.err = err
	if err != nil && !needAck {
		res.fatal = err // no way to tell the front-end: disconnect, as DPDK does
	}
	return res
}

func checkFds(rule fdRule, m *message) error {
	n := len(m.fds)
	want := 0
	switch rule {
	case fdOne:
		want = 1
	case fdVring:
		if len(m.payload) == sizeU64 && le.Uint64(m.payload)&vringNoFd == 0 {
			want = 1
		}
	case fdRegions:
		if len(m.payload) < sizeMemTable {
			return protoErr(m.hdr.req, "payload %d bytes, too short", len(m.payload))
		}
		want = int(le.Uint32(m.payload))
	case fdOptional:
		if n <= 1 {
			return nil
		}
		want = 1
	}
	if n != want {
		return protoErr(m.hdr.req, "%d descriptors, want %d", n, want)
	}
	return nil
}

func encodeReply(req Request, payload []byte) []byte {
	b := make([]byte, hdrSize+len(payload))
	encodeHeader(b, header{req: req, flags: flagVersion | flagReply, size: uint32(len(payload))})
	copy(b[hdrSize:], payload)
	return b
}

func u64(v uint64) []byte {
	b := make([]byte, 8)
	le.PutUint64(b, v)
	return b
}

// --- features ---------------------------------------------------------------

func (d *device) getFeatures(*message) ([]byte, error) { return u64(d.offered()), nil }

func (d *device) setFeatures(m *message) ([]byte, error) {
	f := le.Uint64(m.payload)
	if f&^d.offered() != 0 {
		return nil, fmt.Errorf("%w: features %#x not offered", ErrInvalid, f&^d.offered())
	}
	for _, q := range d.queues {
		// Live migration turns LOG_ALL on and off under running rings (QEMU's
		// vhost_dev_set_log); any other change needs them stopped.
		if q.active.Load() != nil && (f^d.features)&^FeatureLogAll != 0 {
			return nil, fmt.Errorf("%w: SET_FEATURES changes features of running queue %d", ErrBusy, q.idx)
		}
	}
	if (f^d.features)&FeatureLogAll != 0 {
		// The rings restart with or without logging.
		d.stopAll()
		d.features, d.featSet = f, true
		d.startAll()
	}
	d.features, d.featSet = f, true
	if f&FeatureProtocolFeatures == 0 {
		// Without protocol features every ring is enabled once it has a kick.
		for _, q := range d.queues {
			q.enabled = true
		}
	}
	return nil, nil
}

func (d *device) getProtocolFeatures(*message) ([]byte, error) { return u64(d.offeredProto()), nil }

func (d *device) setProtocolFeatures(m *message) ([]byte, error) {
	p := le.Uint64(m.payload)
	if p&^d.offeredProto() != 0 {
		return nil, fmt.Errorf("%w: protocol features %#x not offered", ErrInvalid, p&^d.offeredProto())
	}
	d.proto, d.protoSet = p, true
	return nil, nil
}

func (d *device) setOwner(*message) ([]byte, error) {
	d.owner = true
	return nil, nil
}

func (d *device) resetOwner(*message) ([]byte, error) {
	// Deprecated, but QEMU still sends it: stop everything, keep the connection.
	d.teardown()
	d.features, d.featSet, d.owner = 0, false, false
	return nil, nil
}

func (d *device) getQueueNum(*message) ([]byte, error) {
	return u64(uint64(d.opts.queuePairs())), nil
}

func (d *device) getMaxMemSlots(*message) ([]byte, error) { return u64(MaxMemSlots), nil }

func (d *device) setStatus(m *message) ([]byte, error) {
	v := le.Uint64(m.payload)
	if v > 0xff {
		// The device status is 8 bits (VIRTIO 1.2 §2.1); truncated, 0x100 would
		// read as a reset. DPDK's vhost refuses it too.
		return nil, fmt.Errorf("%w: device status %#x", ErrInvalid, v)
	}
	d.status = uint8(v)
	if d.status == 0 {
		// A device reset (VIRTIO 1.2 §2.4): stop every queue. Each waits for a
		// new kick, as after GET_VRING_BASE, so that a memory change before the
		// front-end sets the rings up again (startAll) leaves them stopped.
		for _, q := range d.queues {
			q.stop()
			q.dropKick()
		}
	}
	return nil, nil
}

func (d *device) getStatus(*message) ([]byte, error) { return u64(uint64(d.status)), nil }

func (d *device) netSetMTU(m *message) ([]byte, error) {
	v := le.Uint64(m.payload)
	if v < 68 || v > 65535 {
		return nil, fmt.Errorf("%w: MTU %d", ErrInvalid, v)
	}
	d.mtu = uint16(v)
	return nil, nil
}

// sendRARP: after migration, QEMU asks the back-end to announce a guest that cannot
// announce itself (no GUEST_ANNOUNCE): the payload's first 6 bytes are its MAC. The
// next Rx on the first queue pair delivers a RARP from it, as if the guest had sent
// one, so that switches learn where the MAC is now (DPDK's vhost does the same).
func (d *device) sendRARP(m *message) ([]byte, error) {
	var mac [8]byte
	copy(mac[2:], m.payload[:6])
	d.rarp.Store(be.Uint64(mac[:]) | rarpPending)
	return nil, nil
}

// --- memory -----------------------------------------------------------------

// setMemTable replaces the memory table (vhost-user.rst SET_MEM_TABLE). Running
// queues stop, the old regions are unmapped only after, and every ready queue starts
// on the new table (startAll).
func (d *device) setMemTable(m *message) ([]byte, error) {
	n := le.Uint32(m.payload)
	if n == 0 || n > MaxMemRegions {
		return nil, fmt.Errorf("%w: %d memory regions", ErrInvalid, n)
	}
	if len(m.payload) != sizeMemTable+int(n)*regionSize && len(m.payload) != sizeMemTable+MaxMemRegions*regionSize {
		return nil, protoErr(m.hdr.req, "payload %d bytes for %d regions", len(m.payload), n)
	}
	regs := make([]memRegion, n)
	for i := range regs {
		regs[i] = decodeRegion(m.payload[sizeMemTable+i*regionSize:])
	}
	if err := checkTotal(d.opts.maxGuestMemory(), regs...); err != nil {
		return nil, err
	}
	slots := make([]memSlot, 0, n)
	for i, r := range regs {
		s, err := mapRegion(r, m.fds[i])
		if err != nil {
			unmapSlots(slots)
			return nil, err
		}
		slots = append(slots, s)
	}
	mem, err := buildMemory(slots)
	if err != nil {
		unmapSlots(slots)
		return nil, err
	}
	d.replaceMemory(slots, mem)
	return nil, nil
}

func (d *device) replaceMemory(slots []memSlot, mem *vring.Memory) {
	d.stopAll()
	old := d.mem.slots
	d.mem.slots, d.mem.mem = slots, mem
	unmapSlots(old)
	d.startAll()
}

func (d *device) addMemReg(m *message) ([]byte, error) {
	if !d.hasProto(ProtoConfigureMemSlots) {
		return nil, fmt.Errorf("%w: CONFIGURE_MEM_SLOTS", ErrNotNegotiated)
	}
	if len(d.mem.slots) >= MaxMemSlots {
		return nil, fmt.Errorf("%w: all %d memory slots in use", ErrInvalid, MaxMemSlots)
	}
	r := decodeRegion(m.payload[8:])
	regs := []memRegion{r}
	for _, s := range d.mem.slots {
		regs = append(regs, s.r)
	}
	if err := checkTotal(d.opts.maxGuestMemory(), regs...); err != nil {
		return nil, err
	}
	s, err := mapRegion(r, m.fds[0])
	if err != nil {
		return nil, err
	}
	slots := append(append([]memSlot(nil), d.mem.slots...), s)
	mem, err := buildMemory(slots)
	if err != nil {
		s.m.Unmap()
		return nil, err
	}
	d.stopAll()
	d.mem.slots, d.mem.mem = slots, mem
	d.startAll()
	return nil, nil
}

func (d *device) remMemReg(m *message) ([]byte, error) {
	if !d.hasProto(ProtoConfigureMemSlots) {
		return nil, fmt.Errorf("%w: CONFIGURE_MEM_SLOTS", ErrNotNegotiated)
	}
	r := decodeRegion(m.payload[8:])
	for i, s := range d.mem.slots {
		if s.r.GuestAddr == r.GuestAddr && s.r.UserAddr == r.UserAddr && s.r.Size == r.Size {
			slots := append(append([]memSlot(nil), d.mem.slots[:i]...), d.mem.slots[i+1:]...)
			mem, err := buildMemory(slots)
			if err != nil {
				return nil, err
			}
			d.stopAll()
			d.mem.slots, d.mem.mem = slots, mem
			s.m.Unmap()
			d.startAll()
			return nil, nil
		}
	}
	return nil, fmt.Errorf("%w: no region at %#x+%#x", ErrInvalid, r.GuestAddr, r.Size)
}

// setLogBase takes the dirty log area for live migration (vhost-user.rst
// SET_LOG_BASE with LOG_SHMFD): size and offset are checked against overflow and
// against the file (the checks of DPDK's CVE-2020-10723 class) before it is mapped.
// Running rings switch to the new area; the old one is unmapped after. The reply
// carries no payload, as QEMU and DPDK have it.
func (d *device) setLogBase(m *message) ([]byte, error) {
	if !d.hasProto(ProtoLogShmfd) {
		// Validate first anyway: a hostile size is an invalid message either way.
		size, off := le.Uint64(m.payload), le.Uint64(m.payload[8:])
		if size == 0 || off+size < off || off+size > 1<<40 {
			return nil, fmt.Errorf("%w: log area size %#x offset %#x", ErrInvalid, size, off)
		}
		return nil, fmt.Errorf("%w: LOG_SHMFD", ErrNotNegotiated)
	}
	l, err := newDirtyLog(m.fds[0], le.Uint64(m.payload), le.Uint64(m.payload[8:]))
	if err != nil {
		return nil, err
	}
	d.stopAll()
	old := d.log
	d.log = l
	d.startAll()
	old.unmap()
	return []byte{}, nil
}

// setLogFd takes the (legacy) eventfd the front-end would have the back-end signal
// after a log sync. Nothing here needs it, as with DPDK: it is closed.
func (d *device) setLogFd(*message) ([]byte, error) { return nil, nil }

// inflight handles GET/SET_INFLIGHT_FD. Inflight tracking is for devices that must not
// lose a request across a reconnect (blk, crypto); a net device may drop packets, and
// INFLIGHT_SHMFD is not offered. The payload is still range-checked first.
func (d *device) inflight(m *message) ([]byte, error) {
	size, off := le.Uint64(m.payload), le.Uint64(m.payload[8:])
	nq, qs := le.Uint16(m.payload[16:]), le.Uint16(m.payload[18:])
	if int(nq) > len(d.queues) || nq == 0 || qs == 0 || int(qs) > vring.MaxQueueSize {
		return nil, fmt.Errorf("%w: inflight area for %d queues of %d", ErrInvalid, nq, qs)
	}
	if m.hdr.req == ReqSetInflightFd && (size == 0 || off+size < off) {
		return nil, fmt.Errorf("%w: inflight area size %#x offset %#x", ErrInvalid, size, off)
	}
	return nil, fmt.Errorf("%w: INFLIGHT_SHMFD", ErrNotNegotiated)
}

// --- vrings -----------------------------------------------------------------

func (d *device) queue(index uint32) (*vq, error) {
	if index >= uint32(len(d.queues)) {
		return nil, fmt.Errorf("%w: vring index %d, device has %d", ErrInvalid, index, len(d.queues))
	}
	return d.queues[index], nil
}

func decodeState(b []byte) vringState { return vringState{le.Uint32(b), le.Uint32(b[4:])} }

func (d *device) setVringNum(m *message) ([]byte, error) {
	s := decodeState(m.payload)
	q, err := d.queue(s.Index)
	if err != nil {
		return nil, err
	}
	if q.active.Load() != nil {
		return nil, fmt.Errorf("%w: SET_VRING_NUM on queue %d", ErrBusy, s.Index)
	}
	packed := d.has(FeatureRingPacked)
	if s.Num == 0 || s.Num > vring.MaxQueueSize || (!packed && s.Num&(s.Num-1) != 0) {
		return nil, fmt.Errorf("%w: queue size %d", ErrInvalid, s.Num)
	}
	q.num = s.Num
	// A ring whose kick came before its size starts now, as one whose addresses
	// came last does (setVringAddr); start leaves an unready ring alone, and one
	// GET_VRING_BASE stopped has no kick. The size itself is good: a ring that
	// cannot start on the rest of its configuration (addresses the table does not
	// hold) stays stopped, as after startAll, and this message is not refused.
	d.start(q)
	return nil, nil
}

func (d *device) setVringAddr(m *message) ([]byte, error) {
	b := m.payload
	a := vringAddr{le.Uint32(b), le.Uint32(b[4:]), le.Uint64(b[8:]), le.Uint64(b[16:]), le.Uint64(b[24:]), le.Uint64(b[32:])}
	q, err := d.queue(a.Index)
	if err != nil {
		return nil, err
	}
	if a.Flags&^vringAddrLog != 0 {
		return nil, fmt.Errorf("%w: vring address flags %#x", ErrInvalid, a.Flags)
	}
	// A ring being re-addressed stops (QEMU re-sends addresses when it turns
	// logging on); it restarts below if still ready. A ring whose kick came
	// first starts now: the kick started it (vhost-user "Ring states"), and now
	// it is ready.
	q.stop()
	q.addr, q.addrSet = a, true
	return nil, d.start(q)
}

func (d *device) setVringBase(m *message) ([]byte, error) {
	s := decodeState(m.payload)
	q, err := d.queue(s.Index)
	if err != nil {
		return nil, err
	}
	if q.active.Load() != nil {
		return nil, fmt.Errorf("%w: SET_VRING_BASE on queue %d", ErrBusy, s.Index)
	}
	// Split: the next avail index. Packed: bits 0-14 avail position, bit 15 avail
	// wrap counter and, as QEMU sends it, bits 16-30 used position and bit 31 used
	// wrap counter (DPDK sends only the low half: used = avail).
	if !d.has(FeatureRingPacked) && s.Num > 0xffff {
		return nil, fmt.Errorf("%w: vring base %#x", ErrInvalid, s.Num)
	}
	q.base, q.baseSet = s.Num, true
	// An empty used half means used = available, as DPDK's front-end sends it.
	// QEMU's used position 0 with wrap counter 0 looks the same and is read so
	// here (DPDK's vhost reads every base so); a ring the back-end stops and
	// starts itself keeps its used position apart (vq.stop).
	q.usedSet = s.Num > 0xffff
	q.usedPos, q.usedWrap = uint16(s.Num>>16&0x7fff), s.Num&(1<<31) != 0
	return nil, nil
}

// getVringBase stops the ring and reports where the next owner resumes.
func (d *device) getVringBase(m *message) ([]byte, error) {
	s := decodeState(m.payload)
	q, err := d.queue(s.Index)
	if err != nil {
		return nil, err
	}
	q.stop()
	q.dropKick()
	base := q.base
	if !q.baseSet && d.has(FeatureRingPacked) {
		// Never set nor run: a fresh packed ring, positions 0 and both wrap
		// counters 1 (VIRTIO 1.2 §2.8.1), in the encoding SET_VRING_BASE takes.
		base = 1<<15 | 1<<31
	}
	out := make([]byte, sizeState)
	le.PutUint32(out, s.Index)
	le.PutUint32(out[4:], base)
	return out, nil
}

func (d *device) vringFile(m *message) (*vq, int, error) {
	v := le.Uint64(m.payload)
	if v&^uint64(vringIndexMask|vringNoFd) != 0 {
		return nil, -1, fmt.Errorf("%w: vring file word %#x", ErrInvalid, v)
	}
	q, err := d.queue(uint32(v & vringIndexMask))
	if err != nil {
		return nil, -1, err
	}
	fd := -1
	if v&vringNoFd == 0 {
		// The datapath signals these fds: a blocking one (a full pipe passed as an
		// "eventfd") would hang the worker that serves every port. The front-ends'
		// own eventfds are non-blocking already (QEMU, virtio-user). O_NONBLOCK
		// bounds a write only on some kinds of descriptor: a regular file would
		// grow by 8 bytes a signal, its pages charged to this process, and one on
		// a FUSE mount the front-end serves could block. vhost-user.rst passes
		// eventfds here ("Ancillary data": SET_VRING_KICK/CALL/ERR); other kinds
		// are refused.
		if err := uds.CheckSignalFd(m.fds[0]); err != nil {
			return nil, -1, fmt.Errorf("%w: vring fd: %v", ErrInvalid, err)
		}
		if err := uds.SetNonblock(m.fds[0]); err != nil {
			return nil, -1, fmt.Errorf("%w: vring fd: %v", ErrInvalid, err)
		}
		fd, m.fds[0] = m.fds[0], -1
	}
	return q, fd, nil
}

func (d *device) setVringKick(m *message) ([]byte, error) {
	q, fd, err := d.vringFile(m)
	if err != nil {
		return nil, err
	}
	q.stop()
	if q.kick >= 0 {
		uds.Close(q.kick)
	}
	q.kick, q.kickSet = fd, true
	return nil, d.start(q)
}

func (d *device) setVringCall(m *message) ([]byte, error) {
	q, fd, err := d.vringFile(m)
	if err != nil {
		return nil, err
	}
	running := q.stop() != nil
	if q.call >= 0 {
		uds.Close(q.call)
	}
	q.call = fd
	if running {
		return nil, d.start(q)
	}
	return nil, nil
}

// setVringErr sets the eventfd the back-end signals when the ring breaks (a chain
// the guest got wrong, a fault on its memory); QEMU reports it as a vring error. A
// running ring restarts with it, as with SET_VRING_CALL, so the datapath never holds
// a closed descriptor.
func (d *device) setVringErr(m *message) ([]byte, error) {
	q, fd, err := d.vringFile(m)
	if err != nil {
		return nil, err
	}
	running := q.stop() != nil
	if q.errFd >= 0 {
		uds.Close(q.errFd)
	}
	q.errFd = fd
	if running {
		return nil, d.start(q)
	}
	return nil, nil
}

func (d *device) setVringEnable(m *message) ([]byte, error) {
	s := decodeState(m.payload)
	q, err := d.queue(s.Index)
	if err != nil {
		return nil, err
	}
	if !d.has(FeatureProtocolFeatures) && !d.protoSet {
		return nil, fmt.Errorf("%w: SET_VRING_ENABLE without PROTOCOL_FEATURES", ErrNotNegotiated)
	}
	if s.Num > 1 {
		return nil, fmt.Errorf("%w: enable %d", ErrInvalid, s.Num)
	}
	q.enabled = s.Num == 1
	if !q.enabled {
		q.stop()
		return nil, nil
	}
	return nil, d.start(q)
}

// start builds and publishes the running ring of q if it is ready: memory, size,
// addresses, a kick (or polling) and enabled. A queue not ready yet is not an error.
func (d *device) start(q *vq) error {
	if q.active.Load() != nil || !q.kickSet || !q.addrSet || q.num == 0 || !q.enabled || d.mem.mem == nil {
		return nil
	}
	mem := d.mem.mem
	n := int(q.num)
	o := vring.Options{Size: n, Features: d.features & (vring.FeatureEventIdx | vring.FeatureIndirectDesc | vring.FeatureInOrder | vring.FeatureVersion1 | vring.FeatureRingPacked),
		MaxChainDescs: maxChainDescs}
	if d.opts.MaxChainBytes > 0 {
		o.MaxChainBytes = d.opts.MaxChainBytes
	}
	burst, slots := min(n, 64), 0
	if q.idx%2 == 0 && d.has(FeatureMrgRxbuf) {
		slots = min(n, maxMrgBufs)
	}
	r := newRing(burst, slots)
	r.mem, r.cur, r.call, r.errFd = mem, mem.Cursor(), q.call, q.errFd
	r.mrg = d.has(FeatureMrgRxbuf)
	r.hdrLen = 10
	if r.mrg || d.has(FeatureVersion1) {
		r.hdrLen = 12
	}
	a := q.addr
	if d.has(FeatureRingPacked) {
		desc, ev := vring.PackedSizes(n)
		dr, err1 := mem.TranslateUser(a.Desc, uint64(desc))
		de, err2 := mem.TranslateUser(a.Avail, uint64(ev)) // driver event area
		dv, err3 := mem.TranslateUser(a.Used, uint64(ev))  // device event area
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("%w: queue %d ring addresses: %v", ErrInvalid, q.idx, err)
		}
		dev, err := vring.NewPackedDevice(vring.PackedRing{Desc: dr, DriverEvent: de, DeviceEvent: dv}, mem, o)
		if err != nil {
			return fmt.Errorf("%w: queue %d: %v", ErrInvalid, q.idx, err)
		}
		wrap := q.base&(1<<15) != 0
		pos := uint16(q.base & 0x7fff)
		if !q.baseSet {
			// No SET_VRING_BASE: a fresh ring, both wrap counters at 1 (§2.8.1).
			// A base of 0 that was sent is taken as sent: position 0 after an odd
			// number of laps, as QEMU and DPDK's vhost read it (a fresh ring is
			// 0x8000 from QEMU and from DPDK's virtio-user).
			wrap = true
		}
		upos, uwrap := pos, wrap
		if q.usedSet {
			upos, uwrap = q.usedPos, q.usedWrap
		}
		if int(pos) >= n || int(upos) >= n {
			return fmt.Errorf("%w: queue %d base %#x beyond size %d", ErrInvalid, q.idx, q.base, n)
		}
		if d.has(FeatureInOrder) {
			// Buffers between the used and the available position were taken by
			// a previous owner and never used. An in-order driver takes the next
			// used descriptor as using them too (packed ring, "In-order use of
			// descriptors") and moves past them, while this device would go on
			// writing at the used position: the two would no longer meet. They
			// are served again instead, as a split ring resumes from used.idx.
			pos, wrap = upos, uwrap
		}
		dev.SetBase(pos, wrap, upos, uwrap)
		dev.DisableNotify()
		r.packed = dev
		// The guest's transmit queue (odd index) completes whole bursts at once:
		// Rx pushes every chain it popped, in pop order (§2.8.8: one used
		// descriptor, the last buffer's id, stands for all of them).
		r.inOrder = q.idx%2 == 1 && d.has(FeatureInOrder)
	} else {
		ds, as, us := vring.SplitDeviceSizes(n)
		dr, err1 := mem.TranslateUser(a.Desc, uint64(ds))
		ar, err2 := mem.TranslateUser(a.Avail, uint64(as))
		ur, err3 := mem.TranslateUser(a.Used, uint64(us))
		if err := errors.Join(err1, err2, err3); err != nil {
			return fmt.Errorf("%w: queue %d ring addresses: %v", ErrInvalid, q.idx, err)
		}
		dev, err := vring.NewSplitDevice(vring.SplitRing{Desc: dr, Avail: ar, Used: ur}, mem, o)
		if err != nil {
			return fmt.Errorf("%w: queue %d: %v", ErrInvalid, q.idx, err)
		}
		dev.SetBase(uint16(q.base))
		if u := dev.UsedIdx(); u != uint16(q.base) {
			// The ring's used.idx counts the chains a device completed; a base
			// that disagrees with it comes from a front-end that sets the ring up
			// again without knowing where the device got to: DPDK's virtio-user
			// sends SET_VRING_BASE 0 whenever a back-end (re)connects to its
			// running rings. Taken as sent, the driver's avail.idx would read as
			// hundreds of chains ahead (a broken ring) or stale entries would be
			// served again. Resume from used.idx, as DPDK's vhost does
			// (vhost-user.rst, "Ring states": SET_VRING_BASE; QEMU's restart and
			// reconnect both send used.idx, so for QEMU nothing changes).
			dev.SetBase(u)
		}
		dev.DisableNotify()
		r.split = dev
	}
	if d.has(FeatureLogAll) && d.log != nil {
		d.logRings(q, r)
	}
	q.active.Store(r)
	return nil
}

// logRings sets r up to log its writes into the dirty log: the guest memory its
// pushes write (split: the used ring, at the address SET_VRING_ADDR gave for
// logging when it set VHOST_VRING_F_LOG; packed: the descriptor ring and the
// device event area, found from their front-end addresses).
func (d *device) logRings(q *vq, r *ring) {
	n := int(q.num)
	a := q.addr
	r.log = d.log
	d.loggedStarts.Add(1)
	if r.packed != nil {
		ds, ev := vring.PackedSizes(n)
		r.logAt = append(r.logAt[:0], d.userRange(a.Desc, uint64(ds))...)
		r.logAt = append(r.logAt, d.userRange(a.Used, uint64(ev))...)
	} else {
		_, _, us := vring.SplitSizes(n)
		if a.Flags&vringAddrLog != 0 {
			r.logAt = append(r.logAt[:0], logRange{a.Log, uint64(us)})
		} else {
			r.logAt = append(r.logAt[:0], d.userRange(a.Used, uint64(us))...)
		}
	}
	r.markRings() // DisableNotify has written already
}

// userRange returns the guest physical ranges behind front-end addresses
// [ua, ua+n), one per memory region they fall in.
func (d *device) userRange(ua, n uint64) []logRange {
	var out []logRange
	for _, s := range d.mem.slots {
		lo, hi := max(ua, s.r.UserAddr), min(ua+n, s.r.UserAddr+s.r.Size)
		if lo < hi {
			out = append(out, logRange{s.r.GuestAddr + (lo - s.r.UserAddr), hi - lo})
		}
	}
	return out
}

// stopAll stops every running queue.
func (d *device) stopAll() {
	for _, q := range d.queues {
		q.stop()
	}
}

// startAll starts every queue that is ready, after a change of the memory table or
// the dirty log. Not only the ones that ran before it: a ring that could not start
// earlier (its addresses left the table, as between QEMU's REM_MEM_REG and
// ADD_MEM_REG of a region that changes; or its kick came before any memory) starts
// once its memory is there, rather than waiting for a SET_VRING_KICK that may never
// come. start leaves running and unready queues alone.
func (d *device) startAll() {
	for _, q := range d.queues {
		d.start(q) // a ring whose addresses are not in the table stays stopped
	}
}

// teardown stops every queue, closes their descriptors and unmaps guest memory.
func (d *device) teardown() {
	for _, q := range d.queues {
		q.reset()
	}
	d.mem.unmapAll()
	d.log.unmap()
	d.log = nil
}
