package xsk

import (
	"errors"
	"fmt"
	"sync"

	"github.com/dpkit/dpkit/internal/afxdp"
	"github.com/vishvananda/netlink"
)

// Options configure Open and OpenAll. The zero value opens with a UMEM of its own,
// 2048-entry rings, zero-copy if possible, and the built-in program attached natively
// if possible.
type Options struct {
	// UMEM to use; nil makes one from UMEMOptions, closed with the port(s). One an
	// earlier Open made (a port's Socket().UMEM()) is closed with the last port of
	// either.
	UMEM        *UMEM
	UMEMOptions UMEMOptions
	// Socket configures each socket; Open takes the queue from its argument.
	Socket Config
	// Program redirects to the sockets. nil uses the built-in one: the device's, if an
	// Open or OpenAll of this process attached it and a port of it is still open (the
	// first one's ProgramOptions and Attach apply; a different explicit Attach is an
	// error), else a new one loaded with ProgramOptions and attached with Attach.
	// It is detached and closed with the last such port; a port opened with the
	// built-in program passed here (an earlier port's Program) counts as one.
	Program        *Program
	ProgramOptions ProgramOptions
	Attach         AttachMode
	// PinnedMap, when set (and Program nil), registers the sockets in the XSKMAP
	// pinned there instead of loading a program: the CNI-managed setup.
	PinnedMap string
	// PortID is the pmd port id stamped on received packets (OpenAll adds the queue).
	PortID uint16
}

// Open opens one queue of a device as a Port: UMEM, program, socket, XSKMAP entry.
// Opens of other queues of the same device share its program (see Options.Program).
func Open(ifname string, queue int, opts Options) (*Port, error) {
	ps, err := open(ifname, []int{queue}, opts)
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// OpenAll opens every rx queue in use on a device (see Queues), one Port per queue, sharing one UMEM
// (XDP_SHARED_UMEM, with per-socket fill and completion rings) and one program. Each
// port is then driven by its own goroutine.
func OpenAll(ifname string, opts Options) ([]*Port, error) {
	n, err := Queues(ifname)
	if err != nil {
		return nil, err
	}
	qs := make([]int, n)
	for i := range qs {
		qs[i] = i
	}
	return open(ifname, qs, opts)
}

// Queues returns how many rx queues a device of the calling thread's network namespace
// has in use: its rx and combined channels (ETHTOOL_GCHANNELS), which `ethtool -L`
// may have set below what the device allocated. The kernel binds sockets to those
// only. For a driver that does not report channels it is the allocated count.
func Queues(ifname string) (int, error) {
	n, ok, err := afxdp.ActiveRxQueues(ifname)
	if afxdp.IsNoDevice(err) {
		return 0, fmt.Errorf("%w: %s", ErrNoDevice, ifname)
	}
	if err == nil && ok && n > 0 {
		return n, nil
	}
	// Not the sysfs queues/rx-* count, which would be of the namespace sysfs was
	// mounted in: netlink answers for the caller's.
	return allocatedQueues(ifname)
}

// allocatedQueues returns how many rx queues a device allocated (netlink
// IFLA_NUM_RX_QUEUES): the most it can use, however its channels are set later, so the
// size for an XSKMAP keyed by queue.
func allocatedQueues(ifname string) (int, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %v", ErrNoDevice, ifname, err)
	}
	return max(l.Attrs().NumRxQueues, 1), nil
}

// refs releases a shared resource when the last port using it closes.
type refs struct {
	mu sync.Mutex
	n  int
	fn func() error
}

// hold takes one more reference unless the last one is gone.
func (r *refs) hold() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == 0 {
		return false
	}
	r.n++
	return true
}

func (r *refs) add(k int) {
	r.mu.Lock()
	r.n += k
	r.mu.Unlock()
}

func (r *refs) release() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n--; r.n == 0 {
		return r.fn()
	}
	return nil
}

// open returns the ports, or nil and an error after closing what it opened.
func open(ifname string, queues []int, opts Options) (_ []*Port, err error) {
	ifindex, err := Ifindex(ifname)
	if err != nil {
		return nil, err
	}
	if n, ok, qerr := afxdp.ActiveRxQueues(ifname); qerr == nil && ok {
		for _, q := range queues {
			if q >= n {
				// bind would fail with EINVAL, which reads like a mode the device lacks.
				return nil, fmt.Errorf("%w: %s queue %d: the device has %d rx queues in use", ErrOptions, ifname, q, n)
			}
		}
	}
	var ports []*Port
	var undo []func() error
	defer func() {
		if err != nil {
			for _, p := range ports {
				p.Close()
			}
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	u := opts.UMEM
	var umemRef *refs
	heldUMEM := false // umemRef counts a reference of this open's own
	if u == nil {
		uo := opts.UMEMOptions
		if uo.Pool == nil && uo.Frames == 0 {
			// Enough for every queue's fill ring full and its tx ring full.
			fill, _ := ringSize(opts.Socket.FillSize)
			tx, _ := ringSize(opts.Socket.TxSize)
			uo.Frames = max(4096, len(queues)*int(fill+tx))
		}
		if u, err = NewUMEM(uo); err != nil {
			return nil, err
		}
		undo = append(undo, u.Close)
		umemRef = &refs{fn: u.Close}
	} else if r := u.openRefs(); r != nil && r.hold() {
		// A UMEM an earlier Open made, closed by its last port: these ports hold it
		// too, or it would be closed under them.
		undo = append(undo, r.release)
		umemRef, heldUMEM = r, true
	}
	prog := opts.Program
	var progRef *refs
	switch {
	case prog != nil:
		// The device's built-in program, as an earlier port's Program returns it, is
		// held like nil's: else closing the ports of the Open that attached it would
		// detach it from under these.
		if release := holdSharedProgram(prog); release != nil {
			undo = append(undo, release)
			progRef = &refs{fn: release}
		}
	case opts.PinnedMap != "":
		if prog, err = LoadPinnedMap(opts.PinnedMap); err != nil {
			return nil, err
		}
		undo = append(undo, prog.Close)
		progRef = &refs{fn: prog.Close}
	default:
		var release func() error
		if prog, release, err = sharedProgram(ifname, ifindex, opts); err != nil {
			return nil, err
		}
		undo = append(undo, release)
		progRef = &refs{fn: release}
	}
	for _, q := range queues {
		cfg := opts.Socket
		cfg.Queue = q
		p, perr := NewPort(u, ifindex, cfg, opts.PortID+uint16(q))
		if perr != nil {
			return nil, fmt.Errorf("xsk: %s queue %d: %w", ifname, q, perr)
		}
		p.prog = prog
		ports = append(ports, p)
		if err = prog.Register(q, p.s); err != nil {
			return nil, err
		}
	}
	// From here the ports own the shared pieces: the last to close releases them.
	undo = nil
	for _, p := range ports {
		if progRef != nil {
			progRef.n++
			p.cleanup = append(p.cleanup, progRef.release)
		}
		if umemRef != nil {
			umemRef.add(1)
			p.cleanup = append(p.cleanup, umemRef.release)
		}
	}
	switch {
	case heldUMEM:
		umemRef.release() // the ports hold it now
	case umemRef != nil:
		u.setOpenRefs(umemRef)
	}
	return ports, nil
}

// CloseAll closes ports and joins their errors.
func CloseAll(ports []*Port) error {
	var errs []error
	for _, p := range ports {
		errs = append(errs, p.Close())
	}
	return errors.Join(errs...)
}

// devPrograms are the built-in programs Open attached, one per device, shared by every
// Open and OpenAll of the device in this process: a device takes one XDP program, so a
// second Open attaching its own failed (EBUSY), and each queue's socket must be in the
// one program's XSKMAP anyway. The last port using one detaches and closes it.
var devPrograms struct {
	mu sync.Mutex
	m  map[devKey]*devProgram
}

// devKey names a device: interface indexes are unique only within a namespace.
type devKey struct {
	nsDev, nsIno uint64
	ifindex      int
}

type devProgram struct {
	prog  *Program
	users int // open calls holding it
}

// sharedProgram returns the device's built-in program, loading and attaching it
// (XSKMAP sized for every queue the device allocated) if no Open of this process has,
// and the function that gives it back.
func sharedProgram(ifname string, ifindex int, opts Options) (*Program, func() error, error) {
	key := devKey{ifindex: ifindex}
	var err error
	if key.nsDev, key.nsIno, err = afxdp.Netns(); err != nil {
		return nil, nil, fmt.Errorf("xsk: %s: %w", ifname, err)
	}
	devPrograms.mu.Lock()
	defer devPrograms.mu.Unlock()
	d := devPrograms.m[key]
	if d == nil {
		po := opts.ProgramOptions
		if po.MaxQueues == 0 {
			if q, qerr := allocatedQueues(ifname); qerr == nil {
				po.MaxQueues = max(q, 1)
			}
		}
		prog, err := NewProgram(po)
		if err != nil {
			return nil, nil, err
		}
		if err := prog.Attach(ifindex, opts.Attach); err != nil {
			prog.Close()
			return nil, nil, err
		}
		d = &devProgram{prog: prog}
		if devPrograms.m == nil {
			devPrograms.m = map[devKey]*devProgram{}
		}
		devPrograms.m[key] = d
	} else if m := d.prog.Mode(); opts.Attach != AttachAuto && opts.Attach != m {
		return nil, nil, fmt.Errorf("%w: %s: Attach %v, but an earlier Open attached the program %v", ErrOptions, ifname, opts.Attach, m)
	}
	d.users++
	return d.prog, d.release(key), nil
}

// holdSharedProgram takes a reference on prog if it is a device's built-in program,
// and returns the function that gives it back; nil for any other program.
func holdSharedProgram(prog *Program) func() error {
	devPrograms.mu.Lock()
	defer devPrograms.mu.Unlock()
	for key, d := range devPrograms.m {
		if d.prog == prog {
			d.users++
			return d.release(key)
		}
	}
	return nil
}

// release returns the function that gives back one reference to d, detaching and
// closing its program with the last.
func (d *devProgram) release(key devKey) func() error {
	return func() error {
		devPrograms.mu.Lock()
		defer devPrograms.mu.Unlock()
		if d.users--; d.users > 0 {
			return nil
		}
		delete(devPrograms.m, key)
		return d.prog.Close()
	}
}
