package vhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/internal/sysmem"
	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vring"
)

// FrontendOptions configure Dial. Path and Pool are required; every other zero value
// is a usable default.
type FrontendOptions struct {
	// Path of the back-end's socket.
	Path string
	// Listen makes the front-end own the socket and wait for the back-end to connect
	// (DPDK net_vhost with client=1). The zero value connects.
	Listen bool
	// QueuePairs to set up; 0 means 1. The back-end must offer MQ for more.
	QueuePairs int
	// QueueSize of every virtqueue; 0 means 256. A power of two for split rings.
	QueueSize int
	// DisableFeatures removes features from the request (FeatureRingPacked for split
	// rings, FeatureMrgRxbuf, FeatureInOrder, ...).
	DisableFeatures uint64
	// Pool supplies packet buffers; it must be Shared (memfd-backed): its region is
	// handed to the back-end, and packets are sent from and received into its frames
	// without a copy.
	Pool *pmd.Pool
	// PortID is stamped into received packets.
	PortID uint16
}

// Validate reports whether the options are usable.
func (o *FrontendOptions) Validate() error {
	switch {
	case o.Path == "":
		return fmt.Errorf("%w: Path is required", ErrOptions)
	case o.Pool == nil || o.Pool.Fd() < 0:
		return fmt.Errorf("%w: a Shared Pool is required", ErrOptions)
	case o.QueuePairs < 0 || o.QueuePairs > MaxQueuePairs:
		return fmt.Errorf("%w: QueuePairs %d", ErrOptions, o.QueuePairs)
	case o.QueueSize < 0 || o.QueueSize > vring.MaxQueueSize:
		return fmt.Errorf("%w: QueueSize %d", ErrOptions, o.QueueSize)
	}
	return nil
}

// Frontend is a vhost-user net front-end (the role of DPDK virtio-user): it shares
// its pool's memory with a back-end, drives the rings with vring's driver side and
// exposes each queue pair as a pmd.Port. Packets travel in pool frames, zero-copy: the
// virtio-net header is written into the headroom in front of the data.
//
// Close and Down are safe for concurrent use, with each other and with the ports'
// Err and Stats; each FrontendPort follows pmd.Port's rules, and Close comes after
// the goroutines calling Rx and Tx stopped.
type Frontend struct {
	opts     FrontendOptions
	conn     *uds.Conn
	features uint64
	proto    uint64
	rings    []byte // memfd mapping holding every ring
	ringsFd  int
	ports    []*FrontendPort
	fds      []int
	mu       sync.Mutex
	closed   bool
	live     bool        // setup made receive buffers available to the back-end
	down     atomic.Bool // the back-end hung up or broke the protocol
	closing  atomic.Bool // Close took the socket back from watch
	watchEnd chan struct{}
}

// Down reports whether the back-end closed the connection (or sent a message it
// had no business sending); the ports then move nothing and the Frontend should be closed (and dialled again).
func (f *Frontend) Down() bool { return f.down.Load() }

// watch waits for the back-end to hang up. The back-end sends nothing unasked on this
// socket (no back-end request channel is negotiated), so any read result ends it and
// takes the device down: after end of file the back-end can answer nothing more, as
// DPDK takes it for a disconnect. Whether it let go of the rings is Close's to find
// out (stopRings): end of file says only that the back-end no longer writes (it
// may have shut down just its writing side and still run its rings), and after an
// unasked message (a confused or hostile back-end, still connected) Close must still
// ask it to stop them. The unasked message's payload is read too (and dropped), so
// that Close's requests find their answers at the start of the stream.
func (f *Frontend) watch() {
	defer close(f.watchEnd)
	var b [hdrSize]byte
	fds, err := f.conn.ReadFull(b[:])
	uds.CloseAll(fds)
	if !f.closing.Load() { // not Close's deadline
		f.down.Store(true)
	}
	if h := decodeHeader(b[:]); err == nil && h.size > 0 && h.size <= maxPayload {
		fds, _ = f.conn.ReadFull(make([]byte, h.size)) // until Close's deadline at most
		uds.CloseAll(fds)
	}
}

// hangup reports whether err from the socket means the peer closed it.
func hangup(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// stopRings asks the back-end to stop every ring of the queue pairs set up, and
// reports whether it answered for all within a second. A back-end that closed the
// connection counts as stopped: it dropped the device with it (closedBy).
func (f *Frontend) stopRings() bool {
	f.conn.SetDeadline(time.Now().Add(time.Second))
	for qp, p := range f.ports {
		if p == nil {
			continue
		}
		for dir := range 2 {
			var st [sizeState]byte
			idx := uint32(2*qp + dir)
			le.PutUint32(st[:], idx)
			r, err := f.request(ReqGetVringBase, st[:])
			if err != nil {
				return f.closedBy(err)
			}
			if len(r) != sizeState || le.Uint32(r) != idx {
				return false // an answer for another ring stops not this one
			}
		}
	}
	return true
}

// closedBy reports whether err, from a request, means the back-end closed the
// connection, and so let go of the rings (vhost-user.rst, "Ring states": only a
// stopped ring, or a back-end gone, leaves its buffers to the front-end). Only a
// socket shut in both directions shows that; one direction says less:
//   - EPIPE from sending says only that the back-end no longer reads.
//     Backend.Close shuts down its reading side first, then stops its rings and
//     closes the socket only after that, so the rings may still run when the send
//     fails. It is confirmed by reading on until the socket reports the close (end
//     of file or reset); whatever arrives meanwhile is discarded.
//   - End of file (or a reset) reading says only that the back-end no longer
//     writes: one that shut down just its writing side (shutdown(SHUT_WR)) still
//     reads, and its rings may run on. It is confirmed by a send failing too.
//
// Either waits within the deadline stopRings set.
func (f *Frontend) closedBy(err error) bool {
	if !errors.Is(err, syscall.EPIPE) {
		return hangup(err) && f.sendShut()
	}
	var b [hdrSize]byte
	for {
		fds, err := f.conn.ReadFull(b[:])
		uds.CloseAll(fds)
		if err != nil {
			return hangup(err)
		}
	}
}

// sendShut reports whether sending on the socket fails with EPIPE, the back-end
// having closed it (or shut down its reading side), before the deadline. It probes
// with an empty send, which carries nothing to a back-end still reading: a stream
// socket reports EPIPE for it once sending is shut down, and sends nothing.
func (f *Frontend) sendShut() bool {
	for {
		err := f.conn.Write(nil)
		if errors.Is(err, syscall.EPIPE) {
			return true
		}
		if err != nil {
			return false // the deadline, or worse
		}
		time.Sleep(time.Millisecond)
	}
}

// Negotiated features.
func (f *Frontend) Features() uint64 { return f.features }

// Port returns queue pair i.
func (f *Frontend) Port(i int) *FrontendPort { return f.ports[i] }

// Dial connects to (or, with Listen, waits for) a back-end and sets up the device.
// ctx bounds the whole of it, the handshake included (30 s without a deadline).
func Dial(ctx context.Context, opts FrontendOptions) (*Frontend, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.QueuePairs == 0 {
		opts.QueuePairs = 1
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = 256
	}
	var c *net.UnixConn
	if opts.Listen {
		ln, err := uds.Listen(opts.Path, 0, "")
		if err != nil {
			return nil, err
		}
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		c, err = ln.AcceptUnix()
		stop()
		ln.Close()
		if err != nil {
			return nil, fmt.Errorf("vhost: accept: %w", errors.Join(err, ctx.Err()))
		}
	} else {
		var d net.Dialer
		nc, err := d.DialContext(ctx, "unix", opts.Path)
		if err != nil {
			return nil, err
		}
		c = nc.(*net.UnixConn)
	}
	f := &Frontend{opts: opts, conn: uds.NewConn(c), ringsFd: -1}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	} else {
		c.SetDeadline(time.Now().Add(30 * time.Second))
	}
	// Cancelling ctx ends the handshake too: it cuts the socket's wait short.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	err := f.setup()
	if !stop() && err == nil {
		err = ctx.Err() // cancelled meanwhile: the socket's deadline may be cut
	}
	if err != nil {
		f.Close()
		if ctx.Err() != nil {
			err = errors.Join(err, ctx.Err())
		}
		return nil, err
	}
	c.SetDeadline(time.Time{})
	f.watchEnd = make(chan struct{})
	go f.watch()
	return f, nil
}

func (f *Frontend) request(req Request, payload []byte, fds ...int) ([]byte, error) {
	fl := uint32(flagVersion)
	replies := handlers[req] != nil && handlers[req].replies
	ack := !replies && f.proto&ProtoReplyAck != 0
	if ack {
		fl |= flagNeedReply
	}
	b := make([]byte, hdrSize+len(payload))
	encodeHeader(b, header{req: req, flags: fl, size: uint32(len(payload))})
	copy(b[hdrSize:], payload)
	if err := f.conn.Write(b, fds...); err != nil {
		return nil, fmt.Errorf("vhost: %v: %w", req, err)
	}
	if !replies && !ack {
		return nil, nil
	}
	var hb [hdrSize]byte
	got, err := f.conn.ReadFull(hb[:])
	uds.CloseAll(got)
	if err != nil {
		return nil, fmt.Errorf("vhost: %v reply: %w", req, err)
	}
	h := decodeHeader(hb[:])
	if h.req != req || h.flags&flagReply == 0 || h.size > maxPayload {
		return nil, protoErr(req, "bad reply header %+v", h)
	}
	p := make([]byte, h.size)
	if h.size > 0 {
		if got, err = f.conn.ReadFull(p); err != nil {
			return nil, err
		}
		uds.CloseAll(got)
	}
	if ack {
		if len(p) != 8 || le.Uint64(p) != 0 {
			return nil, fmt.Errorf("%w: back-end refused %v", ErrInvalid, req)
		}
		return nil, nil
	}
	return p, nil
}

func (f *Frontend) get64(req Request) (uint64, error) {
	p, err := f.request(req, nil)
	if err != nil {
		return 0, err
	}
	if len(p) != 8 {
		return 0, protoErr(req, "reply of %d bytes", len(p))
	}
	return le.Uint64(p), nil
}

// frontendFeatures is what the front-end asks for: its datapath handles all of these.
//
// MQ goes without CTRL_VQ, although virtio 1.x (§5.1.3.1) makes MQ require it. In
// vhost-user the front-end serves the control queue and the back-end runs only the
// data queues: QEMU passes MQ but never CTRL_VQ to a vhost-user back-end, and DPDK's
// virtio-user strips CTRL_VQ from SET_FEATURES ("devices do not really need to
// know"). The vhost-user equivalent of the control queue's
// VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET is SET_VRING_ENABLE, which setup sends for every
// ring. Accepting CTRL_VQ would tell a back-end that a control queue exists that
// nobody sets up; leaving MQ out would make DPDK's back-end drop all but the first
// queue pair (its SET_FEATURES handler does, without MQ). dpkit's back-end and
// DPDK's check only that the features were offered.
const frontendFeatures = FeatureVersion1 | FeatureMrgRxbuf | FeatureRingPacked | FeatureEventIdx |
	FeatureInOrder | FeatureMQ | FeatureProtocolFeatures

func (f *Frontend) setup() error {
	o := &f.opts
	if _, err := f.request(ReqSetOwner, nil); err != nil {
		return err
	}
	offered, err := f.get64(ReqGetFeatures)
	if err != nil {
		return err
	}
	f.features = offered & frontendFeatures &^ o.DisableFeatures
	if f.features&FeatureVersion1 == 0 {
		return fmt.Errorf("%w: back-end lacks VERSION_1", ErrNotNegotiated)
	}
	if f.features&FeatureProtocolFeatures != 0 {
		p, err := f.get64(ReqGetProtocolFeatures)
		if err != nil {
			return err
		}
		want := p & (ProtoMQ | ProtoReplyAck)
		if _, err := f.request(ReqSetProtocolFeatures, u64(want)); err != nil {
			return err
		}
		f.proto = want
	}
	if o.QueuePairs > 1 {
		if f.features&FeatureMQ == 0 || f.proto&ProtoMQ == 0 {
			return fmt.Errorf("%w: %d queue pairs need MQ", ErrNotNegotiated, o.QueuePairs)
		}
		n, err := f.get64(ReqGetQueueNum)
		if err != nil {
			return err
		}
		if uint64(o.QueuePairs) > n {
			return fmt.Errorf("%w: back-end serves %d queue pairs, %d asked", ErrInvalid, n, o.QueuePairs)
		}
	} else {
		f.features &^= FeatureMQ
	}
	packed := f.features&FeatureRingPacked != 0
	if !packed && o.QueueSize&(o.QueueSize-1) != 0 {
		return fmt.Errorf("%w: split queue size %d", ErrOptions, o.QueueSize)
	}
	if _, err := f.request(ReqSetFeatures, u64(f.features)); err != nil {
		return err
	}

	// Ring memory: one memfd holding every queue's rings, 4 KiB aligned each.
	nq := 2 * o.QueuePairs
	per := ringBytes(o.QueueSize, packed)
	size := (nq*per + 4095) &^ 4095
	if f.ringsFd, err = uds.MemfdWithSize("dpkit-vhost-rings", int64(size)); err != nil {
		return err
	}
	if f.rings, err = uds.MapShared(f.ringsFd, size); err != nil {
		return err
	}
	pool := o.Pool.Region()
	regs := []vring.Region{
		{Addr: uint64(sysmem.Addr(pool)), Host: pool},
		{Addr: uint64(sysmem.Addr(f.rings)), Host: f.rings},
	}
	mem, err := vring.NewMemory(regs...)
	if err != nil {
		return err
	}
	table := make([]byte, sizeMemTable+2*regionSize)
	le.PutUint32(table, 2)
	for i, r := range []memRegion{
		{GuestAddr: regs[0].Addr, Size: uint64(len(pool)), UserAddr: regs[0].Addr},
		{GuestAddr: regs[1].Addr, Size: uint64(size), UserAddr: regs[1].Addr},
	} {
		encodeRegion(table[sizeMemTable+i*regionSize:], r)
	}
	if _, err := f.request(ReqSetMemTable, table, o.Pool.Fd(), f.ringsFd); err != nil {
		return err
	}
	vo := vring.Options{Size: o.QueueSize, Features: f.features & (vring.FeatureEventIdx | vring.FeatureInOrder | vring.FeatureVersion1 | vring.FeatureRingPacked)}
	f.ports = make([]*FrontendPort, o.QueuePairs)
	for qp := range f.ports {
		p := &FrontendPort{f: f, id: o.PortID, pool: o.Pool, caches: pmd.NewPortCaches(o.Pool, 0),
			part: make([]pmd.Pkt, 0, pmd.MaxBurst)}
		p.hdrLen = 12 // VERSION_1: num_buffers is always in the header (virtio 1.2 §5.1.6)
		p.mrg = f.features&FeatureMrgRxbuf != 0
		f.ports[qp] = p
		for dir := 0; dir < 2; dir++ {
			idx := 2*qp + dir
			area := f.rings[idx*per : (idx+1)*per]
			base := regs[1].Addr + uint64(idx*per)
			dq, addr, err := newDriverQueue(area, base, mem, vo, packed)
			if err != nil {
				return err
			}
			dq.frames = make([]pmd.Frame, o.QueueSize)
			if idx%2 == 1 {
				// Transmit queue: room for the frames of chains, made here so that
				// Tx never allocates.
				dq.extra = make([][]pmd.Frame, o.QueueSize)
				for i := range dq.extra {
					dq.extra[i] = make([]pmd.Frame, 0, maxTxSegs-1)
				}
			}
			kick, err := uds.Eventfd()
			if err != nil {
				return err
			}
			call, err := uds.Eventfd()
			if err != nil {
				uds.Close(kick)
				return err
			}
			f.fds = append(f.fds, kick, call)
			dq.kick = kick
			dq.disableInterrupts()
			le.PutUint32(addr, uint32(idx))
			if _, err := f.request(ReqSetVringNum, stateB32(uint32(idx), uint32(o.QueueSize))); err != nil {
				return err
			}
			baseV := uint32(0)
			if packed {
				baseV = 1 << 15 // avail wrap counter starts at 1
			}
			if _, err := f.request(ReqSetVringBase, stateB32(uint32(idx), baseV)); err != nil {
				return err
			}
			if _, err := f.request(ReqSetVringAddr, addr); err != nil {
				return err
			}
			if _, err := f.request(ReqSetVringKick, u64(uint64(idx)), kick); err != nil {
				return err
			}
			if _, err := f.request(ReqSetVringCall, u64(uint64(idx)), call); err != nil {
				return err
			}
			if dir == 0 {
				p.rx = dq
			} else {
				p.tx = dq
			}
		}
		p.refill()
	}
	if f.features&FeatureProtocolFeatures != 0 {
		for i := 0; i < nq; i++ {
			if _, err := f.request(ReqSetVringEnable, stateB32(uint32(i), 1)); err != nil {
				return err
			}
		}
	}
	f.live = true
	for _, p := range f.ports {
		p.rx.publish()
	}
	return nil
}

func stateB32(i, n uint32) []byte {
	b := make([]byte, 8)
	le.PutUint32(b, i)
	le.PutUint32(b[4:], n)
	return b
}

// ringBytes is the memory one queue's rings take, each area 64-byte aligned.
func ringBytes(n int, packed bool) int {
	if packed {
		d, e := vring.PackedSizes(n)
		return (d+63)&^63 + 64 + (e+63)&^63 + 64
	}
	d, a, u := vring.SplitSizes(n)
	return (d+63)&^63 + (a+63)&^63 + (u+63)&^63 + 64
}

// Close stops the back-end's rings, disconnects, which makes the back-end drop the
// device, and unmaps the rings. Frames still posted to the rings return to the pool
// once the back-end has stopped using them: Close first asks it to stop each ring
// (GET_VRING_BASE, which a back-end answers only after its datapath left the ring, as
// QEMU does before it reuses guest memory). A back-end that does not answer within a
// second may still write into them, so they are left out of the pool and Close says
// how many. Call it after the datapath goroutines stopped.
func (f *Frontend) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	if f.watchEnd != nil {
		// Take the socket back from watch: the back-end sends nothing unasked, so
		// no message is cut short.
		f.closing.Store(true)
		f.conn.SetReadDeadline(time.Now())
		<-f.watchEnd
	}
	// A Dial that failed made no buffer available: no ring has anything to stop.
	stopped := !f.live || f.stopRings()
	f.down.Store(true)
	err := f.conn.Close()
	withheld := 0
	for _, p := range f.ports {
		if p != nil { // nil past a queue pair whose setup failed
			withheld += p.release(stopped)
		}
	}
	if withheld > 0 {
		err = errors.Join(err, fmt.Errorf("vhost: the back-end did not stop its rings: %d frames posted to them are left out of the pool", withheld))
	}
	uds.CloseAll(f.fds)
	if f.rings != nil {
		uds.Munmap(f.rings)
	}
	if f.ringsFd >= 0 {
		uds.Close(f.ringsFd)
	}
	return err
}
