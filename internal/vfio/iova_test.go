package vfio

import (
	"errors"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

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

// TestIOVAFreeCoalesces: freed IOVA ranges merge with their free neighbours, so a
// process that maps and unmaps for a long time gets its space back whole. Before, every
// UnmapDMA appended its range to a list that was never merged: after sixteen 4 KiB
// mappings were unmapped, a 64 KiB one no longer fitted in the 64 KiB they had used
// (found in review).
func TestIOVAFreeCoalesces(t *testing.T) {
	const base, span = 1 << 20, 64 << 10
	for _, order := range []string{"ascending", "descending", "interleaved"} {
		a := newIOVAAlloc(4096, base+span, nil)
		var got []uint64
		for range span / 4096 {
			iova, err := a.alloc(4096)
			if err != nil {
				t.Fatalf("%s: alloc 4 KiB: %v", order, err)
			}
			got = append(got, iova)
		}
		switch order {
		case "descending":
			slices.Reverse(got)
		case "interleaved":
			var even, odd []uint64
			for i, v := range got {
				if i%2 == 0 {
					even = append(even, v)
				} else {
					odd = append(odd, v)
				}
			}
			got = append(even, odd...)
		}
		for _, iova := range got {
			a.free(iova, 4096)
		}
		if iova, err := a.alloc(span); err != nil || iova != base {
			t.Errorf("%s: after freeing every page, alloc 64 KiB = %#x, %v; want %#x", order, iova, err, base)
		}
	}
}

// TestIOVAModel maps and unmaps at random against a page-by-page model: no two live
// ranges overlap, every range is aligned and inside the usable spans, and once all are
// freed the allocator is back to its first state.
func TestIOVAModel(t *testing.T) {
	usable := []iovaSpan{{0, 0x7fffff}, {0x900000, 0x1ffffff}}
	const end = 0x2000000
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 20 {
		a := newIOVAAlloc(4096, end, usable)
		fresh := slices.Clone(a.free_)
		live := map[uint64]uint64{}
		for range 2000 {
			if len(live) > 0 && rng.IntN(2) == 0 {
				for iova, size := range live { // random enough: map order
					a.free(iova, size)
					delete(live, iova)
					break
				}
				continue
			}
			size := uint64(1+rng.IntN(64)) * 4096
			iova, err := a.alloc(size)
			if err != nil {
				continue
			}
			if iova%min(a.align(size), 1<<30) != 0 {
				t.Fatalf("round %d: %#x bytes at %#x: misaligned", round, size, iova)
			}
			inside := false
			for _, u := range usable {
				inside = inside || (iova >= u.first && iova+size-1 <= u.last)
			}
			if !inside || iova < 1<<20 {
				t.Fatalf("round %d: [%#x, %#x) outside the usable spans", round, iova, iova+size)
			}
			for o, s := range live {
				if iova < o+s && o < iova+size {
					t.Fatalf("round %d: [%#x, %#x) overlaps live [%#x, %#x)", round, iova, iova+size, o, o+s)
				}
			}
			live[iova] = size
		}
		for iova, size := range live {
			a.free(iova, size)
		}
		if !slices.Equal(a.free_, fresh) {
			t.Fatalf("round %d: all freed, %d free ranges (first %#x), want %#x", round, len(a.free_), a.free_[:min(len(a.free_), 4)], fresh)
		}
	}
}

// TestIOVARestrictOnAttach: a second group attached to a container may bring reserved
// regions of its own; the usable IOVA ranges are read again after its attach and the
// allocator narrowed to them. Before, they were read for the first group only, so the
// allocator went on handing out IOVAs in the new group's reserved region (an RMRR, say),
// whose mappings type1 refuses with EINVAL (found in review).
func TestIOVARestrictOnAttach(t *testing.T) {
	const rmrrFirst, rmrrLast = 0x3000000, 0x3ffffff // the second group's RMRR
	first := []iovaSpan{{0, 0xfedfffff}, {0xfef00000, 1<<48 - 1}}
	both := []iovaSpan{{0, rmrrFirst - 1}, {rmrrLast + 1, 0xfedfffff}, {0xfef00000, 1<<48 - 1}}
	a := newIOVAAlloc(4096, 1<<39, first)
	live := map[uint64]uint64{}
	for range 8 { // 8 × 2 MiB: up to 0x1200000
		iova, err := a.alloc(2 << 20)
		if err != nil {
			t.Fatal(err)
		}
		live[iova] = 2 << 20
	}
	if err := a.restrict(4096, 1<<39, both, live); err != nil {
		t.Fatalf("restrict: %v", err)
	}
	for range 64 { // 64 × 1 MiB runs through where the RMRR is
		iova, err := a.alloc(1 << 20)
		if err != nil {
			t.Fatal(err)
		}
		if iova <= rmrrLast && iova+(1<<20)-1 >= rmrrFirst {
			t.Fatalf("[%#x, %#x) is in the second group's reserved [%#x, %#x]", iova, iova+1<<20, rmrrFirst, rmrrLast)
		}
		live[iova] = 1 << 20
	}

	// A group whose reserved region covers a live mapping is refused and changes
	// nothing.
	before := slices.Clone(a.free_)
	some := slices.Min(slices.Collect(maps.Keys(live))) // below the RMRR
	worse := append([]iovaSpan{{0, some - 1}, {some + 4096, rmrrFirst - 1}}, both[1:]...)
	if err := a.restrict(4096, 1<<39, worse, live); !errors.Is(err, ErrReserved) {
		t.Errorf("restrict over the live mapping at %#x: %v, want ErrReserved", some, err)
	}
	if !slices.Equal(a.free_, before) || !slices.Equal(a.usable, both) {
		t.Error("a refused restrict changed the allocator")
	}

	// A larger IOMMU page: free ranges are trimmed to whole pages of it.
	b := newIOVAAlloc(4096, 1<<39, first)
	x, _ := b.alloc(4096)
	if err := b.restrict(2<<20, 1<<39, first, map[uint64]uint64{x: 4096}); err != nil {
		t.Fatal(err)
	}
	for _, r := range b.free_ {
		if r.base%(2<<20) != 0 || r.size%(2<<20) != 0 {
			t.Errorf("free range %#x not in 2 MiB pages", r)
		}
	}
}

// TestGroupReservedSysfs: on kernels that do not report usable IOVA ranges
// (VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE is 5.4), they are what the reserved_regions of
// every attached group leave.
func TestGroupReservedSysfs(t *testing.T) {
	dir := t.TempDir()
	old := sysIOMMUGroups
	sysIOMMUGroups = dir
	defer func() { sysIOMMUGroups = old }()
	for id, text := range map[string]string{
		"7": "0x00000000fee00000 0x00000000feefffff msi\n",
		"9": "0x0000000003000000 0x0000000003ffffff direct\n0x00000000fee00000 0x00000000feefffff msi\n",
		"4": "0x1000 garbage\n",
	} {
		if err := os.MkdirAll(filepath.Join(dir, id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, id, "reserved_regions"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	resv := append(groupReserved(7), groupReserved(9)...)
	got := usableOutside(resv)
	want := []iovaSpan{{0, 0x2ffffff}, {0x4000000, 0xfedfffff}, {0xfef00000, ^uint64(0)}}
	if !slices.Equal(got, want) {
		t.Errorf("usable %#x, want %#x", got, want)
	}
	if r := groupReserved(4); r != nil {
		t.Errorf("malformed reserved_regions gave %#x", r)
	}
	if r := groupReserved(5); r != nil {
		t.Errorf("missing reserved_regions gave %#x", r)
	}
	if got := usableOutside([]iovaSpan{{0, 0xfff}, {0x800, ^uint64(0)}}); got != nil {
		t.Errorf("all reserved: usable %#x", got)
	}
}
