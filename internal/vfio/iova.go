package vfio

import "fmt"

// iovaAlloc hands out IOVA ranges aligned to their size's power of two (capped at
// 1 GiB) so hugepage-backed memory can use large IOMMU pages. Freed ranges are kept on a
// list and reused first-fit. Not safe for concurrent use (Container locks it).
type iovaAlloc struct {
	page, next, end uint64
	free_           []iovaRange
	usable          []iovaSpan // ascending; nil if the kernel reported none
}

type iovaRange struct{ base, size uint64 }

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
	return iovaAlloc{page: page, next: 1 << 20, end: end, usable: usable}
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
		if base+size <= r.base+r.size && base == r.base {
			a.free_[i] = iovaRange{base + size, r.size - size}
			if a.free_[i].size == 0 {
				a.free_ = append(a.free_[:i], a.free_[i+1:]...)
			}
			return base, nil
		}
	}
	base := (a.next + al - 1) &^ (al - 1)
	if base < a.next {
		return 0, ErrIOVAExhausted
	}
	if a.usable != nil {
		fit := false
		for _, u := range a.usable {
			if base < u.first {
				if base = (u.first + al - 1) &^ (al - 1); base < u.first {
					return 0, ErrIOVAExhausted
				}
			}
			if base <= u.last && size-1 <= u.last-base {
				fit = true
				break
			}
		}
		if !fit {
			return 0, ErrIOVAExhausted
		}
	}
	if base+size > a.end || base+size < base {
		return 0, ErrIOVAExhausted
	}
	a.next = base + size
	return base, nil
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

func (a *iovaAlloc) free(base, size uint64) {
	a.free_ = append(a.free_, iovaRange{base, size})
}
