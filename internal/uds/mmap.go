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
	whole []byte // the mapping as made: from the page that holds the offset
	// Mem is the requested range: size bytes from offset.
	Mem []byte
}

// MapFd maps size bytes at offset of fd, shared and read-write. The file must be a
// regular file (memfd, hugetlbfs, tmpfs) at least offset+size long, so a later access
// cannot fault past its end. The mapping covers whole pages of the file around the
// range: it starts at offset rounded down to the file's page size (mmap needs the
// offset aligned, and on hugetlbfs that is the huge page size) and ends rounded up to
// it where the file is long enough. Mem is exactly the range, whatever the offset's
// alignment. When the file allows it, the file is sealed against shrinking, so the
// peer cannot truncate it under the mapping. fd is not closed.
//
// Nothing is populated. The peer chooses the file, the offset and the size: the file
// may be sparse, and on shmem or hugetlbfs, populating (MAP_POPULATE) would allocate
// every hole of the range, charged to this process, so a hostile front-end could have
// it killed for memory and stall the control path meanwhile. A guest's memory is
// mostly allocated already by the guest; mapping it lazily costs one minor fault on the
// first touch of each page (on the datapath), where populating would commit all of it
// up front. DPDK's vhost maps the same way (it populates only for async copies).
func MapFd(fd int, size, offset uint64) (*FdMapping, error) {
	if size == 0 || offset+size < offset || offset+size > 1<<47 {
		return nil, fmt.Errorf("%w: size %#x offset %#x", ErrBadMapping, size, offset)
	}
	// Best effort: memfds made with MFD_ALLOW_SEALING accept it, others refuse. The
	// seal comes before the size is read, so that a sealed file cannot shrink below
	// the range between the check and the mapping.
	unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK)
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
	pg, err := filePageSize(fd)
	if err != nil {
		return nil, err
	}
	start := offset &^ (pg - 1)
	end := (offset + size + pg - 1) &^ (pg - 1)
	if end > uint64(st.Size) {
		// The rounded tail lies past the file's end: map up to the range's end only
		// (the kernel still maps its last page whole).
		end = offset + size
	}
	mem, err := unix.Mmap(fd, int64(start), int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	lo := offset - start
	return &FdMapping{whole: mem, Mem: mem[lo : lo+size : lo+size]}, nil
}

// filePageSize returns the unit in which fd's file is mapped: the huge page size on
// hugetlbfs (a hugetlbfs memfd included), which its statfs block size reports, else
// the system page size.
func filePageSize(fd int) (uint64, error) {
	pg := uint64(os.Getpagesize())
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return 0, os.NewSyscallError("fstatfs", err)
	}
	if uint32(sfs.Type) == unix.HUGETLBFS_MAGIC {
		if b := uint64(sfs.Bsize); b > pg && b&(b-1) == 0 {
			pg = b
		}
	}
	return pg, nil
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
