package vhost

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
)

// MaxQueuePairs is the most queue pairs a backend serves.
const MaxQueuePairs = 64

// Options configure a Backend. Path and Pool are required; every other zero value is a
// usable default.
type Options struct {
	// Path of the UNIX socket.
	Path string
	// Client makes the backend connect to Path (the front-end listens, as DPDK
	// virtio-user with server=1 and Contrail's vRouter do) and reconnect with
	// back-off whenever the connection drops. The zero value listens.
	Client bool
	// SocketMode is applied to the socket file when listening; 0 leaves the umask's.
	SocketMode os.FileMode
	// SocketGroup (a name or numeric gid) owns the socket file when listening;
	// empty leaves it.
	SocketGroup string
	// ReconnectMin and ReconnectMax bound the client's back-off; 0 means 100 ms and
	// 2 s (or ReconnectMin, if that is longer), and a minimum above a set maximum is
	// refused. The back-off doubles after each failed dial and each connection that
	// ended within ReconnectMax; a connection that lasted longer is redialled at once.
	ReconnectMin, ReconnectMax time.Duration
	// QueuePairs is the number of queue pairs offered (MQ); 0 means 1.
	QueuePairs int
	// MTU, if non-zero, is offered with VIRTIO_NET_F_MTU.
	MTU int
	// DisableFeatures removes virtio feature bits from the offer (e.g.
	// FeatureRingPacked to force split rings).
	DisableFeatures uint64
	// MaxChainBytes caps one descriptor chain; 0 means no cap beyond 4 GiB.
	MaxChainBytes uint32
	// MaxGuestMemory caps the total size of the guest memory regions mapped at
	// once for a front-end (SET_MEM_TABLE, ADD_MEM_REG); a table or region past it
	// is refused. 0 means DefaultMaxGuestMemory. Each region takes its size of
	// the process's address space whatever the file behind it holds, so a
	// front-end with a sparse file of its own choosing could otherwise leave the
	// Go runtime none to grow into.
	MaxGuestMemory uint64
	// Pool supplies the frames Rx fills; required.
	Pool *pmd.Pool
	// PortID is stamped into received packets' Pkt.Port.
	PortID uint16
	// Logger receives connection events; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	switch {
	case o.Path == "":
		return fmt.Errorf("%w: Path is required", ErrOptions)
	case o.Pool == nil:
		return fmt.Errorf("%w: Pool is required", ErrOptions)
	case o.QueuePairs < 0 || o.QueuePairs > MaxQueuePairs:
		return fmt.Errorf("%w: QueuePairs %d not in 0..%d", ErrOptions, o.QueuePairs, MaxQueuePairs)
	case o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535):
		return fmt.Errorf("%w: MTU %d", ErrOptions, o.MTU)
	case o.ReconnectMin < 0 || o.ReconnectMax < 0:
		return fmt.Errorf("%w: negative reconnect delay", ErrOptions)
	case o.ReconnectMax != 0 && o.ReconnectMin > o.ReconnectMax:
		return fmt.Errorf("%w: ReconnectMin %v above ReconnectMax %v", ErrOptions, o.ReconnectMin, o.ReconnectMax)
	}
	return nil
}

func (o *Options) queuePairs() int { return max(o.QueuePairs, 1) }

// DefaultMaxGuestMemory is the guest memory a front-end may have mapped when
// Options.MaxGuestMemory is 0: 1 TiB, more than any guest a vhost-user net
// back-end serves in practice, and 1/128 of x86-64's 47-bit address space.
const DefaultMaxGuestMemory = 1 << 40

func (o *Options) maxGuestMemory() uint64 {
	if o.MaxGuestMemory == 0 {
		return DefaultMaxGuestMemory
	}
	return o.MaxGuestMemory
}

func (o *Options) reconnectMin() time.Duration {
	if o.ReconnectMin == 0 {
		return 100 * time.Millisecond
	}
	return o.ReconnectMin
}

func (o *Options) reconnectMax() time.Duration {
	if o.ReconnectMax == 0 {
		return max(2*time.Second, o.reconnectMin())
	}
	return o.ReconnectMax
}

// Backend is a vhost-user net back-end on one socket: one front-end at a time (a
// reconnecting one is accepted again after it drops), one pmd.Port per queue pair.
// The ports outlive connections: while no front-end is attached, or a queue is being
// reconfigured, they move nothing.
//
// Backend is safe for concurrent use; each Port follows pmd.Port's rules.
type Backend struct {
	opts  Options
	log   *slog.Logger
	ports []*Port

	mu       sync.Mutex
	dev      *device // current connection's device, nil between connections
	ln       *uds.Listener
	conn     *uds.Conn
	closed   bool
	stop     chan struct{}  // closed by Close
	serving  sync.WaitGroup // Serve calls under way, for Close to wait for
	conns    atomic.Uint64
	lastErr  atomic.Pointer[error]
	attached atomic.Bool
	curDev   atomic.Pointer[device] // for the datapath
}

// NewBackend validates opts and creates the ports. Serve runs the socket.
func NewBackend(opts Options) (*Backend, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	b := &Backend{opts: opts, log: opts.Logger, stop: make(chan struct{})}
	if b.log == nil {
		b.log = slog.Default()
	}
	b.ports = make([]*Port, opts.queuePairs())
	for i := range b.ports {
		b.ports[i] = newPort(b, i)
	}
	return b, nil
}

// Port returns the port of queue pair i (guest TX → Rx, Tx → guest RX).
func (b *Backend) Port(i int) *Port { return b.ports[i] }

// Attached reports whether a front-end is connected. It turns false only after a
// departed front-end's memory is unmapped and its descriptors closed.
func (b *Backend) Attached() bool { return b.attached.Load() }

// Connections returns how many front-end connections were served.
func (b *Backend) Connections() uint64 { return b.conns.Load() }

// LastError returns the error that ended the last connection, if any.
func (b *Backend) LastError() error {
	if p := b.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Serve runs the socket until ctx is done or Close: it listens (or connects), serves
// one front-end at a time and, when a connection ends, drops its device (stopping
// the queues and unmapping guest memory) and waits for the next one.
func (b *Backend) Serve(ctx context.Context) error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrClosed
	}
	b.serving.Add(1)
	b.mu.Unlock()
	defer b.serving.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		b.Close()
	}()
	if b.opts.Client {
		return b.serveClient(ctx)
	}
	ln, err := uds.Listen(b.opts.Path, b.opts.SocketMode, b.opts.SocketGroup)
	if err != nil {
		return fmt.Errorf("vhost: listen %s: %w", b.opts.Path, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		ln.Close()
		return ctx.Err()
	}
	b.ln = ln
	b.mu.Unlock()
	defer ln.Close()
	var pause time.Duration // after an accept that failed for want of resources
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if b.isClosed() {
				return ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !acceptRetry(err) {
				return fmt.Errorf("vhost: accept: %w", err)
			}
			// Out of descriptors or memory for a moment: the connection waits in
			// the backlog. Keep the socket and try again after a pause, doubling
			// up to a second, as the client role redials after a failed dial.
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			b.log.Warn("vhost: accept failed, retrying", "path", b.opts.Path, "err", err, "in", pause)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-b.stop:
				return ErrClosed
			case <-time.After(pause):
			}
			continue
		}
		pause = 0
		b.serveConn(c)
	}
}

// acceptRetry reports whether a failed accept is worth retrying: the process or the
// system ran out of descriptors or memory, which a moment later may be back.
func acceptRetry(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func (b *Backend) serveClient(ctx context.Context) error {
	minD, maxD := b.opts.reconnectMin(), b.opts.reconnectMax()
	delay := minD
	var d net.Dialer
	for {
		if b.isClosed() {
			return ErrClosed
		}
		c, err := d.DialContext(ctx, "unix", b.opts.Path)
		if err == nil {
			start := time.Now()
			b.serveConn(c.(*net.UnixConn))
			if time.Since(start) >= maxD {
				// It was up a while: the front-end went away (a pod restarting);
				// try again at once.
				delay = minD
				continue
			}
			// It ended at once (a front-end that hangs up, or a fault it repeats
			// on every connection): back off as after a failed dial, not spin.
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		if b.isClosed() {
			return ErrClosed
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-b.stop:
			return ErrClosed
		case <-time.After(delay):
		}
		delay = min(2*delay, maxD)
	}
}

// serveConn runs one front-end connection to its end.
func (b *Backend) serveConn(c *net.UnixConn) {
	conn := uds.NewConn(c)
	dev := newDevice(&b.opts)
	dev.conn = conn
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		c.Close()
		return
	}
	b.conn, b.dev = conn, dev
	b.mu.Unlock()
	b.conns.Add(1)
	b.curDev.Store(dev)
	b.attached.Store(true)
	err := serveDevice(conn, dev)
	b.curDev.Store(nil)
	dev.teardown()
	c.Close()
	// The error first: a caller who sees Attached() false reads this connection's
	// in LastError, not the one before's.
	b.lastErr.Store(&err)
	// Detached only once the device's memory is unmapped and its descriptors are
	// closed, so that a caller who sees Attached() false sees them gone.
	b.attached.Store(false)
	b.mu.Lock()
	b.conn, b.dev = nil, nil
	b.mu.Unlock()
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		b.log.Warn("vhost: front-end dropped", "path", b.opts.Path, "err", err)
	}
}

// serveDevice reads, dispatches and answers messages until the connection fails or a
// message is refused without a way to report it.
func serveDevice(conn *uds.Conn, dev *device) error {
	var hb [hdrSize]byte
	payload := make([]byte, maxPayload)
	for {
		fds, err := conn.ReadFull(hb[:])
		if dev.faulted.Load() {
			uds.CloseAll(fds)
			return fmt.Errorf("%w: in the datapath", ErrGuestFault)
		}
		if err != nil {
			if errors.Is(err, uds.ErrTooManyFds) {
				// A bad descriptor count is a malformed message.
				err = fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			return err
		}
		h := decodeHeader(hb[:])
		if h.size > maxPayload {
			uds.CloseAll(fds)
			return protoErr(h.req, "payload size %d", h.size)
		}
		if h.size > 0 {
			more, err := conn.ReadFull(payload[:h.size])
			fds = append(fds, more...)
			if err != nil || len(fds) > uds.MaxFds {
				uds.CloseAll(fds)
				if err == nil || errors.Is(err, uds.ErrTooManyFds) {
					err = fmt.Errorf("%w: %w", protoErr(h.req, "more than %d descriptors", uds.MaxFds), uds.ErrTooManyFds)
				} else if errors.Is(err, io.EOF) {
					// The header came whole: the end of the stream
					// before its payload cuts a message short.
					err = fmt.Errorf("vhost: %v payload: %w", h.req, io.ErrUnexpectedEOF)
				}
				return err
			}
		}
		var res dispatchResult
		m := &message{hdr: h, payload: payload[:h.size], fds: fds}
		if err := guard(dev.owns, func() { res = dev.dispatch(m) }); err != nil {
			return err // dispatch closed the message's descriptors on its way out
		}
		if res.reply != nil {
			if err := conn.Write(res.reply); err != nil {
				return err
			}
		}
		if res.fatal != nil {
			return res.fatal
		}
	}
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Close ends Serve (which returns ErrClosed) and its connection; the ports move
// nothing afterwards. It returns once Serve has: the connection's rings are stopped,
// the guest's memory is unmapped and the socket file is removed, so a process may
// exit right after it, or a new Backend listen on the same path.
func (b *Backend) Close() error {
	b.mu.Lock()
	if !b.closed {
		close(b.stop)
	}
	b.closed = true
	if b.ln != nil {
		b.ln.Close()
	}
	if b.conn != nil {
		// Not Close: the connection ends the way a front-end's hang-up does, so
		// serveConn stops the rings (waiting for the datapath to leave them) before
		// it closes the socket. A front-end that sees the hang-up may then reuse
		// the buffers it had posted; closing first let it do so while a burst was
		// still writing into them.
		b.conn.CloseRead()
		b.conn.SetWriteDeadline(time.Now())
	}
	b.mu.Unlock()
	b.serving.Wait()
	return nil
}
