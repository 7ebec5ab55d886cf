package afxdp

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Kernel ABI constants of <linux/if_xdp.h> used by dpkit.
const (
	XDPRingNeedWakeup    = unix.XDP_RING_NEED_WAKEUP
	XDPPktContd          = unix.XDP_PKT_CONTD
	XDPPacketHeadroom    = unix.XDP_PACKET_HEADROOM
	UnalignedOffsetShift = 48
	UnalignedAddrMask    = 1<<UnalignedOffsetShift - 1

	BindSharedUMEM = unix.XDP_SHARED_UMEM
	BindCopy       = unix.XDP_COPY
	BindZeroCopy   = unix.XDP_ZEROCOPY
	BindNeedWakeup = unix.XDP_USE_NEED_WAKEUP
	BindSG         = unix.XDP_USE_SG

	UMEMUnaligned = unix.XDP_UMEM_UNALIGNED_CHUNK_FLAG
)

// RingOffsets is struct xdp_ring_offset.
type RingOffsets struct {
	Producer, Consumer, Desc, Flags uint64
}

// MmapOffsets is struct xdp_mmap_offsets.
type MmapOffsets struct {
	Rx, Tx, Fill, Comp RingOffsets
}

// Stats is struct xdp_statistics (kernel 5.9+ layout).
type Stats struct {
	RxDropped            uint64
	RxInvalidDescs       uint64
	TxInvalidDescs       uint64
	RxRingFull           uint64
	RxFillRingEmptyDescs uint64
	TxRingEmptyDescs     uint64
}

// Socket creates an AF_XDP socket, close-on-exec.
func Socket() (int, error) {
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket(AF_XDP)", err)
	}
	return fd, nil
}

// Close closes fd.
func Close(fd int) error { return unix.Close(fd) }

// RegisterUMEM registers [base, base+size) as the UMEM of fd (XDP_UMEM_REG).
func RegisterUMEM(fd int, mem []byte, chunk, headroom, flags uint32) error {
	reg := umemReg{Addr: addrOf(mem), Len: uint64(len(mem)), ChunkSize: chunk, Headroom: headroom, Flags: flags}
	return setsockoptPtr(fd, unix.SOL_XDP, unix.XDP_UMEM_REG, ptrUmemReg(&reg), sizeofUmemReg, "XDP_UMEM_REG")
}

// SetRingSize sets the size of one of fd's rings (XDP_RX_RING, XDP_TX_RING,
// XDP_UMEM_FILL_RING, XDP_UMEM_COMPLETION_RING).
func SetRingSize(fd, ring int, n uint32) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_XDP, ring, int(n)); err != nil {
		return os.NewSyscallError(fmt.Sprintf("setsockopt(SOL_XDP, %d)", ring), err)
	}
	return nil
}

// Ring ids for SetRingSize and mmap page offsets for MapRing.
const (
	RingRx   = unix.XDP_RX_RING
	RingTx   = unix.XDP_TX_RING
	RingFill = unix.XDP_UMEM_FILL_RING
	RingComp = unix.XDP_UMEM_COMPLETION_RING

	PgoffRx   = unix.XDP_PGOFF_RX_RING
	PgoffTx   = unix.XDP_PGOFF_TX_RING
	PgoffFill = unix.XDP_UMEM_PGOFF_FILL_RING
	PgoffComp = unix.XDP_UMEM_PGOFF_COMPLETION_RING
)

// GetMmapOffsets reads the ring layout of fd (XDP_MMAP_OFFSETS).
func GetMmapOffsets(fd int) (MmapOffsets, error) {
	var o MmapOffsets
	n, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_MMAP_OFFSETS, ptrMmapOffsets(&o), sizeofMmapOffsets)
	if err != nil {
		return o, os.NewSyscallError("getsockopt(XDP_MMAP_OFFSETS)", err)
	}
	if n != sizeofMmapOffsets {
		// Kernels before 5.4 lack the flags field; dpkit needs need_wakeup anyway.
		return o, fmt.Errorf("afxdp: XDP_MMAP_OFFSETS returned %d bytes, want %d (kernel too old)", n, sizeofMmapOffsets)
	}
	return o, nil
}

// MapRing maps the ring at page offset pgoff: its descriptor array starts at off.Desc
// and holds n slots of esz bytes.
func MapRing(fd int, pgoff int64, off RingOffsets, n uint32, esz uint64) ([]byte, error) {
	size := off.Desc + uint64(n)*esz
	mem, err := unix.Mmap(fd, pgoff, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap(AF_XDP ring)", err)
	}
	return mem, nil
}

// Unmap unmaps a ring.
func Unmap(mem []byte) error {
	if mem == nil {
		return nil
	}
	return os.NewSyscallError("munmap", unix.Munmap(mem))
}

// Bind binds fd to a device queue (struct sockaddr_xdp).
func Bind(fd int, flags uint16, ifindex, queue uint32, sharedFd int) error {
	sa := &unix.SockaddrXDP{Flags: flags, Ifindex: ifindex, QueueID: queue}
	if flags&BindSharedUMEM != 0 {
		sa.SharedUmemFD = uint32(sharedFd)
	}
	if err := unix.Bind(fd, sa); err != nil {
		return os.NewSyscallError("bind(AF_XDP)", err)
	}
	return nil
}

// ZeroCopy reads XDP_OPTIONS and reports whether the socket is in zero-copy mode.
func ZeroCopy(fd int) (bool, error) {
	var v uint32
	n, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_OPTIONS, ptrU32(&v), 4)
	if err != nil {
		return false, os.NewSyscallError("getsockopt(XDP_OPTIONS)", err)
	}
	if n != 4 {
		return false, fmt.Errorf("getsockopt(XDP_OPTIONS): %d bytes, want 4", n)
	}
	return v&unix.XDP_OPTIONS_ZEROCOPY != 0, nil
}

// GetStats reads XDP_STATISTICS.
func GetStats(fd int) (Stats, error) {
	var s Stats
	_, err := getsockoptPtr(fd, unix.SOL_XDP, unix.XDP_STATISTICS, ptrStats(&s), sizeofStats)
	if err != nil {
		return s, os.NewSyscallError("getsockopt(XDP_STATISTICS)", err)
	}
	return s, nil
}

// SetSockoptInt sets an integer socket option (SO_BUSY_POLL and friends).
func SetSockoptInt(fd, level, opt, v int) error {
	return unix.SetsockoptInt(fd, level, opt, v)
}

// Socket-level option numbers for busy polling.
const (
	SolSocket         = unix.SOL_SOCKET
	SoPreferBusyPoll  = unix.SO_PREFER_BUSY_POLL
	SoBusyPoll        = unix.SO_BUSY_POLL
	SoBusyPollBudget  = unix.SO_BUSY_POLL_BUDGET
	SolXDP            = unix.SOL_XDP
	XDPMaxTxSkbBudget = unix.XDP_MAX_TX_SKB_BUDGET
)

// Kick asks the kernel to process the tx ring: sendto(fd, NULL, 0, MSG_DONTWAIT).
//
// It uses RawSyscall, which skips the runtime's entersyscall/exitsyscall bookkeeping
// (and the P hand-off the scheduler may do for a syscall it thinks may block). That is
// sound because with MSG_DONTWAIT the call does not wait for ring room or the device:
// in copy mode it transmits at most one budget of frames and returns, in zero-copy
// mode it only schedules the driver's NAPI. The one place it can sleep is the
// kernel's per-socket mutex (xs->mutex), which copy-mode transmit holds for its batch
// and the socket's control calls take too (XDP_STATISTICS and XDP_OPTIONS for a few
// loads, bind, setsockopt and close for longer, a poll of a copy-mode socket for a
// transmit of its own); dpkit makes only the first two on a bound socket (Stats), so
// the wait is short. Kick takes no lock of dpkit's. Errors that only mean "try again
// later" (EAGAIN, EBUSY, ENOBUFS) are WakeBusy and a device that is down WakeDown,
// neither of them a failure (libxdp ignores all four); callers count them apart.
func Kick(fd int) WakeResult {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return wakeResult(e)
}

// WakeRx tells the kernel the fill ring has buffers again (recvfrom with MSG_DONTWAIT,
// the need_wakeup path for rx in copy mode); same reasoning and results as Kick.
func WakeRx(fd int) WakeResult {
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	return wakeResult(e)
}

// WakeResult is how the kernel answered a wakeup (Kick, WakeRx).
type WakeResult uint8

const (
	WakeDone   WakeResult = iota // taken
	WakeBusy                     // EAGAIN, EBUSY, ENOBUFS: ring, budget or device busy; try later
	WakeDown                     // ENETDOWN: the device is down; nothing moves until it is up
	WakeFailed                   // any other error: a socket that cannot be woken
)

func wakeResult(e unix.Errno) WakeResult {
	switch e {
	case 0:
		return WakeDone
	case unix.EAGAIN, unix.EBUSY, unix.ENOBUFS:
		return WakeBusy
	case unix.ENETDOWN:
		return WakeDown
	}
	return WakeFailed
}

// Poll waits up to timeoutMs for fd to become readable (or writable with out), through
// the runtime's ordinary (blocking) syscall path.
func Poll(fd int, out bool, timeoutMs int) (bool, error) {
	ev := int16(unix.POLLIN)
	if out {
		ev = unix.POLLOUT
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: ev}}
	n, err := unix.Poll(fds, timeoutMs)
	if errors.Is(err, unix.EINTR) {
		return false, nil
	}
	return n > 0, err
}

// IsBusy reports whether err is the EBUSY a bind gets while the kernel still tears down
// a previous socket on the same queue.
func IsBusy(err error) bool { return errors.Is(err, unix.EBUSY) }

// IsNoOption reports whether a setsockopt failed because the kernel lacks the option.
func IsNoOption(err error) bool { return errors.Is(err, unix.ENOPROTOOPT) }

// IsNotSupported reports whether err says the device or kernel lacks a mode.
func IsNotSupported(err error) bool {
	return errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPROTONOSUPPORT)
}

// SizeofDesc and SizeofAddr are the slot sizes of descriptor and address rings.
const (
	SizeofDesc = 16
	SizeofAddr = 8
)

// ActiveRxQueues returns how many rx queues ifname, in the calling thread's network
// namespace, has in use: the rx-only plus the combined channels (ETHTOOL_GCHANNELS).
// That can be fewer than the device allocated (IFLA_NUM_RX_QUEUES): `ethtool -L`
// lowers it, and the kernel refuses to bind past it (xsk_bind checks
// real_num_rx_queues). ok is false when the driver does not report channels.
func ActiveRxQueues(ifname string) (n int, ok bool, err error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return 0, false, fmt.Errorf("afxdp: interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, false, os.NewSyscallError("socket(AF_INET)", err)
	}
	defer unix.Close(fd)
	ch, err := getChannels(fd, ifname)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return 0, false, nil // no get_channels in the driver
	}
	if err != nil {
		return 0, false, os.NewSyscallError("ioctl(ETHTOOL_GCHANNELS)", err)
	}
	return int(ch.RxCount) + int(ch.CombinedCount), true, nil
}

// IsNoDevice reports whether err says the interface does not exist.
func IsNoDevice(err error) bool { return errors.Is(err, unix.ENODEV) }

// SocketNetns identifies the network namespace fd was created in, the one whose
// interface indexes its bind names (sock_net): the device and inode of the nsfs file
// SIOCGSKNS opens for it. That ioctl needs CAP_NET_ADMIN in the namespace's user
// namespace; without it (EPERM) the calling thread's namespace is taken instead, which
// is the socket's when it was created on this thread.
func SocketNetns(fd int) (dev, ino uint64, err error) {
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if errors.Is(err, unix.EPERM) {
		return Netns()
	}
	if err != nil {
		return 0, 0, os.NewSyscallError("ioctl(SIOCGSKNS)", err)
	}
	defer unix.Close(nsfd) // opened close-on-exec by the kernel (open_related_ns)
	var st unix.Stat_t
	if err := unix.Fstat(nsfd, &st); err != nil {
		return 0, 0, os.NewSyscallError("fstat(netns)", err)
	}
	return st.Dev, st.Ino, nil
}

// Netns identifies the calling thread's network namespace (the device and inode of
// its nsfs file), in which interface indexes are unique.
func Netns() (dev, ino uint64, err error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, 0, os.NewSyscallError("stat(/proc/thread-self/ns/net)", err)
	}
	return st.Dev, st.Ino, nil
}
