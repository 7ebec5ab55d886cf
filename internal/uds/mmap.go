package uds

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrBadMapping: a passed descriptor cannot back the requested range (not a regular
// file, too small for offset+size, or the arithmetic overflows).
var ErrBadMapping = errors.New("uds: descriptor cannot back the requested range")

// FdMapping is memory mapped from a peer's descriptor (a memfd or a hugetlbfs file).
type FdMapping struct {
	whole []byte // the mapping as made, from file offset 0
	// Mem is the requested range: size bytes from offset.
	Mem []byte
}

// MapFd maps size bytes at offset of fd, shared and read-write. The file must be a
// regular file (memfd, hugetlbfs, tmpfs) at least offset+size long, so a later access
// cannot fault past its end; as DPDK does, the mapping starts at file offset 0 and is
// rounded to the file's block size (the hugepage size on hugetlbfs). When the file
// allows it, the file is sealed against shrinking, so the peer cannot truncate it under
// the mapping. fd is not closed.
func MapFd(fd int, size, offset uint64) (*FdMapping, error) {
	if size == 0 || offset+size < offset || offset+size > 1<<47 {
		return nil, fmt.Errorf("%w: size %#x offset %#x", ErrBadMapping, size, offset)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%w: not a regular file (mode %#o)", ErrBadMapping, st.Mode)
	}
	if uint64(st.Size) < offset+size {
		return nil, fmt.Errorf("%w: file is %d bytes, range ends at %d", ErrBadMapping, st.Size, offset+size)
	}
	// Best effort: memfds made with MFD_ALLOW_SEALING accept it, others refuse.
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK)
	blk := uint64(st.Blksize)
	if blk < uint64(os.Getpagesize()) || blk&(blk-1) != 0 {
		blk = uint64(os.Getpagesize())
	}
	length := (offset + size + blk - 1) &^ (blk - 1)
	if length > uint64(st.Size) {
		// The rounded tail lies past the file's end: map only whole file pages.
		length = offset + size
	}
	mem, err := unix.Mmap(fd, 0, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return &FdMapping{whole: mem, Mem: mem[offset : offset+size : offset+size]}, nil
}

// Unmap releases the mapping; safe to call more than once.
func (m *FdMapping) Unmap() error {
	if m == nil || m.whole == nil {
		return nil
	}
	err := unix.Munmap(m.whole)
	m.whole, m.Mem = nil, nil
	return os.NewSyscallError("munmap", err)
}

// MemfdWithSize creates a sealable memfd of size bytes (for tests and frontends).
func MemfdWithSize(name string, size int64) (int, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return -1, os.NewSyscallError("memfd_create", err)
	}
	if err := unix.Ftruncate(fd, size); err != nil {
		unix.Close(fd)
		return -1, os.NewSyscallError("ftruncate", err)
	}
	return fd, nil
}

// MapShared maps size bytes of fd from offset 0 (the owner's own memfd).
func MapShared(fd int, size int) ([]byte, error) {
	b, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	return b, os.NewSyscallError("mmap", err)
}

// Munmap unmaps b.
func Munmap(b []byte) error { return os.NewSyscallError("munmap", unix.Munmap(b)) }
