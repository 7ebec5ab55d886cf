package afxdp

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// umemReg is struct xdp_umem_reg (kernel 6.8+ layout with tx_metadata_len; older
// kernels accept the 32-byte form as long as the trailing field is zero).
type umemReg struct {
	Addr          uint64
	Len           uint64
	ChunkSize     uint32
	Headroom      uint32
	Flags         uint32
	TxMetadataLen uint32
}

const (
	sizeofUmemReg     = uint32(unsafe.Sizeof(umemReg{}))
	sizeofMmapOffsets = uint32(unsafe.Sizeof(MmapOffsets{}))
	sizeofStats       = uint32(unsafe.Sizeof(Stats{}))
)

func ptrUmemReg(r *umemReg) unsafe.Pointer         { return unsafe.Pointer(r) }
func ptrMmapOffsets(o *MmapOffsets) unsafe.Pointer { return unsafe.Pointer(o) }
func ptrStats(s *Stats) unsafe.Pointer             { return unsafe.Pointer(s) }
func ptrU32(v *uint32) unsafe.Pointer              { return unsafe.Pointer(v) }

// addrOf returns the address of mem's first byte. mem must be an mmap'd region (never
// moved by the garbage collector).
func addrOf(mem []byte) uint64 {
	if len(mem) == 0 {
		return 0
	}
	return uint64(uintptr(unsafe.Pointer(&mem[0])))
}

func setsockoptPtr(fd, level, opt int, p unsafe.Pointer, size uint32, name string) error {
	_, _, e := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(size), 0)
	if e != 0 {
		return os.NewSyscallError("setsockopt("+name+")", e)
	}
	return nil
}

func getsockoptPtr(fd, level, opt int, p unsafe.Pointer, size uint32) (uint32, error) {
	l := size
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), uintptr(opt), uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return l, nil
}

// ethtoolChannels is struct ethtool_channels (include/uapi/linux/ethtool.h).
type ethtoolChannels struct {
	Cmd                                         uint32
	MaxRx, MaxTx, MaxOther, MaxCombined         uint32
	RxCount, TxCount, OtherCount, CombinedCount uint32
}

// ifreqData is struct ifreq with the ifr_data member of its union, padded to the
// union's size (struct ifmap, 24 bytes on 64-bit).
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(unsafe.Pointer(nil))]byte
}

// getChannels runs ETHTOOL_GCHANNELS for ifname on fd (an AF_INET socket: the ioctl
// acts in the socket's network namespace).
func getChannels(fd int, ifname string) (ethtoolChannels, error) {
	ch := ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&ch)
	_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if e != 0 {
		return ch, e
	}
	return ch, nil
}
