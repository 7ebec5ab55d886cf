package xsk

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

// AttachMode says how an XDP program is attached to a device.
type AttachMode int8

const (
	// AttachAuto tries the driver's native XDP and falls back to generic (SKB) mode.
	AttachAuto AttachMode = iota
	// AttachNative requires native (driver) mode.
	AttachNative
	// AttachGeneric uses generic mode, which every device supports, slowly.
	AttachGeneric
	// attachNone: the program is not attached by dpkit (a caller-managed program).
	attachNone
)

func (m AttachMode) String() string {
	switch m {
	case AttachAuto:
		return "auto"
	case AttachNative:
		return "native"
	case AttachGeneric:
		return "generic"
	}
	return "none"
}

// ProgramOptions configure the built-in redirect program. The zero value sizes the
// XSKMAP for 256 queues and loads a frags-aware program.
type ProgramOptions struct {
	// MaxQueues is the XSKMAP size; 0 means 256.
	MaxQueues int
	// NoFrags loads the program without BPF_F_XDP_HAS_FRAGS (for kernels before
	// 5.18). Without it, devices with an MTU above a page refuse native attach and
	// multi-buffer sockets get no jumbo frames.
	NoFrags bool
}

// Validate reports whether the options are usable.
func (o *ProgramOptions) Validate() error {
	if o.MaxQueues < 0 || o.MaxQueues > 1<<16 {
		return fmt.Errorf("%w: MaxQueues %d", ErrOptions, o.MaxQueues)
	}
	return nil
}

// Program is an XDP program that redirects frames into AF_XDP sockets through an
// XSKMAP keyed by rx queue index: dpkit's built-in one, or a caller's.
//
// The built-in program is, in eBPF assembly:
//
//	r2 = *(u32 *)(r1 + 16)     ; ctx->rx_queue_index
//	r1 = xskmap
//	r3 = XDP_PASS              ; bpf_redirect_map's fallback when the slot is empty
//	call bpf_redirect_map
//	exit
//
// so a queue without a socket passes its frames to the kernel stack.
//
// Program is safe for concurrent use.
type Program struct {
	mu     sync.Mutex
	prog   *ebpf.Program // nil for a caller's map only
	xsks   *ebpf.Map
	link   link.Link
	mode   AttachMode
	frags  bool
	owned  bool // prog and xsks were made here and are closed by Close
	closed bool
}

// xdpMdRxQueueIndex is offsetof(struct xdp_md, rx_queue_index).
const xdpMdRxQueueIndex = 16

// bpfFXDPHasFrags is BPF_F_XDP_HAS_FRAGS (the "xdp.frags" section of libbpf).
const bpfFXDPHasFrags = 1 << 5

// NewProgram loads the built-in redirect program and its XSKMAP. Attach it to a device
// and Register sockets with it.
func NewProgram(opts ProgramOptions) (*Program, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	n := opts.MaxQueues
	if n == 0 {
		n = 256
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "dpkit_xsks", Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(n)})
	if err != nil {
		return nil, fmt.Errorf("xsk: create XSKMAP: %w", err)
	}
	spec := &ebpf.ProgramSpec{
		Name: "dpkit_xsk",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, xdpMdRxQueueIndex, asm.Word),
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R3, 2), // XDP_PASS
			asm.FnRedirectMap.Call(),
			asm.Return(),
		},
		License: "Dual BSD/GPL",
	}
	frags := !opts.NoFrags
	if frags {
		spec.Flags = bpfFXDPHasFrags
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil && frags {
		// Kernels before 5.18 reject the flag: load a plain program and say so in Frags.
		spec.Flags, frags = 0, false
		prog, err = ebpf.NewProgram(spec)
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("xsk: load redirect program: %w", err)
	}
	return &Program{prog: prog, xsks: m, frags: frags, owned: true, mode: attachNone}, nil
}

// NewProgramFrom uses a caller's XDP program and XSKMAP (both may come from an object
// file or a pin). prog may be nil when someone else attaches the program. The caller
// keeps ownership: Close detaches what Attach attached but closes neither.
func NewProgramFrom(prog *ebpf.Program, xskmap *ebpf.Map) (*Program, error) {
	if xskmap == nil || xskmap.Type() != ebpf.XSKMap {
		return nil, fmt.Errorf("%w: need an XSKMAP", ErrOptions)
	}
	return &Program{prog: prog, xsks: xskmap, mode: attachNone}, nil
}

// LoadPinnedMap opens an XSKMAP pinned in bpffs (as CNI plugins and xdp-loader leave
// them) for registering sockets into a program someone else manages.
func LoadPinnedMap(path string) (*Program, error) {
	m, err := ebpf.LoadPinnedMap(path, nil)
	if err != nil {
		return nil, fmt.Errorf("xsk: open pinned XSKMAP: %w", err)
	}
	p, err := NewProgramFrom(nil, m)
	if err != nil {
		m.Close()
		return nil, err
	}
	p.owned = true // the map handle is ours; the pinned map itself lives on
	return p, nil
}

// Frags reports whether the program was loaded frags-aware (BPF_F_XDP_HAS_FRAGS).
func (p *Program) Frags() bool { return p.frags }

// Map returns the XSKMAP.
func (p *Program) Map() *ebpf.Map { return p.xsks }

// Attach attaches the program to a device through a bpf_link, which the kernel removes
// when the link's last descriptor closes: with Close, or when the process dies. With
// AttachAuto it tries native mode and falls back to generic; Mode reports the result.
func (p *Program) Attach(ifindex int, mode AttachMode) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.prog == nil {
		return fmt.Errorf("%w: no program to attach", ErrOptions)
	}
	if p.link != nil {
		return fmt.Errorf("%w: program already attached", ErrOptions)
	}
	try := []AttachMode{AttachNative, AttachGeneric}
	switch mode {
	case AttachNative:
		try = try[:1]
	case AttachGeneric:
		try = try[1:]
	case AttachAuto:
	default:
		return fmt.Errorf("%w: AttachMode %d", ErrOptions, mode)
	}
	var errs []error
	for _, m := range try {
		flags := link.XDPDriverMode
		if m == AttachGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
		if err == nil {
			p.link, p.mode = l, m
			return nil
		}
		errs = append(errs, fmt.Errorf("%v: %w", m, err))
	}
	return fmt.Errorf("xsk: attach XDP program to ifindex %d: %w", ifindex, errors.Join(errs...))
}

// Mode returns how the program is attached (AttachNative or AttachGeneric), or
// AttachAuto's "none" value when dpkit did not attach it.
func (p *Program) Mode() AttachMode {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mode
}

// Register directs frames of rx queue queue to s. The kernel drops the entry by itself
// when s closes.
func (p *Program) Register(queue int, s *Socket) error {
	// Under the lock: Close releases the map's descriptor, whose number a new object
	// may take at once.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.xsks.Update(uint32(queue), uint32(s.FD()), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("xsk: XSKMAP[%d] = socket: %w", queue, err)
	}
	return nil
}

// Unregister removes queue's entry; its frames go to the kernel stack again.
func (p *Program) Unregister(queue int) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("xsk: XSKMAP delete %d: %w", queue, err)
	}
	return nil
}

// Close detaches the program if Attach attached it and releases what NewProgram or
// LoadPinnedMap made.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.link != nil {
		errs = append(errs, p.link.Close())
		p.link = nil
	}
	if p.owned {
		if p.prog != nil {
			errs = append(errs, p.prog.Close())
		}
		errs = append(errs, p.xsks.Close())
	}
	return errors.Join(errs...)
}
