package pmd

// Userspace virtio-net driver for modern PCI devices over VFIO (VIRTIO 1.2 §4.1 for
// the transport, §5.1 for the network device, §3.1 for initialisation).
//
//	BindVFIO(bdf) → OpenVirtioNet: caps (common/notify/ISR/device) → BAR mmap →
//	  pool region DMA-mapped at IOVA base B, rings in their own DMA mapping →
//	  reset, ACK, DRIVER, features (VERSION_1, ACCESS_PLATFORM, MAC, STATUS,
//	  MRG_RXBUF, [RING_PACKED], [MQ, CTRL_VQ]) → FEATURES_OK → queues 2i (RX),
//	  2i+1 (TX) for each pair i, [control queue] → DRIVER_OK → RX filled →
//	  [VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET on the control queue, §5.1.6.5.5]
//	RX: frame f given as [B+Addr(f)+headroom-12, frame end) device-writable;
//	    used → Pkt{f, Off: headroom} (virtio_net_hdr sits just before the data);
//	    refill from the pool; kick only when the device asks (notification flags).
//	    A packet over several mergeable buffers (§5.1.6.4) → a chain of Pkts.
//	TX: Pkt's 12 headroom bytes before Off become the zeroed header; one
//	    descriptor per frame (a chain: one per Pkt, NEXT-linked); frames return
//	    to the pool when the device is done.
//	Close: device reset (stops DMA) → ring frames back to the pool → DMA unmap →
//	    VFIO fds closed; UnbindVFIO(bdf) gives the device back to virtio-pci.
//
// Multiqueue: each queue pair is a Port of its own (VirtioNet.Queue), for one poll
// loop per core, as DPDK's per-queue rx/tx bursts. The device spreads received
// flows over the RX queues itself (automatic receive steering, §5.1.6.5.5); RSS with
// a driver-set key and table (VIRTIO_NET_F_RSS) is not used.
//
// Poll mode by default: MSI-X vectors NO_VECTOR, ring interrupts disabled. With
// Interrupts, RX queue i signals MSI-X vector i, which VFIO routes to an eventfd, so an
// idle poll loop can sleep in WaitRx until traffic comes (DPDK's RX interrupt mode).
// Jumbo frames: Rx returns a packet the device spread over several mergeable buffers
// as a chain (PktMore), and Tx sends chains whole (the port is a ChainTxer), so an MTU
// beyond a frame works as on the other ports. Not done yet: offloads (no CSUM/TSO
// features) and RSS.

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/sysmem"
	"github.com/dpkit/dpkit/internal/vfio"
	"github.com/dpkit/dpkit/vring"
)

// Errors of the virtio-net driver, usable with errors.Is.
var (
	ErrVirtioOptions  = errors.New("pmd: invalid virtio-net options")
	ErrNotVirtioNet   = errors.New("pmd: not a modern virtio-net PCI device")
	ErrDeviceNotReady = errors.New("pmd: virtio device did not complete the handshake in time")
	ErrFeatures       = errors.New("pmd: virtio feature negotiation failed")
	ErrDeviceBroken   = errors.New("pmd: virtio device broke a ring rule")
	ErrDeviceGone     = errors.New("pmd: virtio device disappeared")
)

// Virtio feature bits the driver uses (VIRTIO 1.2 §5.1.3, §6).
const (
	virtioNetFGuestCsum = 1 << 1 // not negotiated: no RX checksum offload
	virtioNetFMAC       = 1 << 5
	virtioNetFCtrlVQ    = 1 << 17
	virtioNetFMQ        = 1 << 22
	virtioNetFMrgRxbuf  = 1 << 15
	virtioNetFStatus    = 1 << 16
	virtioFVersion1     = 1 << 32
	virtioFAccessPlat   = 1 << 33
	virtioFRingPacked   = 1 << 34
	virtioNetHdrLen     = 12 // struct virtio_net_hdr with num_buffers (§5.1.6)
	// virtioNetMinRxBuf is the least receive buffer without MRG_RXBUF: the header and
	// a 1514-byte frame (§5.1.6.3.1; no MTU feature is negotiated).
	virtioNetMinRxBuf   = virtioNetHdrLen + 1514
	virtioMSINoVector   = 0xffff
	statusAcknowledge   = 1
	statusDriver        = 2
	statusDriverOK      = 4
	statusFeaturesOK    = 8
	statusNeedsReset    = 64
	statusFailed        = 128
	virtioNetSLinkUp    = 1
	virtioPCIVendor     = 0x1af4
	virtioPCINetModern  = 0x1041
	virtioPCICapCommon  = 1
	virtioPCICapNotify  = 2
	virtioPCICapISR     = 3
	virtioPCICapDevice  = 4
	defaultVirtioQueue  = 256
	defaultVirtioWaitMs = 1000
	ctrlQueueSize       = 64 // commands are sent one at a time
	ctrlClassMQ         = 4  // VIRTIO_NET_CTRL_MQ (§5.1.6.5.5)
	ctrlMQPairsSet      = 0  // VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET
	ctrlAckOK           = 0  // VIRTIO_NET_OK
)

// MaxVirtioQueuePairs is the most queue pairs OpenVirtioNet sets up.
const MaxVirtioQueuePairs = 64

// VirtioNetOptions configure OpenVirtioNet. Zero values are documented per field.
type VirtioNetOptions struct {
	// PCI is the device address ("0000:00:04.0"), already bound to vfio-pci (see
	// BindVFIO). Required.
	PCI string
	// Pool supplies the packet frames; its region is DMA-mapped for the device. Its
	// Headroom must be at least 12 bytes (the virtio-net header goes there). A device
	// that does not offer VIRTIO_NET_F_MRG_RXBUF needs frames whose room after the
	// headroom holds a 1514-byte frame. Required.
	Pool *Pool
	// QueueSize is the ring size; 0 means 256, capped at what the device offers.
	// Split rings need a power of two.
	QueueSize int
	// Packed asks for the packed ring layout; the device must offer it. Zero: split.
	Packed bool
	// QueuePairs is how many RX/TX queue pairs to run; 0 means 1. More than one needs
	// a device offering VIRTIO_NET_F_MQ and CTRL_VQ with at least that many pairs
	// (its max_virtqueue_pairs); they are switched on with a control-queue command.
	QueuePairs int
	// Interrupts routes each RX queue's MSI-X vector to an eventfd, for
	// VirtioNetQueue.WaitRx; the device must have a vector per RX queue. Zero: pure
	// poll mode.
	Interrupts bool
	// PortID is stored in Pkt.Port of received packets.
	PortID uint16
	// Timeout bounds each wait for the device (reset, status handshake); 0 means 1 s.
	Timeout time.Duration
}

// Validate checks the options.
func (o *VirtioNetOptions) Validate() error {
	switch {
	case o.PCI == "":
		return fmt.Errorf("%w: PCI address required", ErrVirtioOptions)
	case vfio.CheckAddress(o.PCI) != nil:
		return fmt.Errorf("%w: PCI %q is not a PCI address (DDDD:BB:DD.F)", ErrVirtioOptions, o.PCI)
	case o.Pool == nil:
		return fmt.Errorf("%w: Pool required", ErrVirtioOptions)
	case o.Pool.Headroom() < virtioNetHdrLen:
		return fmt.Errorf("%w: pool headroom %d < %d", ErrVirtioOptions, o.Pool.Headroom(), virtioNetHdrLen)
	case o.QueueSize < 0 || o.QueueSize > vring.MaxQueueSize:
		return fmt.Errorf("%w: QueueSize %d", ErrVirtioOptions, o.QueueSize)
	case !o.Packed && o.QueueSize&(o.QueueSize-1) != 0:
		return fmt.Errorf("%w: split QueueSize %d is not a power of two", ErrVirtioOptions, o.QueueSize)
	case o.Timeout < 0:
		return fmt.Errorf("%w: negative Timeout", ErrVirtioOptions)
	case o.QueuePairs < 0 || o.QueuePairs > MaxVirtioQueuePairs:
		return fmt.Errorf("%w: QueuePairs %d not in 0..%d", ErrVirtioOptions, o.QueuePairs, MaxVirtioQueuePairs)
	}
	return nil
}

// virtQueue is the driver's half of one virtqueue: split or packed.
type virtQueue interface {
	Add(segs []vring.Seg) (uint16, error)
	AddBatch(bufs []vring.Seg, ids []uint16) (int, error)
	Publish() (kick bool)
	Collect(dst []vring.Used) (int, error)
	EnableInterrupts() (pending bool)
	DisableInterrupts()
	InFlight() int
	Free() int
	Err() error
}

// vnQueue is one RX or TX queue with the frame behind each buffer id.
type vnQueue struct {
	q         virtQueue
	index     uint16
	notifyOff int       // offset of this queue's notify register in the notify window
	frames    []Frame   // frame behind each in-flight id
	more      [][]Frame // TX: the other frames of a chain, by id
	chains    int       // TX: chains in flight (ids with frames in more)
	live      []bool    // ids in flight (to take frames back after a reset)
	used      []vring.Used
	segs      []vring.Seg
	ids       []uint16
	fbuf      []Frame
	size      int
}

// VirtioNetQueue is one RX/TX queue pair of a VirtioNet, a Port of its own. Rx and Tx
// may run on two goroutines (one each), and each queue pair on its own.
type VirtioNetQueue struct {
	v      *VirtioNet
	rx, tx vnQueue
	rxSkip int   // buffers of a dropped mergeable packet still to come
	rxPend []Pkt // first buffers of a mergeable packet whose rest has not come
	rxNeed int   // how many buffers of that packet are still to come
	// err is the sticky error of a broken ring. Either side may set it while the
	// other polls, and Check reads it from a third goroutine: hence atomic.
	err      atomic.Pointer[error]
	counters Counters
	irqFd    int // eventfd of the RX queue's MSI-X vector (Interrupts), else -1
}

// VirtioNet drives one virtio-net PCI device through VFIO. It is itself the Port of
// queue pair 0; Queue(i) gives each pair. Rx and Tx may run on two goroutines (one
// each); Stats on any; Close, Reset and the control methods only when the datapath is
// stopped.
type VirtioNet struct {
	opts      VirtioNetOptions
	pci       *vfio.PCI
	bus       vnBus // pci, as teardown uses it
	common    vfio.MMIO
	notify    vfio.MMIO
	device    vfio.MMIO
	notifyMul uint32
	features  uint64
	poolIOVA  uint64
	poolMem   []byte
	rings     *sysmem.Mapping
	ringIOVA  uint64
	mem       *vring.Memory
	qps       []*VirtioNetQueue
	ctrl      vnQueue // the control queue, when CTRL_VQ is negotiated
	ctrlBuf   []byte  // command and ack bytes, in the ring mapping
	ctrlIOVA  uint64
	err       error // control-path failure (the control queue broke)
	closed    bool
}

// openVFIO opens the VFIO device (a seam for tests: vfio.NewFilePCI).
var openVFIO = vfio.Open

// OpenVirtioNet opens the device, negotiates features, sets up one RX and one TX
// queue, maps the pool for DMA, fills the RX ring and sets DRIVER_OK.
func OpenVirtioNet(opts VirtioNetOptions) (*VirtioNet, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if opts.QueueSize == 0 {
		opts.QueueSize = defaultVirtioQueue
	}
	if opts.Timeout == 0 {
		opts.Timeout = defaultVirtioWaitMs * time.Millisecond
	}
	opts.QueuePairs = max(opts.QueuePairs, 1)
	p, err := openVFIO(opts.PCI)
	if err != nil {
		return nil, fmt.Errorf("pmd: virtio-net %s: %w", opts.PCI, err)
	}
	v := &VirtioNet{opts: opts, pci: p, bus: pciBus{p}}
	for range opts.QueuePairs {
		v.qps = append(v.qps, &VirtioNetQueue{v: v, irqFd: -1})
	}
	if err := v.open(); err != nil {
		// init may have failed after DRIVER_OK and the RX fill (the MQ command):
		// stop the device's DMA and take its frames back.
		var rerr error
		if v.common != nil {
			rerr = v.reset()
		}
		v.release(rerr)
		return nil, fmt.Errorf("pmd: virtio-net %s: %w", opts.PCI, err)
	}
	return v, nil
}

func (v *VirtioNet) open() error {
	cfg, err := v.pci.Config(256)
	if err != nil {
		return err
	}
	if len(cfg) < 64 { // the region's size comes from the VFIO driver
		return fmt.Errorf("%w: config space of %d bytes", ErrNotVirtioNet, len(cfg))
	}
	if le16(cfg[0:]) != virtioPCIVendor || le16(cfg[2:]) != virtioPCINetModern {
		return fmt.Errorf("%w: ID %04x:%04x", ErrNotVirtioNet, le16(cfg[0:]), le16(cfg[2:]))
	}
	caps, err := parseVirtioCaps(cfg)
	if err != nil {
		return err
	}
	bars := map[int]vfio.MMIO{}
	window := func(c virtioCap) (vfio.MMIO, error) {
		m, ok := bars[int(c.bar)]
		if !ok {
			b, err := v.pci.MapRegion(int(c.bar))
			if err != nil {
				return nil, err
			}
			m = vfio.MMIO(b)
			bars[int(c.bar)] = m
		}
		w, err := capWindow(m, c)
		if err == nil && !v.pci.Regions[c.bar].Mappable(uint64(c.offset), uint64(c.length)) {
			// The kernel maps only parts of this BAR (sparse mmap around an MSI-X
			// table): the rest of the slice is not mapped and must not be touched.
			return nil, fmt.Errorf("%w: capability type %d [%#x+%#x) of BAR %d is outside the parts the kernel lets be mmapped",
				ErrNotVirtioNet, c.typ, c.offset, c.length, c.bar)
		}
		return w, err
	}
	// The windows become the driver's only once all are checked: OpenVirtioNet's
	// error path resets the device through v.common, which must hold the registers.
	common, err := window(caps.common)
	if err != nil {
		return err
	}
	notify, err := window(caps.notify)
	if err != nil {
		return err
	}
	device, err := window(caps.device)
	if err != nil {
		return err
	}
	if len(common) < 0x38 || len(device) < 8 {
		return fmt.Errorf("%w: common or device config window too small", ErrNotVirtioNet)
	}
	v.common, v.notify, v.device = common, notify, device
	v.notifyMul = caps.notifyMul
	if err := v.pci.SetBusMaster(true); err != nil {
		return err
	}
	if v.opts.Interrupts {
		if err := v.setupIRQs(); err != nil {
			return err
		}
	}

	// DMA: the pool region at one IOVA, the rings at another.
	pr := v.opts.Pool.Region()
	v.poolMem = pr[:roundUpInt(len(pr), 4096)]
	if v.poolIOVA, err = v.pci.Container.MapDMA(v.poolMem); err != nil {
		return err
	}
	if v.mem, err = vring.NewMemory(vring.Region{Addr: v.poolIOVA, Host: v.poolMem}); err != nil {
		return err
	}
	return v.init()
}

// setupIRQs makes an eventfd per RX queue and routes MSI-X vectors 0..n-1 to them
// (VFIO enables MSI-X on the device); setupRings points the RX queues at them.
func (v *VirtioNet) setupIRQs() error {
	n, err := v.pci.IRQCount(vfio.IRQMSIX)
	if err != nil {
		return err
	}
	if n < len(v.qps) {
		return fmt.Errorf("%w: %d MSI-X vectors for %d RX queues", ErrFeatures, n, len(v.qps))
	}
	fds := make([]int, len(v.qps))
	for i, qp := range v.qps {
		fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err != nil {
			return os.NewSyscallError("eventfd", err)
		}
		qp.irqFd, fds[i] = fd, fd
	}
	return v.pci.SetIRQs(vfio.IRQMSIX, 0, fds)
}

// init runs the §3.1.1 sequence: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK,
// queues, DRIVER_OK; then fills the RX ring.
func (v *VirtioNet) init() error {
	// Until the queues are set up again, each pair is on rings whose frames a reset
	// took back (Reset) or has none (open), and which the device can still write:
	// Rx and Tx must not run on them, and Err must say so if init fails.
	down := fmt.Errorf("%w: queue pair not set up (the device's initialisation failed)", ErrDeviceBroken)
	for _, qp := range v.qps {
		qp.err.Store(&down)
	}
	if err := v.reset(); err != nil {
		return err
	}
	v.setStatus(statusAcknowledge)
	v.setStatus(statusAcknowledge | statusDriver)
	v.common.Write32(0x00, 0)
	offered := uint64(v.common.Read32(0x04))
	v.common.Write32(0x00, 1)
	offered |= uint64(v.common.Read32(0x04)) << 32
	want := uint64(virtioFVersion1 | virtioFAccessPlat | virtioNetFMAC | virtioNetFStatus | virtioNetFMrgRxbuf)
	if v.opts.Packed {
		want |= virtioFRingPacked
	}
	mq := v.opts.QueuePairs > 1
	if mq {
		want |= virtioNetFMQ | virtioNetFCtrlVQ
	}
	feat := offered & want
	switch {
	case feat&virtioFVersion1 == 0:
		return v.fail(fmt.Errorf("%w: device does not offer VIRTIO_F_VERSION_1", ErrFeatures))
	case feat&virtioFAccessPlat == 0:
		// Without it the device takes ring and buffer addresses as physical ones,
		// not translated by the IOMMU (§6.1; QEMU without iommu_platform=on bypasses
		// a vIOMMU), but they are IOVAs: it would DMA into unrelated memory.
		return v.fail(fmt.Errorf("%w: device does not offer VIRTIO_F_ACCESS_PLATFORM (its DMA would bypass the IOMMU)", ErrFeatures))
	case v.opts.Packed && feat&virtioFRingPacked == 0:
		return v.fail(fmt.Errorf("%w: packed ring asked for but not offered", ErrFeatures))
	case mq && feat&(virtioNetFMQ|virtioNetFCtrlVQ) != virtioNetFMQ|virtioNetFCtrlVQ:
		return v.fail(fmt.Errorf("%w: %d queue pairs need VIRTIO_NET_F_MQ and CTRL_VQ, offered %#x", ErrFeatures, v.opts.QueuePairs, offered))
	case feat&virtioNetFMrgRxbuf == 0 && v.rxRoom() < virtioNetMinRxBuf:
		// Without mergeable buffers each receive buffer must hold a whole packet
		// (§5.1.6.3.1); a device with a longer one has nowhere to put it (QEMU marks
		// itself broken).
		return v.fail(fmt.Errorf("%w: device does not offer VIRTIO_NET_F_MRG_RXBUF, and a pool frame holds a %d-byte receive buffer, below the %d bytes a whole packet needs",
			ErrFeatures, v.rxRoom(), virtioNetMinRxBuf))
	}
	// ACCESS_PLATFORM is required and accepted (§6.1): the device then uses the
	// IOMMU, which is what VFIO programs.
	v.features = feat
	v.common.Write32(0x08, 0)
	v.common.Write32(0x0c, uint32(feat))
	v.common.Write32(0x08, 1)
	v.common.Write32(0x0c, uint32(feat>>32))
	v.setStatus(statusAcknowledge | statusDriver | statusFeaturesOK)
	if s := v.common.Read8(0x14); s == 0xff {
		return ErrDeviceGone
	} else if s&statusFeaturesOK == 0 {
		return v.fail(fmt.Errorf("%w: device refused features %#x", ErrFeatures, feat))
	}
	if err := v.setupRings(); err != nil {
		return v.fail(err)
	}
	v.setStatus(statusAcknowledge | statusDriver | statusFeaturesOK | statusDriverOK)
	if s := v.common.Read8(0x14); s == 0xff {
		return ErrDeviceGone
	} else if s&(statusNeedsReset|statusFailed) != 0 {
		return fmt.Errorf("%w: status %#x after DRIVER_OK", ErrDeviceBroken, s)
	}
	for _, q := range v.qps {
		q.err.Store(nil)
		q.refill()
	}
	if mq {
		// §5.1.6.5.5: the queues are set up and filled; now switch them on.
		var n [2]byte
		n[0], n[1] = byte(v.opts.QueuePairs), byte(v.opts.QueuePairs>>8)
		if err := v.command(ctrlClassMQ, ctrlMQPairsSet, n[:]); err != nil {
			return err
		}
	}
	return nil
}

// maxPairs reads max_virtqueue_pairs from the device configuration (§5.1.4); it
// exists with VIRTIO_NET_F_MQ. It is 0 when the device's configuration window is too
// short to hold it (and setupRings then refuses the device).
func (v *VirtioNet) maxPairs() int {
	if v.features&virtioNetFMQ == 0 {
		return 1
	}
	if len(v.device) < 10 { // a device config window too short for the field
		return 0
	}
	return int(v.device.Read16(8))
}

// command sends one control-queue command (§5.1.6.5: class, command, data readable
// by the device, then one ack byte it writes) and waits for the device's answer.
func (v *VirtioNet) command(class, cmd byte, data []byte) error {
	q := &v.ctrl
	if q.q == nil {
		return fmt.Errorf("%w: no control queue", ErrFeatures)
	}
	b := v.ctrlBuf
	b[0], b[1] = class, cmd
	copy(b[2:], data)
	ack := 64 // the ack byte sits apart from the command
	b[ack] = 0xff
	segs := []vring.Seg{{Addr: v.ctrlIOVA, Len: uint32(2 + len(data))}, {Addr: v.ctrlIOVA + uint64(ack), Len: 1, Write: true}}
	if _, err := q.q.Add(segs); err != nil {
		v.err = fmt.Errorf("%w: control queue: %w", ErrDeviceBroken, err)
		return v.err
	}
	if q.q.Publish() {
		v.notify.Write16(q.notifyOff, q.index)
	}
	deadline := time.Now().Add(v.opts.Timeout)
	for {
		n, err := q.q.Collect(q.used[:1])
		if err != nil {
			v.err = fmt.Errorf("%w: control queue: %w", ErrDeviceBroken, err)
			return v.err
		}
		if n == 1 {
			break
		}
		if s := v.common.Read8(0x14); s == 0xff {
			return ErrDeviceGone
		}
		if time.Now().After(deadline) {
			v.err = fmt.Errorf("%w: control command %d/%d not answered", ErrDeviceNotReady, class, cmd)
			return v.err
		}
		time.Sleep(100 * time.Microsecond)
	}
	if b[ack] != ctrlAckOK {
		v.err = fmt.Errorf("%w: device refused control command %d/%d (ack %d)", ErrFeatures, class, cmd, b[ack])
		return v.err
	}
	return nil
}

func (v *VirtioNet) fail(err error) error {
	v.setStatus(v.common.Read8(0x14) | statusFailed)
	return err
}

func (v *VirtioNet) setStatus(s uint8) { v.common.Write8(0x14, s) }

// reset writes 0 to device_status and waits until the device reads back 0 (§4.1.4.3.2).
func (v *VirtioNet) reset() error {
	v.common.Write8(0x14, 0)
	deadline := time.Now().Add(v.opts.Timeout)
	for {
		s := v.common.Read8(0x14)
		if s == 0 {
			return nil
		}
		if s == 0xff && v.common.Read32(0) == 0xffffffff {
			return ErrDeviceGone
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: reset (status %#x)", ErrDeviceNotReady, s)
		}
		time.Sleep(time.Millisecond)
	}
}

// setupRings creates and registers every queue: RX 2i and TX 2i+1 for each pair
// (§5.1.2), and the control queue (index 2×max_virtqueue_pairs with MQ) when
// CTRL_VQ was negotiated. Each queue's rings get their own pages of one DMA mapping,
// whose last page holds the control command buffer.
func (v *VirtioNet) setupRings() error {
	pairs := v.opts.QueuePairs
	if mp := v.maxPairs(); pairs > mp {
		return fmt.Errorf("%w: %d queue pairs asked for, the device has %d", ErrFeatures, pairs, mp)
	}
	numQueues := int(v.common.Read16(0x12))
	size := v.opts.QueueSize
	for qi := 0; qi < 2*pairs; qi++ {
		if qi >= numQueues {
			return fmt.Errorf("%w: queue %d of %d not available", ErrNotVirtioNet, qi, numQueues)
		}
		v.common.Write16(0x16, uint16(qi))
		max := int(v.common.Read16(0x18))
		if max == 0 {
			return fmt.Errorf("%w: queue %d not available", ErrNotVirtioNet, qi)
		}
		size = min(size, max)
	}
	ctrlIndex, ctrlSize := -1, 0
	if v.features&virtioNetFCtrlVQ != 0 {
		ctrlIndex = 2
		if v.features&virtioNetFMQ != 0 {
			ctrlIndex = 2 * v.maxPairs()
		}
		if ctrlIndex >= numQueues {
			return fmt.Errorf("%w: control queue %d of %d not available", ErrNotVirtioNet, ctrlIndex, numQueues)
		}
		v.common.Write16(0x16, uint16(ctrlIndex))
		ctrlSize = min(ctrlQueueSize, int(v.common.Read16(0x18)))
		for ctrlSize&(ctrlSize-1) != 0 { // a power of two for split rings
			ctrlSize &= ctrlSize - 1
		}
		if ctrlSize < 2 {
			return fmt.Errorf("%w: control queue too small", ErrNotVirtioNet)
		}
	}
	if !v.opts.Packed {
		for size&(size-1) != 0 { // a device maximum that is not a power of two
			size &= size - 1
		}
	}
	packed := v.features&virtioFRingPacked != 0
	layout := func(n int) (d, a, u, per int) {
		d, a, u = vring.SplitSizes(n)
		if packed {
			d, a = vring.PackedSizes(n)
			u = a
		}
		return d, a, u, roundUpInt(d, 4096) + roundUpInt(a, 4096) + roundUpInt(u, 4096)
	}
	nq := 2*pairs + min(ctrlSize, 1)
	var per, total int
	for {
		_, _, _, per = layout(size)
		if ctrlSize > 0 {
			_, _, _, cper := layout(ctrlSize)
			per = max(per, cper)
		}
		total = nq*per + 4096
		// The ring memory is mapped once, at open, for the sizes the device offered
		// then. One that offers larger queues after a Reset gets the largest that
		// fit that memory: a driver may use a queue smaller than the device's
		// maximum (§4.1.4.3, queue_size). Halving keeps a split size a power of two.
		if v.rings == nil || total <= len(v.rings.Mem) || size == 1 {
			break
		}
		size /= 2
	}
	if v.rings == nil {
		m, _, err := sysmem.Map(sysmem.Options{Size: total, Huge: -1})
		if err != nil {
			return err
		}
		v.rings = m
		if v.ringIOVA, err = v.pci.Container.MapDMA(m.Mem[:roundUpInt(total, 4096)]); err != nil {
			return err
		}
	}
	if total > len(v.rings.Mem) {
		// Only a layout the first init did not have (more queues) gets here.
		return fmt.Errorf("%w: rings need %d bytes, %d were mapped at open", ErrDeviceBroken, total, len(v.rings.Mem))
	}
	clear(v.rings.Mem)
	v.ctrlBuf = v.rings.Mem[nq*per:][:4096]
	v.ctrlIOVA = v.ringIOVA + uint64(nq*per)
	o := vring.Options{Features: v.features & (vring.FeatureVersion1 | vring.FeatureAccessPlatform | vring.FeatureRingPacked)}
	setup := func(q *vnQueue, index, slot, size int, vector uint16) error {
		d, a, u, _ := layout(size)
		base := slot * per
		dOff, aOff, uOff := base, base+roundUpInt(d, 4096), base+roundUpInt(d, 4096)+roundUpInt(a, 4096)
		mem := v.rings.Mem
		o.Size = size
		var err error
		var vq virtQueue
		if packed {
			vq, err = vring.NewPackedDriver(vring.PackedRing{Desc: mem[dOff:][:d], DriverEvent: mem[aOff:][:a], DeviceEvent: mem[uOff:][:u]}, v.mem, o)
		} else {
			vq, err = vring.NewSplitDriver(vring.SplitRing{Desc: mem[dOff:][:d], Avail: mem[aOff:][:a], Used: mem[uOff:][:u]}, v.mem, o)
		}
		if err != nil {
			return err
		}
		vq.DisableInterrupts() // poll mode until WaitRx
		// fbuf: a burst's frames to free, and a mergeable packet's held over from
		// the last Rx; more: the frames after the first of each chain sent.
		*q = vnQueue{q: vq, index: uint16(index), size: size,
			frames: make([]Frame, size), live: make([]bool, size), used: make([]vring.Used, size),
			segs: make([]vring.Seg, size), ids: make([]uint16, size), fbuf: make([]Frame, size+MaxBurst),
			more: make([][]Frame, size)}
		c := v.common
		c.Write16(0x16, uint16(index))
		c.Write16(0x18, uint16(size))
		c.Write16(0x1a, vector)
		if got := c.Read16(0x1a); got != vector { // §4.1.4.3: NO_VECTOR when it could not map it
			return fmt.Errorf("%w: queue %d refused MSI-X vector %d", ErrFeatures, index, vector)
		}
		c.Write64(0x20, v.ringIOVA+uint64(dOff))
		c.Write64(0x28, v.ringIOVA+uint64(aOff))
		c.Write64(0x30, v.ringIOVA+uint64(uOff))
		off := uint64(c.Read16(0x1e)) * uint64(v.notifyMul)
		if off+2 > uint64(len(v.notify)) {
			return fmt.Errorf("%w: notify offset %#x outside the notify window", ErrNotVirtioNet, off)
		}
		if off&1 != 0 {
			// The multiplier must be an even power of 2 or 0 (§4.1.4.4); an odd
			// offset would make every kick an unaligned 16-bit MMIO write.
			return fmt.Errorf("%w: notify offset %#x (multiplier %d) not 16-bit aligned", ErrNotVirtioNet, off, v.notifyMul)
		}
		q.notifyOff = int(off)
		c.Write16(0x1c, 1)
		return nil
	}
	for i, qp := range v.qps {
		qp.rxSkip, qp.rxNeed = 0, 0
		if qp.rxPend == nil {
			qp.rxPend = make([]Pkt, 0, MaxBurst)
		}
		vec := uint16(virtioMSINoVector)
		if qp.irqFd >= 0 {
			vec = uint16(i)
		}
		if err := setup(&qp.rx, 2*i, 2*i, size, vec); err != nil {
			return err
		}
		if err := setup(&qp.tx, 2*i+1, 2*i+1, size, virtioMSINoVector); err != nil {
			return err
		}
	}
	v.ctrl = vnQueue{}
	if ctrlSize > 0 {
		return setup(&v.ctrl, ctrlIndex, 2*pairs, ctrlSize, virtioMSINoVector)
	}
	return nil
}

// rxRoom is the length of the receive buffer in a pool frame: the header in the
// headroom's last bytes, then the frame's room.
func (v *VirtioNet) rxRoom() int {
	pool := v.opts.Pool
	return pool.FrameSize() - pool.Headroom() + virtioNetHdrLen
}

// refill gives the device as many empty frames as the RX ring takes.
func (qp *VirtioNetQueue) refill() {
	q := &qp.rx
	free := q.size - q.q.InFlight()
	if free <= 0 {
		return
	}
	v := qp.v
	pool := v.opts.Pool
	n := pool.Get(q.fbuf[:free])
	hr, room := pool.Headroom(), uint32(v.rxRoom())
	for i, f := range q.fbuf[:n] {
		q.segs[i] = vring.Seg{Addr: v.poolIOVA + pool.Addr(f) + uint64(hr-virtioNetHdrLen), Len: room, Write: true}
	}
	k, err := q.q.AddBatch(q.segs[:n], q.ids[:n])
	for i := 0; i < k; i++ {
		q.frames[q.ids[i]] = q.fbuf[i]
		q.live[q.ids[i]] = true
	}
	if k < n {
		pool.Put(q.fbuf[k:n])
	}
	if err != nil {
		qp.broken(err)
	}
	if k > 0 && q.q.Publish() {
		v.notify.Write16(q.notifyOff, q.index)
	}
}

func (qp *VirtioNetQueue) broken(err error) {
	if qp.err.Load() == nil {
		e := fmt.Errorf("%w: %w", ErrDeviceBroken, err)
		qp.err.CompareAndSwap(nil, &e) // the first error stays
	}
}

// Err returns the sticky error that stopped this queue pair (ErrDeviceBroken
// wrapping the ring's error), or nil. A successful VirtioNet.Reset clears it.
func (qp *VirtioNetQueue) Err() error {
	if e := qp.err.Load(); e != nil {
		return *e
	}
	return nil
}

// Err returns the first sticky error of a queue pair or of the control queue, or nil.
// Reset clears them.
func (v *VirtioNet) Err() error {
	for _, qp := range v.qps {
		if err := qp.Err(); err != nil {
			return err
		}
	}
	return v.err
}

// QueuePairs returns how many queue pairs run.
func (v *VirtioNet) QueuePairs() int { return len(v.qps) }

// Queue returns queue pair i (0 ≤ i < QueuePairs) as a Port.
func (v *VirtioNet) Queue(i int) *VirtioNetQueue { return v.qps[i] }

// Rx receives on queue pair 0; see VirtioNetQueue.Rx.
func (v *VirtioNet) Rx(pkts []Pkt) int { return v.qps[0].Rx(pkts) }

// Tx sends on queue pair 0; see VirtioNetQueue.Tx.
func (v *VirtioNet) Tx(pkts []Pkt) int { return v.qps[0].Tx(pkts) }

// Rx receives up to len(pkts) packets into pool frames (zero copy: the device wrote
// them there) and refills the ring. The caller owns the returned frames. A packet the
// device spread over several mergeable buffers (VIRTIO 1.2 §5.1.6.4) comes as a chain:
// one Pkt per buffer, PktMore on all but the last, the checksum flags on the first.
// Chains are returned whole: when the rest of a packet has not come yet, its first
// buffers wait in the queue for the next call. A packet of more buffers than len(pkts)
// or MaxBurst is dropped as DropTooLong.
func (qp *VirtioNetQueue) Rx(pkts []Pkt) int {
	v := qp.v
	// No room (a full Batch polls with none) is no reason to drop a pending chain.
	if qp.err.Load() != nil || v.closed || len(pkts) == 0 {
		return 0
	}
	q := &qp.rx
	pool := v.opts.Pool
	hr := pool.Headroom()
	var t rxTally
	t.room = uint32(v.rxRoom())
	out := 0
	// The first buffers of a packet the last call could not finish go first.
	if len(qp.rxPend) > 0 {
		if len(qp.rxPend)+qp.rxNeed > len(pkts) {
			// This caller's bursts cannot carry it: drop it.
			for _, p := range qp.rxPend {
				q.fbuf[t.nf] = p.Frame
				t.nf++
			}
			qp.rxSkip, qp.rxNeed = qp.rxNeed, 0
			t.long++
		} else {
			out = copy(pkts, qp.rxPend)
		}
		qp.rxPend = qp.rxPend[:0]
	}
	// Each used buffer becomes at most one Pkt, so collecting no more than the room
	// left keeps every packet of this call in pkts.
	n, err := q.q.Collect(q.used[:min(len(pkts)-out, len(q.used))])
	used := q.used[:n]
	if qp.rxSkip == 0 && qp.rxNeed == 0 {
		// The common case: packets of one buffer each, up to the first of several.
		i := 0
		for ; i < len(used); i++ {
			u := used[i]
			if u.Len < virtioNetHdrLen || u.Len > t.room {
				break
			}
			f := q.frames[u.ID]
			hdr := pool.Bytes(f)[hr-virtioNetHdrLen:][:virtioNetHdrLen]
			if (hdr[10] != 1 || hdr[11] != 0) && v.features&virtioNetFMrgRxbuf != 0 { // num_buffers
				break
			}
			q.live[u.ID] = false
			pkts[out] = Pkt{Frame: f, Off: uint16(hr), Len: uint16(u.Len - virtioNetHdrLen), Port: v.opts.PortID, Flags: v.csumFlags(hdr)}
			t.bytes += int(u.Len - virtioNetHdrLen)
			out++
		}
		t.npk = out
		used = used[i:]
	}
	if len(used) > 0 || qp.rxNeed > 0 {
		out = qp.rxMerge(pkts, out, used, &t)
	}
	if t.nf > 0 {
		pool.Put(q.fbuf[:t.nf])
		qp.counters.AddDrop(DropInvalid, t.drops)
		qp.counters.AddDrop(DropTooLong, t.long)
	}
	qp.counters.AddRx(t.npk, t.bytes)
	if err != nil {
		qp.broken(err)
		return out
	}
	qp.refill()
	return out
}

// csumFlags turns a received virtio-net header's flags (NEEDS_CSUM, DATA_VALID) into
// Pkt flags. Only a device that negotiated VIRTIO_NET_F_GUEST_CSUM may set them
// (§5.1.6.3.2, §5.1.6.4); the driver does not ask for it, so without it the flags are
// ignored: a device's word (or a stale header in the frame's headroom) must not make a
// consumer skip checking a checksum.
func (v *VirtioNet) csumFlags(hdr []byte) PktFlags {
	if v.features&virtioNetFGuestCsum == 0 {
		return 0
	}
	if hdr[0]&1 != 0 {
		return PktCsumPartial
	} else if hdr[0]&2 != 0 {
		return PktCsumValid
	}
	return 0
}

// rxTally is what one Rx call counts: packets and bytes received, frames to free
// (q.fbuf[:nf]) and drops; room is a buffer's size.
type rxTally struct {
	npk, bytes, nf, drops, long int
	room                        uint32
}

// rxMerge is Rx for the used buffers that are not single-buffer packets, and all after
// them: mergeable packets (§5.1.6.4) become chains, the rest of one being dropped is
// freed, and broken ones are dropped. pkts[:out] are done, but when rxNeed is set
// they are the first buffers of an unfinished packet. It returns the new out; an
// unfinished packet's buffers at its end move to rxPend.
func (qp *VirtioNetQueue) rxMerge(pkts []Pkt, out int, used []vring.Used, t *rxTally) int {
	v, q, pool := qp.v, &qp.rx, qp.v.opts.Pool
	hr := pool.Headroom()
	need, start, chainBytes := qp.rxNeed, 0, 0 // the packet at pkts[start:out], need buffers short
	if need > 0 {
		for _, p := range pkts[:out] {
			chainBytes += int(p.Len)
		}
	}
	for _, u := range used {
		f := q.frames[u.ID]
		q.live[u.ID] = false
		switch {
		case qp.rxSkip > 0: // the rest of a packet being dropped
			qp.rxSkip--
			q.fbuf[t.nf] = f
			t.nf++
			continue
		case need > 0: // the next buffer of a packet
			if u.Len == 0 || u.Len > t.room {
				// The device broke §5.1.6.4's rules for this packet: drop what came.
				for _, p := range pkts[start:out] {
					q.fbuf[t.nf] = p.Frame
					t.nf++
				}
				q.fbuf[t.nf] = f
				t.nf++
				qp.rxSkip, need, out = need-1, 0, start
				t.drops++
				continue
			}
			pkts[out] = Pkt{Frame: f, Off: uint16(hr - virtioNetHdrLen), Len: uint16(u.Len), Port: v.opts.PortID, Flags: PktMore}
			out++
			chainBytes += int(u.Len)
			if need--; need == 0 {
				pkts[out-1].Flags = 0
				t.npk++
				t.bytes += chainBytes
			}
			continue
		}
		if u.Len < virtioNetHdrLen || u.Len > t.room {
			q.fbuf[t.nf] = f
			t.nf++
			t.drops++
			continue
		}
		hdr := pool.Bytes(f)[hr-virtioNetHdrLen:][:virtioNetHdrLen]
		nb := 1
		if v.features&virtioNetFMrgRxbuf != 0 {
			// Without MRG_RXBUF a buffer is a whole packet (§5.1.6.3.1) and
			// num_buffers means nothing: a device may leave the stale bytes there.
			nb = int(le16(hdr[10:]))
		}
		if nb > q.size {
			// The device holds at most the ring's buffers at once: no packet
			// spans more. A lie, not a long packet: drop this buffer alone rather
			// than skip that many buffers behind it.
			q.fbuf[t.nf] = f
			t.nf++
			t.drops++
			continue
		}
		if nb > len(pkts) || nb > MaxBurst {
			// More buffers than a burst carries: drop them all.
			qp.rxSkip = nb - 1
			q.fbuf[t.nf] = f
			t.nf++
			t.long++
			continue
		}
		start = out
		pkts[out] = Pkt{Frame: f, Off: uint16(hr), Len: uint16(u.Len - virtioNetHdrLen), Port: v.opts.PortID, Flags: v.csumFlags(hdr)}
		out++
		if nb > 1 {
			pkts[out-1].Flags |= PktMore
			need, chainBytes = nb-1, int(u.Len-virtioNetHdrLen)
			continue
		}
		t.npk++
		t.bytes += int(u.Len - virtioNetHdrLen)
	}
	if need > 0 {
		// A packet whose last buffers have not come: keep it for the next call.
		qp.rxPend = append(qp.rxPend, pkts[start:out]...)
		out = start
	}
	qp.rxNeed = need
	return out
}

// Tx queues pkts for sending without copying: each frame gets the virtio-net header
// in its headroom and goes to the device as one descriptor; a chain (PktMore on all
// but its last Pkt) goes as one packet of a descriptor per frame, the header in the
// first frame's headroom. It returns how many Pkts were taken (chains whole); their
// frames go back to the pool once the device is done with them. A chain that can
// never be sent (see txChain) is taken and dropped.
func (qp *VirtioNetQueue) Tx(pkts []Pkt) int {
	v := qp.v
	if qp.err.Load() != nil || v.closed {
		return 0
	}
	q := &qp.tx
	qp.reclaimTx()
	if qp.err.Load() != nil {
		return 0
	}
	pool := v.opts.Pool
	taken, sent, bytes := 0, 0, 0
	for taken < len(pkts) {
		// A run of one-frame packets, added as a batch.
		batch := pkts[taken:min(len(pkts), taken+q.q.Free())]
		k := 0
		for ; k < len(batch); k++ {
			p := &batch[k]
			if p.Flags&PktMore != 0 || p.Len == 0 || p.Off < virtioNetHdrLen || int(p.Off)+int(p.Len) > pool.FrameSize() {
				break
			}
			hdr := pool.Bytes(p.Frame)[p.Off-virtioNetHdrLen:][:virtioNetHdrLen]
			clear(hdr)
			q.segs[k] = vring.Seg{Addr: v.poolIOVA + pool.Addr(p.Frame) + uint64(p.Off-virtioNetHdrLen), Len: uint32(p.Len) + virtioNetHdrLen}
		}
		added, err := q.q.AddBatch(q.segs[:k], q.ids[:k])
		for i, p := range batch[:added] {
			q.frames[q.ids[i]] = p.Frame // more[id] is empty: reclaim emptied it
			q.live[q.ids[i]] = true
			bytes += int(p.Len)
		}
		taken += added
		sent += added
		if err != nil {
			qp.broken(err)
			break
		}
		if added < k || taken == len(pkts) {
			break // the ring is full, or all went
		}
		// A chain, or a one-frame packet the batch stopped at (empty, no headroom for
		// the header, or past its frame): txChain sends the first and drops the second,
		// counted, so that it does not block the packets behind it. It also stops
		// when the ring is full.
		c, ok := qp.txChain(pkts[taken:])
		if c == 0 {
			break
		}
		if ok {
			for _, p := range pkts[taken : taken+c] {
				bytes += int(p.Len)
			}
			sent++
		}
		taken += c
	}
	if sent > 0 && q.q.Publish() {
		v.notify.Write16(q.notifyOff, q.index)
	}
	qp.counters.AddTx(sent, bytes)
	return taken
}

// txChain adds the chain at the start of pkts as one packet and returns its length in
// Pkts and whether it went out. It returns 0 for a chain that does not end within pkts
// or does not fit the free descriptors now (both stay the caller's). A chain that can
// never go (more frames than MaxBurst or the ring has descriptors, a frame outside its
// bounds, an empty one) is dropped, its frames freed and counted.
func (qp *VirtioNetQueue) txChain(pkts []Pkt) (int, bool) {
	v, q, pool := qp.v, &qp.tx, qp.v.opts.Pool
	c := 0
	for c < len(pkts) {
		c++
		if pkts[c-1].Flags&PktMore == 0 {
			break
		}
	}
	if pkts[c-1].Flags&PktMore != 0 {
		return 0, false // unfinished
	}
	drop := func(why DropReason) (int, bool) {
		for _, p := range pkts[:c] {
			q.fbuf[0] = p.Frame
			pool.Put(q.fbuf[:1])
		}
		qp.counters.AddDrop(why, 1)
		return c, false
	}
	if c > MaxBurst || c > q.size {
		return drop(DropTooLong)
	}
	for i, p := range pkts[:c] {
		if p.Len == 0 || int(p.Off)+int(p.Len) > pool.FrameSize() || (i == 0 && p.Off < virtioNetHdrLen) {
			return drop(DropInvalid)
		}
	}
	if c > q.q.Free() {
		return 0, false
	}
	for i, p := range pkts[:c] {
		addr := v.poolIOVA + pool.Addr(p.Frame) + uint64(p.Off)
		ln := uint32(p.Len)
		if i == 0 {
			clear(pool.Bytes(p.Frame)[p.Off-virtioNetHdrLen:][:virtioNetHdrLen])
			addr -= virtioNetHdrLen
			ln += virtioNetHdrLen
		}
		q.segs[i] = vring.Seg{Addr: addr, Len: ln}
	}
	id, err := q.q.Add(q.segs[:c])
	if err != nil {
		if !errors.Is(err, vring.ErrFull) {
			qp.broken(err)
		}
		return 0, false
	}
	q.frames[id] = pkts[0].Frame
	more := q.more[id][:0]
	for _, p := range pkts[1:c] {
		more = append(more, p.Frame)
	}
	q.more[id] = more
	q.live[id] = true
	q.chains++
	return c, true
}

// TxChains reports that Tx sends chains whole (ChainTxer).
func (qp *VirtioNetQueue) TxChains() bool { return true }

// TxChains reports that Tx sends chains whole (ChainTxer).
func (v *VirtioNet) TxChains() bool { return true }

// reclaimTx frees the frames of sent packets.
func (qp *VirtioNetQueue) reclaimTx() {
	q := &qp.tx
	n, err := q.q.Collect(q.used)
	for i := 0; i < n; i++ {
		id := q.used[i].ID
		q.fbuf[i] = q.frames[id]
		q.live[id] = false
	}
	if q.chains > 0 {
		// Chains in flight: free the frames after their first too.
		for _, u := range q.used[:n] {
			if more := q.more[u.ID]; len(more) > 0 {
				qp.v.opts.Pool.Put(more)
				q.more[u.ID] = more[:0]
				q.chains--
			}
		}
	}
	qp.v.opts.Pool.Put(q.fbuf[:n])
	if err != nil {
		qp.broken(err)
	}
}

// WaitRx sleeps until the RX queue has packets or timeout passes (a negative timeout
// waits for ever) and reports whether packets are there. It needs the Interrupts
// option; call it from the RX goroutine when Rx keeps returning 0, then go back to
// polling. It refills the ring first and returns false at once if the pool had no
// frame to give it. Interrupts are on only while it waits (§2.7.7, §2.8.10).
func (qp *VirtioNetQueue) WaitRx(timeout time.Duration) (bool, error) {
	if qp.irqFd < 0 {
		return false, fmt.Errorf("%w: WaitRx needs the Interrupts option", ErrVirtioOptions)
	}
	if qp.v.closed {
		return false, ErrClosed
	}
	if err := qp.Err(); err != nil {
		return false, err
	}
	// Only Rx refills the ring: give the device buffers first, or it could never
	// receive nor signal. With none to give (the pool is empty) there is nothing
	// to wait for: return at once and let the caller poll.
	qp.refill()
	q := qp.rx.q
	if q.InFlight() == 0 {
		return false, nil
	}
	defer q.DisableInterrupts()
	if q.EnableInterrupts() {
		return true, nil // used buffers arrived before interrupts were on
	}
	var deadline time.Time
	if timeout >= 0 {
		deadline = time.Now().Add(timeout)
	}
	fds := []unix.PollFd{{Fd: int32(qp.irqFd), Events: unix.POLLIN}}
	for {
		ms := -1
		if timeout >= 0 {
			left := time.Until(deadline)
			if left < 0 {
				left = 0
			}
			ms = int(min((left+time.Millisecond-1)/time.Millisecond, 1<<30))
		}
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue // with what is left of the timeout
		}
		if err != nil {
			return false, os.NewSyscallError("poll", err)
		}
		if n == 0 {
			return false, nil
		}
		var b [8]byte
		unix.Read(qp.irqFd, b[:]) // clear the count; spurious wake-ups are harmless
		return true, nil
	}
}

// Stats returns this queue pair's counters. Safe from any goroutine.
func (qp *VirtioNetQueue) Stats() PortStats { return qp.counters.Snapshot() }

// Close does nothing: the queue pair's rings and frames belong to the device, which
// VirtioNet.Close releases. It makes VirtioNetQueue a Port.
func (qp *VirtioNetQueue) Close() error { return nil }

// Stats returns the sum of every queue pair's counters. Safe from any goroutine.
func (v *VirtioNet) Stats() PortStats {
	var s PortStats
	for _, qp := range v.qps {
		q := qp.Stats()
		s.RxPackets += q.RxPackets
		s.RxBytes += q.RxBytes
		s.TxPackets += q.TxPackets
		s.TxBytes += q.TxBytes
		for i := range s.Drops {
			s.Drops[i] += q.Drops[i]
		}
	}
	return s
}

// MAC returns the device's MAC address (VIRTIO_NET_F_MAC), or zero.
func (v *VirtioNet) MAC() [6]byte {
	var m [6]byte
	if v.features&virtioNetFMAC == 0 {
		return m
	}
	for try := 0; ; try++ { // §4.1.4.3.1: re-read while config_generation changes
		g := v.common.Read8(0x15)
		for i := range m {
			m[i] = v.device.Read8(i)
		}
		if v.common.Read8(0x15) == g || try == 100 {
			return m
		}
	}
}

// LinkUp reports the link status (VIRTIO_NET_F_STATUS); without the feature the link
// is always up (§5.1.4).
func (v *VirtioNet) LinkUp() bool {
	if v.features&virtioNetFStatus == 0 {
		return true
	}
	return v.device.Read16(6)&virtioNetSLinkUp != 0
}

// Check reads the device status (a control-plane MMIO read; call it from a slow
// timer, not per burst): ErrDeviceGone if the device no longer answers (all-ones
// reads, as after a hot unplug), ErrDeviceBroken if it set DEVICE_NEEDS_RESET or
// FAILED (§2.1.2) or a ring broke; Reset recovers from the latter.
func (v *VirtioNet) Check() error {
	if v.closed {
		return ErrClosed
	}
	s := v.common.Read8(0x14)
	if s == 0xff && v.common.Read32(0) == 0xffffffff {
		return ErrDeviceGone
	}
	if s&(statusNeedsReset|statusFailed) != 0 {
		return fmt.Errorf("%w: device status %#x", ErrDeviceBroken, s)
	}
	return v.Err()
}

// Features returns the negotiated feature bits.
func (v *VirtioNet) Features() uint64 { return v.features }

// Reset stops the device, takes back every frame it held and initialises it again
// (new rings, RX refilled). Call with the datapath stopped. It clears Err when it
// succeeds; when it fails, every queue pair keeps an error (Rx and Tx do nothing)
// until a Reset succeeds.
func (v *VirtioNet) Reset() error {
	if v.closed {
		return ErrClosed
	}
	if err := v.reset(); err != nil {
		return err
	}
	v.reclaimAll()
	v.err = nil
	return v.init()
}

// reclaimAll returns to the pool every frame still in a ring. The device must be reset.
func (v *VirtioNet) reclaimAll() {
	var qs []*vnQueue
	for _, qp := range v.qps {
		qs = append(qs, &qp.rx, &qp.tx)
	}
	for _, q := range qs {
		if q.q == nil {
			continue
		}
		// After a reset the rings are ours: whatever the device did not complete is
		// still in q.frames at the ids marked live.
		k := 0
		for id, l := range q.live {
			if l {
				q.fbuf[k] = q.frames[id]
				q.live[id] = false
				k++
				if more := q.more[id]; len(more) > 0 {
					v.opts.Pool.Put(more)
					q.more[id] = more[:0]
				}
			}
		}
		q.chains = 0
		v.opts.Pool.Put(q.fbuf[:k])
	}
	// The first buffers of a packet Rx was still assembling.
	for _, qp := range v.qps {
		for _, p := range qp.rxPend {
			v.opts.Pool.Put([]Frame{p.Frame})
		}
		qp.rxPend, qp.rxNeed, qp.rxSkip = qp.rxPend[:0], 0, 0
	}
}

// Close resets the device (so it stops DMA), returns the ring frames to the pool,
// unmaps DMA memory and closes the VFIO device. A device that does not reset in time
// gets its frames taken back once the pool's DMA mapping is gone, and Close returns
// ErrDeviceNotReady. The device stays bound to vfio-pci; UnbindVFIO hands it back to
// the kernel.
func (v *VirtioNet) Close() error {
	if v.closed {
		return nil
	}
	v.closed = true
	var err error
	if v.common != nil {
		err = v.reset()
	}
	return v.release(err)
}

// release takes the frames back from the rings and tears the device down, after a
// device reset that returned resetErr. A device that did not reset may still be
// writing to the pool: its frames are taken back only once the pool's DMA mapping is
// gone (the IOMMU then stops the device reaching them), and stay out if unmapping
// failed. It returns resetErr, or else the teardown's error.
func (v *VirtioNet) release(resetErr error) error {
	if resetErr == nil {
		v.reclaimAll()
	}
	unmapped, err := v.teardown()
	if resetErr != nil {
		if unmapped {
			v.reclaimAll()
		}
		return resetErr
	}
	return err
}

// vnBus is what teardown needs of the VFIO device (a seam for tests).
type vnBus interface {
	DisableIRQs(index int) error
	UnmapDMA(iova uint64) error
	Close() error
}

// pciBus is the vnBus of a VFIO PCI device and its container.
type pciBus struct{ *vfio.PCI }

func (b pciBus) UnmapDMA(iova uint64) error { return b.Container.UnmapDMA(iova) }

// teardown disables the interrupts, unmaps the rings and the pool from the IOMMU and
// closes the device. It reports whether the device can no longer reach the pool (its
// mapping is gone, or it never had one).
func (v *VirtioNet) teardown() (poolUnmapped bool, err error) {
	if v.qps[0].irqFd >= 0 {
		v.bus.DisableIRQs(vfio.IRQMSIX)
	}
	for _, qp := range v.qps {
		if qp.irqFd >= 0 {
			unix.Close(qp.irqFd)
			qp.irqFd = -1
		}
	}
	if v.rings != nil {
		if v.ringIOVA != 0 {
			v.bus.UnmapDMA(v.ringIOVA)
		}
		v.rings.Unmap()
		v.rings = nil
	}
	poolUnmapped = true
	if v.poolIOVA != 0 {
		err = v.bus.UnmapDMA(v.poolIOVA)
		poolUnmapped = err == nil
		v.poolIOVA = 0
	}
	if e := v.bus.Close(); err == nil {
		err = e
	}
	return poolUnmapped, err
}

// BindVFIO hands PCI device bdf to vfio-pci (driver_override, unbind, drivers_probe).
func BindVFIO(bdf string) error { return vfio.Bind(bdf, "vfio-pci") }

// UnbindVFIO returns device bdf to the kernel driver that claims it and returns that
// driver's name. Close the port first.
func UnbindVFIO(bdf string) (string, error) { return vfio.Unbind(bdf) }

func le16(b []byte) uint16 { return uint16(b[0]) | uint16(b[1])<<8 }

func roundUpInt(n, to int) int { return (n + to - 1) / to * to }
