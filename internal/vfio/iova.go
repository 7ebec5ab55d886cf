package vfio

import "fmt"

// iovaAlloc hands out IOVA ranges aligned to their size's power of two (capped at
// 1 GiB) so hugepage-backed memory can use large IOMMU pages. Freed ranges are kept on a
// list and reused first-fit. Not safe for concurrent use (Container locks it).
type iovaAlloc struct {
	page, next, end uint64
	free_           []iovaRange
}

type iovaRange struct{ base, size uint64 }

func newIOVAAlloc(page, end uint64) iovaAlloc {
	if page == 0 || page&(page-1) != 0 {
		page = 4096
	}
	// IOVA 0 is left unused so a zero address is never valid DMA.
	return iovaAlloc{page: page, next: 1 << 20, end: end}
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
	if base < a.next || base+size > a.end || base+size < base {
		return 0, ErrIOVAExhausted
	}
	a.next = base + size
	return base, nil
}

func (a *iovaAlloc) free(base, size uint64) {
	a.free_ = append(a.free_, iovaRange{base, size})
}
