package vfio

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// iovaAlloc hands out IOVA ranges aligned to their size's power of two (capped at
// 1 GiB) so hugepage-backed memory can use large IOMMU pages. The free space is a
// sorted list of disjoint ranges, first fit from the lowest address; a freed range is
// merged with its free neighbours, so mapping and unmapping for ever does not split
// the space into pieces too small to use. Not safe for concurrent use (Container
// locks it).
type iovaAlloc struct {
	page   uint64
	free_  []iovaRange // ascending, disjoint and never touching (touching ones are merged)
	usable []iovaSpan  // the spans the kernel reported, nil if none
}

// iovaRange is the IOVA range [base, base+size).
type iovaRange struct{ base, size uint64 }

func (r iovaRange) end() uint64 { return r.base + r.size }

// iovaSpan is an IOVA range the IOMMU accepts mappings in, first to last inclusive
// (struct vfio_iova_range).
type iovaSpan struct{ first, last uint64 }

// newIOVAAlloc hands out IOVAs below end and, if usable is not nil, only inside its
// spans: the kernel refuses a mapping that touches a reserved region (x86's MSI window
// at 0xfee00000, RMRRs) with EINVAL.
func newIOVAAlloc(page, end uint64, usable []iovaSpan) iovaAlloc {
	if page == 0 || page&(page-1) != 0 {
		page = 4096
	}
	// IOVA 0 is left unused so a zero address is never valid DMA.
	const low = 1 << 20
	a := iovaAlloc{page: page, usable: usable}
	if usable == nil {
		usable = []iovaSpan{{0, ^uint64(0)}}
	}
	for _, u := range usable {
		first, last := max(u.first, low), min(u.last, end-1)
		if end == 0 || first > last {
			continue
		}
		// Whole pages only: a mapping must not reach past the span.
		first = (first + page - 1) &^ (page - 1)
		stop := (last - page + 1) &^ (page - 1) // start of the last whole page, if any
		if last < page-1 || first == 0 || first > stop {
			continue
		}
		if n := len(a.free_); n > 0 && a.free_[n-1].end() == first { // spans may touch
			a.free_[n-1].size += stop + page - first
			continue
		}
		a.free_ = append(a.free_, iovaRange{first, stop + page - first})
	}
	return a
}

func (a *iovaAlloc) align(size uint64) uint64 {
	al := a.page
	for al < size && al < 1<<30 {
		al <<= 1
	}
	return al
}

func (a *iovaAlloc) alloc(size uint64) (uint64, error) {
	if size == 0 || size%a.page != 0 {
		return 0, fmt.Errorf("vfio: DMA size %#x is not a multiple of the IOMMU page size %#x", size, a.page)
	}
	al := a.align(size)
	for i, r := range a.free_ {
		base := (r.base + al - 1) &^ (al - 1)
		if base < r.base || base >= r.end() || size > r.end()-base {
			continue
		}
		var keep []iovaRange
		if base > r.base {
			keep = append(keep, iovaRange{r.base, base - r.base})
		}
		if base+size < r.end() {
			keep = append(keep, iovaRange{base + size, r.end() - base - size})
		}
		a.free_ = slices.Replace(a.free_, i, i+1, keep...)
		return base, nil
	}
	return 0, ErrIOVAExhausted
}

// iovaRanges returns the usable IOVA ranges a VFIO_IOMMU_GET_INFO reply b (struct
// vfio_iommu_type1_info and its capability chain) lists in its
// VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE capability, or nil if it has none or the chain
// is malformed.
func iovaRanges(b []byte) []iovaSpan {
	if len(b) < iommuInfoSize || le.Uint32(b[4:])&iommuInfoCaps == 0 {
		return nil
	}
	off := uint64(le.Uint32(b[16:]))
	for ttl := 64; off != 0 && ttl > 0; ttl-- {
		if off < iommuInfoSize || off > uint64(len(b)) || uint64(len(b))-off < 16 {
			return nil
		}
		if le.Uint16(b[off:]) != capIOVARange {
			off = uint64(le.Uint32(b[off+4:]))
			continue
		}
		n := uint64(le.Uint32(b[off+8:]))
		if n == 0 || n > (uint64(len(b))-off-16)/16 {
			return nil
		}
		spans := make([]iovaSpan, 0, n)
		for i := range n {
			p := off + 16 + 16*i
			s := iovaSpan{le.Uint64(b[p:]), le.Uint64(b[p+8:])}
			if s.last < s.first || (i > 0 && s.first <= spans[i-1].last) {
				return nil
			}
			spans = append(spans, s)
		}
		return spans
	}
	return nil
}

// free gives back [base, base+size), which alloc returned, merging it with the free
// ranges it touches.
func (a *iovaAlloc) free(base, size uint64) {
	i, _ := slices.BinarySearchFunc(a.free_, base, func(r iovaRange, b uint64) int {
		switch {
		case r.base < b:
			return -1
		case r.base > b:
			return 1
		}
		return 0
	})
	if (i > 0 && a.free_[i-1].end() > base) || (i < len(a.free_) && a.free_[i].base < base+size) {
		panic(fmt.Sprintf("vfio: IOVA range [%#x, %#x) freed twice", base, base+size))
	}
	r := iovaRange{base, size}
	lo, hi := i, i
	if i > 0 && a.free_[i-1].end() == base {
		lo--
		r = iovaRange{a.free_[lo].base, r.end() - a.free_[lo].base}
	}
	if i < len(a.free_) && a.free_[i].base == base+size {
		r.size += a.free_[i].size
		hi++
	}
	a.free_ = slices.Replace(a.free_, lo, hi, r)
}

// restrict narrows the free space to the usable spans the kernel reports after another
// group joined the container (its reserved regions cut holes in them), and raises the
// page size to page if that group's IOMMU needs larger pages. It fails, changing
// nothing, if a live mapping (live: base → size) is not wholly inside the new spans.
func (a *iovaAlloc) restrict(page, end uint64, usable []iovaSpan, live map[uint64]uint64) error {
	for base, size := range live {
		in := usable == nil
		for _, u := range usable {
			if base >= u.first && base <= u.last && size-1 <= u.last-base {
				in = true
				break
			}
		}
		if !in {
			return fmt.Errorf("%w: DMA mapping [%#x, %#x) is outside the usable IOVA ranges %#x", ErrReserved, base, base+size, usable)
		}
	}
	allowed := newIOVAAlloc(max(a.page, page), end, usable)
	var free []iovaRange
	for _, f := range a.free_ {
		for _, r := range allowed.free_ {
			lo, hi := max(f.base, r.base), min(f.end(), r.end())
			lo = (lo + allowed.page - 1) &^ (allowed.page - 1) // r is page-aligned: no overflow
			hi &^= allowed.page - 1
			if lo < hi {
				free = append(free, iovaRange{lo, hi - lo})
			}
		}
	}
	a.page, a.free_, a.usable = allowed.page, free, usable
	return nil
}

// reservedRegions parses an IOMMU group's reserved_regions file (one region a line:
// "0x00000000fee00000 0x00000000feefffff msi", first and last address, then the type)
// into the IOVA spans it reserves.
func reservedRegions(b []byte) ([]iovaSpan, error) {
	var out []iovaSpan
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return nil, fmt.Errorf("vfio: reserved region %q", line)
		}
		first, err1 := strconv.ParseUint(f[0], 0, 64)
		last, err2 := strconv.ParseUint(f[1], 0, 64)
		if err1 != nil || err2 != nil || last < first {
			return nil, fmt.Errorf("vfio: reserved region %q", line)
		}
		out = append(out, iovaSpan{first, last})
	}
	return out, nil
}

// usableOutside returns the complement of reserved (any order, may overlap) in the
// 64-bit IOVA space, ascending.
func usableOutside(reserved []iovaSpan) []iovaSpan {
	r := slices.Clone(reserved)
	slices.SortFunc(r, func(x, y iovaSpan) int { return cmp.Compare(x.first, y.first) })
	var out []iovaSpan
	next, done := uint64(0), false // next: the lowest address not yet reserved
	for _, s := range r {
		if done || s.last < next {
			continue
		}
		if s.first > next {
			out = append(out, iovaSpan{next, s.first - 1})
		}
		if s.last == ^uint64(0) {
			done = true
		}
		next = s.last + 1
	}
	if !done {
		out = append(out, iovaSpan{next, ^uint64(0)})
	}
	return out
}
