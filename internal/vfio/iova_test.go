package vfio

import "testing"

// iommuInfoReply builds a VFIO_IOMMU_GET_INFO reply as the type1 driver writes it: the
// struct, then its capability chain (DMA-available, then the IOVA ranges).
func iommuInfoReply(spans ...iovaSpan) []byte {
	b := make([]byte, iommuInfoSize+16+16+16*len(spans))
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint32(b[4:], 1|iommuInfoCaps)
	le.PutUint64(b[8:], 4096|2<<20|1<<30)
	le.PutUint32(b[16:], iommuInfoSize)
	c := b[iommuInfoSize:]
	le.PutUint16(c[0:], 3) // VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL
	le.PutUint16(c[2:], 1)
	le.PutUint32(c[4:], iommuInfoSize+16)
	le.PutUint32(c[8:], 65535)
	c = c[16:]
	le.PutUint16(c[0:], capIOVARange)
	le.PutUint16(c[2:], 1)
	le.PutUint32(c[8:], uint32(len(spans)))
	for i, s := range spans {
		le.PutUint64(c[16+16*i:], s.first)
		le.PutUint64(c[24+16*i:], s.last)
	}
	return b
}

// TestIOVAAvoidsReserved: the type1 IOMMU refuses (EINVAL) a mapping that touches a
// reserved region, which it reports as gaps between the usable IOVA ranges of
// VFIO_IOMMU_GET_INFO. Before, the allocator ignored them: on x86 the third 1 GiB
// mapping landed on [3 GiB, 4 GiB), across the MSI window at 0xfee00000, and failed;
// freed back, the same range was handed out again for every later one (found in review).
func TestIOVAAvoidsReserved(t *testing.T) {
	const msiFirst, msiLast = 0xfee00000, 0xfeefffff
	b := iommuInfoReply(iovaSpan{0, msiFirst - 1}, iovaSpan{msiLast + 1, 1<<48 - 1})
	spans := iovaRanges(b)
	if len(spans) != 2 || spans[0].last != msiFirst-1 || spans[1].first != msiLast+1 {
		t.Fatalf("iova ranges %#x", spans)
	}
	a := newIOVAAlloc(4096, 1<<39, spans)
	for _, size := range []uint64{1 << 30, 1 << 30, 1 << 30, 1 << 30, 2 << 20, 4096} {
		iova, err := a.alloc(size)
		if err != nil {
			t.Fatalf("alloc %#x: %v", size, err)
		}
		if iova <= msiLast && iova+size-1 >= msiFirst {
			t.Errorf("[%#x, %#x) overlaps the reserved [%#x, %#x]", iova, iova+size, msiFirst, msiLast)
		}
	}
	// A hole just below the next free IOVA pushes an allocation past it.
	a = newIOVAAlloc(4096, 1<<39, []iovaSpan{{0, 0x1fffff}, {0x400000, 1<<39 - 1}})
	if iova, err := a.alloc(2 << 20); err != nil || iova != 0x400000 {
		t.Errorf("alloc past a hole: %#x %v, want 0x400000", iova, err)
	}
	// Nothing fits: the space is exhausted, not overlapped.
	a = newIOVAAlloc(4096, 1<<39, []iovaSpan{{0, 0x1fffff}})
	if _, err := a.alloc(4 << 20); err != ErrIOVAExhausted {
		t.Errorf("alloc larger than every range: %v", err)
	}
	// Malformed chains are ignored (no ranges), never read out of bounds.
	for _, bad := range [][]byte{
		b[:iommuInfoSize+20],
		append(append([]byte{}, b[:16]...), 0xff, 0xff, 0, 0, 0, 0, 0, 0),
		iommuInfoReply(iovaSpan{0x2000, 0x1000}),
		iommuInfoReply(iovaSpan{0, 0x2000}, iovaSpan{0x1000, 0x3000}),
	} {
		if s := iovaRanges(bad); s != nil {
			t.Errorf("malformed reply gave %#x", s)
		}
	}
	loop := iommuInfoReply()
	le.PutUint32(loop[iommuInfoSize+4:], iommuInfoSize)
	if s := iovaRanges(loop); s != nil {
		t.Errorf("looping chain gave %#x", s)
	}
}

func FuzzIOVARanges(f *testing.F) {
	f.Add(iommuInfoReply(iovaSpan{0, 0xfedfffff}, iovaSpan{0xfef00000, 1<<39 - 1}))
	f.Fuzz(func(t *testing.T, b []byte) {
		spans := iovaRanges(b)
		for i, s := range spans {
			if s.last < s.first || (i > 0 && s.first <= spans[i-1].last) {
				t.Fatalf("%#x", spans)
			}
		}
	})
}
