package vring

import (
	"fmt"
	"sort"
)

// Region is one mapped range of guest memory. The queue never owns regions:
// the caller maps and unmaps them (vhost-user: SET_MEM_TABLE), and must not
// unmap a region while a Memory that refers to it is in use. Plain data.
type Region struct {
	// Addr is the first guest address of the region: guest-physical for a
	// vhost-user backend, IOVA for a VFIO driver.
	Addr uint64
	// UserAddr is the frontend's virtual address of the region (vhost-user
	// userspace_addr), used only by TranslateUser. Zero if unused.
	UserAddr uint64
	// Host is the mapping; len(Host) is the region size.
	Host []byte
}

// Memory is an immutable set of non-overlapping regions. It is safe for
// concurrent use; build a new Memory to change the table.
type Memory struct {
	regions []Region // sorted by Addr
	user    []Region // sorted by UserAddr, only regions with UserAddr != 0
}

// NewMemory validates regions (non-empty, no wrap, no overlap in either
// address space) and returns a Memory. The slice is copied; the Host slices
// are not.
func NewMemory(regions ...Region) (*Memory, error) {
	m := &Memory{regions: append([]Region(nil), regions...)}
	sort.Slice(m.regions, func(i, j int) bool { return m.regions[i].Addr < m.regions[j].Addr })
	for i, r := range m.regions {
		n := uint64(len(r.Host))
		if n == 0 {
			return nil, fmt.Errorf("region %d: empty: %w", i, ErrInvalid)
		}
		if r.Addr+n-1 < r.Addr || (r.UserAddr != 0 && r.UserAddr+n-1 < r.UserAddr) {
			return nil, fmt.Errorf("region %#x+%#x: %w", r.Addr, n, ErrOverflow)
		}
		if i > 0 {
			p := m.regions[i-1]
			if p.Addr+uint64(len(p.Host))-1 >= r.Addr {
				return nil, fmt.Errorf("regions %#x and %#x overlap: %w", p.Addr, r.Addr, ErrInvalid)
			}
		}
		if r.UserAddr != 0 {
			m.user = append(m.user, r)
		}
	}
	sort.Slice(m.user, func(i, j int) bool { return m.user[i].UserAddr < m.user[j].UserAddr })
	for i := 1; i < len(m.user); i++ {
		p := m.user[i-1]
		if p.UserAddr+uint64(len(p.Host))-1 >= m.user[i].UserAddr {
			return nil, fmt.Errorf("user ranges %#x and %#x overlap: %w", p.UserAddr, m.user[i].UserAddr, ErrInvalid)
		}
	}
	return m, nil
}

// Regions returns the regions sorted by Addr. The caller must not modify it.
func (m *Memory) Regions() []Region { return m.regions }

// find returns the index of the region containing addr, or -1.
func (m *Memory) find(addr uint64) int {
	rs := m.regions
	if len(rs) <= 4 {
		for i := range rs {
			if off := addr - rs[i].Addr; addr >= rs[i].Addr && off < uint64(len(rs[i].Host)) {
				return i
			}
		}
		return -1
	}
	i := sort.Search(len(rs), func(i int) bool { return rs[i].Addr > addr }) - 1
	if i >= 0 && addr-rs[i].Addr < uint64(len(rs[i].Host)) {
		return i
	}
	return -1
}

// Translate returns the host bytes for [addr, addr+n). The result is
// shorter than n when the range crosses the end of a region; the caller
// continues at addr+len(result). It fails with ErrOverflow if addr+n wraps
// and ErrAddress if addr is not mapped. For n == 0 it returns an empty
// slice if addr is mapped. The slice aliases guest memory: it is valid while
// the region stays mapped, and the guest may change it at any time.
func (m *Memory) Translate(addr, n uint64) ([]byte, error) {
	if n != 0 && addr+n-1 < addr {
		return nil, ErrOverflow
	}
	i := m.find(addr)
	if i < 0 {
		return nil, ErrAddress
	}
	h := m.regions[i].Host[addr-m.regions[i].Addr:]
	if uint64(len(h)) > n {
		h = h[:n]
	}
	return h, nil
}

// Slice is Translate for a range that must be contiguous in host memory;
// it fails with ErrNotContiguous when the range crosses a region end, even
// if the next region is adjacent.
func (m *Memory) Slice(addr, n uint64) ([]byte, error) {
	h, err := m.Translate(addr, n)
	if err != nil {
		return nil, err
	}
	if uint64(len(h)) != n {
		return nil, ErrNotContiguous
	}
	return h, nil
}

// Check reports whether [addr, addr+n) is fully mapped, possibly across
// several adjacent regions. A zero-length range must start at a mapped
// address. It does not allocate.
func (m *Memory) Check(addr, n uint64) error {
	if n != 0 && addr+n-1 < addr {
		return ErrOverflow
	}
	for {
		i := m.find(addr)
		if i < 0 {
			return ErrAddress
		}
		r := &m.regions[i]
		left := uint64(len(r.Host)) - (addr - r.Addr)
		if n <= left {
			return nil
		}
		addr += left
		n -= left
	}
}

// TranslateUser translates a frontend virtual address (vhost-user ring
// addresses) to host bytes, like Slice: the range must lie in one region.
func (m *Memory) TranslateUser(uaddr, n uint64) ([]byte, error) {
	if n != 0 && uaddr+n-1 < uaddr {
		return nil, ErrOverflow
	}
	for _, r := range m.user {
		if uaddr >= r.UserAddr && uaddr-r.UserAddr < uint64(len(r.Host)) {
			h := r.Host[uaddr-r.UserAddr:]
			if uint64(len(h)) < n {
				return nil, ErrNotContiguous
			}
			return h[:n], nil
		}
	}
	return nil, ErrAddress
}

// ReadAt copies guest memory at addr into p, crossing region boundaries.
// It returns the bytes copied and ErrAddress/ErrOverflow if the range is not
// fully mapped (a prefix may have been copied).
func (m *Memory) ReadAt(p []byte, addr uint64) (int, error) {
	done := 0
	for done < len(p) {
		h, err := m.Translate(addr+uint64(done), uint64(len(p)-done))
		if err != nil {
			return done, err
		}
		done += copy(p[done:], h)
	}
	return done, nil
}

// WriteAt copies p into guest memory at addr, crossing region boundaries.
func (m *Memory) WriteAt(p []byte, addr uint64) (int, error) {
	done := 0
	for done < len(p) {
		h, err := m.Translate(addr+uint64(done), uint64(len(p)-done))
		if err != nil {
			return done, err
		}
		done += copy(h, p[done:])
	}
	return done, nil
}

// Cursor translates guest addresses like Memory.Slice, remembering the region of the
// last hit, so that the buffers of a burst, which mostly lie in one region, cost a
// comparison each instead of a region search. It belongs to one goroutine; its
// Memory's contract holds for the slices it returns.
type Cursor struct {
	m    *Memory
	addr uint64 // guest address of host[0]
	host []byte // the region of the last hit; empty at first
}

// Cursor returns a cursor over m.
func (m *Memory) Cursor() Cursor { return Cursor{m: m} }

// Slice returns the host bytes of [addr, addr+n), which must lie in one region, and
// reports false if they do not: Memory.Slice without the error, and without its
// region search while the addresses stay in the last region.
func (c *Cursor) Slice(addr, n uint64) ([]byte, bool) {
	if off := addr - c.addr; off < uint64(len(c.host)) && n <= uint64(len(c.host))-off {
		return c.host[off : off+n : off+n], true
	}
	return c.miss(addr, n)
}

func (c *Cursor) miss(addr, n uint64) ([]byte, bool) {
	i := c.m.find(addr)
	if i < 0 {
		return nil, false
	}
	r := c.m.regions[i]
	c.addr, c.host = r.Addr, r.Host
	off := addr - r.Addr
	if n > uint64(len(r.Host))-off {
		return nil, false
	}
	return r.Host[off : off+n : off+n], true
}
