// Package sysmem maps the memory that packet pools, UMEMs and DMA regions live in:
// anonymous or memfd-backed mappings, on 2 MiB hugepages when the machine has them.
//
// It is the only place dpkit calls mmap for its own memory. A Mapping is owned by one
// caller and must be unmapped exactly once.
package sysmem

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// HugePageSize is the size of the hugepages dpkit asks for: 2 MiB, named in every
// request (MAP_HUGE_2MB, MFD_HUGE_2MB), so that a host whose default hugepage size
// is 1 GiB does not hand out a whole 1 GiB page for a mapping sized in 2 MiB units.
const HugePageSize = 2 << 20

// ErrNoHugepages reports that a hugepage mapping was required but none could be had.
var ErrNoHugepages = errors.New("sysmem: no hugepages available")

// Options says how to map.
type Options struct {
	// Size in bytes. Rounded up to the page size used.
	Size int
	// Huge: 0 tries hugepages and falls back to ordinary pages, 1 requires them,
	// -1 never uses them.
	Huge int
	// Shared backs the mapping with a memfd whose descriptor can be passed to another
	// process (vhost-user) and maps it MAP_SHARED. Otherwise the mapping is anonymous
	// and private.
	Shared bool
	// Name labels the memfd (visible in /proc/PID/fd).
	Name string
}

// Mapping is one mapped region.
type Mapping struct {
	Mem  []byte
	Huge bool
	// Fd is the memfd behind a shared mapping, or -1.
	Fd int
}

// Map creates a mapping as opts says. With Huge == 0 a failure to get hugepages is not
// an error: the returned Mapping has Huge false, and HugeErr says why.
func Map(opts Options) (m *Mapping, hugeErr error, err error) {
	if opts.Size <= 0 {
		return nil, nil, fmt.Errorf("sysmem: size %d must be positive", opts.Size)
	}
	if opts.Huge >= 0 {
		m, err := mapOnce(opts, true)
		if err == nil {
			return m, nil, nil
		}
		hugeErr = fmt.Errorf("%w: %v", ErrNoHugepages, err)
		if opts.Huge > 0 {
			return nil, hugeErr, hugeErr
		}
	}
	m, err = mapOnce(opts, false)
	return m, hugeErr, err
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

func mapOnce(opts Options, huge bool) (*Mapping, error) {
	size := opts.Size
	if huge {
		size = roundUp(size, HugePageSize)
	} else {
		size = roundUp(size, os.Getpagesize())
	}
	fd := -1
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	if opts.Shared {
		mflags := unix.MFD_CLOEXEC
		if huge {
			mflags |= unix.MFD_HUGETLB | unix.MFD_HUGE_2MB
		}
		name := opts.Name
		if name == "" {
			name = "dpkit"
		}
		var err error
		fd, err = unix.MemfdCreate(name, mflags)
		if err != nil {
			return nil, os.NewSyscallError("memfd_create", err)
		}
		if err := unix.Ftruncate(fd, int64(size)); err != nil {
			unix.Close(fd)
			return nil, os.NewSyscallError("ftruncate", err)
		}
		flags = unix.MAP_SHARED | unix.MAP_POPULATE
	} else if huge {
		flags |= unix.MAP_HUGETLB | unix.MAP_HUGE_2MB
	}
	mem, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, os.NewSyscallError("mmap", err)
	}
	return &Mapping{Mem: mem, Huge: huge, Fd: fd}, nil
}

// Unmap releases the mapping and closes its memfd. It is safe to call once.
func (m *Mapping) Unmap() error {
	var err error
	if m.Mem != nil {
		err = os.NewSyscallError("munmap", unix.Munmap(m.Mem))
		m.Mem = nil
	}
	if m.Fd >= 0 {
		if cerr := unix.Close(m.Fd); cerr != nil && err == nil {
			err = os.NewSyscallError("close", cerr)
		}
		m.Fd = -1
	}
	return err
}
