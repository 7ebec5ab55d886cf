package vfio

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
)

// regionInfoReply builds a VFIO_DEVICE_GET_REGION_INFO reply as vfio-pci writes it
// for a BAR with an MSI-X table on kernels before 4.16: the struct, an MSI-X-mappable
// capability (id 3, no body) standing in for any other, then the sparse-mmap areas.
func regionInfoReply(size uint64, areas ...Area) []byte {
	b := make([]byte, regionInfoSize+8+16+16*len(areas))
	le.PutUint32(b[0:], uint32(len(b)))
	le.PutUint32(b[4:], regionFlagRead|regionFlagWrite|regionFlagMmap|regionFlagCaps)
	le.PutUint32(b[8:], 2)
	le.PutUint32(b[12:], regionInfoSize)
	le.PutUint64(b[16:], size)
	le.PutUint64(b[24:], 2<<40)
	c := b[regionInfoSize:]
	le.PutUint16(c[0:], 3)
	le.PutUint16(c[2:], 1)
	le.PutUint32(c[4:], regionInfoSize+8)
	c = c[8:]
	le.PutUint16(c[0:], capSparseMmap)
	le.PutUint16(c[2:], 1)
	le.PutUint32(c[8:], uint32(len(areas)))
	for i, a := range areas {
		le.PutUint64(c[16+16*i:], a.Offset)
		le.PutUint64(c[24+16*i:], a.Size)
	}
	return b
}

// TestRegionSparseMmap: a BAR whose region info carries a sparse-mmap capability may be
// mmapped only in its areas (vfio-pci before 4.16 refused, EINVAL, an mmap that
// overlapped the MSI-X table; some variant and mdev drivers do the same). Before, the
// capability chain was not even requested (argsz 32) and MapRegion mapped the whole
// region, so the virtio-net driver failed to open such a device (found in review).
func TestRegionSparseMmap(t *testing.T) {
	pg := uint64(os.Getpagesize())
	// MSI-X table in the second page of a 4-page BAR; areas given out of order.
	r := regionOf(2, regionInfoReply(4*pg, Area{2 * pg, 2 * pg}, Area{0, pg}))
	want := []Area{{0, pg}, {2 * pg, 2 * pg}}
	if !r.Mmap || !slices.Equal(r.Areas, want) || r.Size != 4*pg || r.Offset != 2<<40 {
		t.Fatalf("region %+v, want mmappable with areas %#x", r, want)
	}
	for _, c := range []struct {
		off, n uint64
		ok     bool
	}{{0, 16, true}, {pg - 4, 4, true}, {pg - 4, 8, false}, {pg, 4, false}, {2 * pg, 2 * pg, true}, {3 * pg, pg + 1, false}, {4 * pg, 1, false}} {
		if got := r.Mappable(c.off, c.n); got != c.ok {
			t.Errorf("Mappable(%#x, %d) = %v, want %v", c.off, c.n, got, c.ok)
		}
	}
	// Areas not on page boundaries are cut to the whole pages inside them.
	if r := regionOf(2, regionInfoReply(4*pg, Area{8, 2*pg - 8}, Area{3*pg + 8, 8})); !slices.Equal(r.Areas, []Area{{pg, pg}}) {
		t.Errorf("unaligned areas became %#x", r.Areas)
	}
	// No capability: the whole region.
	plain := regionInfoReply(4 * pg)[:regionInfoSize]
	le.PutUint32(plain[4:], regionFlagRead|regionFlagWrite|regionFlagMmap)
	if r := regionOf(2, plain); !r.Mmap || r.Areas != nil || !r.Mappable(0, 4*pg) {
		t.Errorf("plain region %+v", r)
	}
	// Malformed chains and capabilities: not mmappable, never a panic.
	loop := regionInfoReply(4*pg, Area{0, pg})
	le.PutUint32(loop[regionInfoSize+4:], regionInfoSize)
	for name, bad := range map[string][]byte{
		"truncated":   regionInfoReply(4*pg, Area{0, pg})[:regionInfoSize+8+16+8],
		"loop":        loop,
		"outside":     regionInfoReply(4*pg, Area{3 * pg, 2 * pg}),
		"wraps":       regionInfoReply(4*pg, Area{pg, ^uint64(0)}),
		"overlapping": regionInfoReply(4*pg, Area{0, 2 * pg}, Area{pg, pg}),
		"none usable": regionInfoReply(4*pg, Area{8, 16}),
	} {
		if r := regionOf(2, bad); r.Mmap || r.Mappable(0, 1) {
			t.Errorf("%s: region %+v is mmappable", name, r)
		}
	}
}

// TestMapRegionSparse maps a sparse region of a regular file standing in for the device
// fd: the areas show the file's pages, the MSI-X page between them is not mapped.
func TestMapRegionSparse(t *testing.T) {
	pg := uint64(os.Getpagesize())
	f, err := os.CreateTemp(t.TempDir(), "bar")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4*pg)
	for p := range uint64(4) {
		data[p*pg] = byte(0xa0 + p)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	d := &Device{f: f, BDF: "test", Regions: []Region{{Index: 0, Size: 4 * pg, Read: true, Write: true, Mmap: true,
		Areas: []Area{{0, pg}, {2 * pg, 2 * pg}}}}}
	defer d.Close()
	m, err := d.MapRegion(0)
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(m)) != 4*pg || m[0] != 0xa0 || m[2*pg] != 0xa2 || m[3*pg] != 0xa3 {
		t.Fatalf("mapped %d bytes, pages start %#x %#x %#x", len(m), m[0], m[2*pg], m[3*pg])
	}
	if perm := mapsPerm(t, &m[pg]); !strings.HasPrefix(perm, "---") {
		t.Errorf("the page outside the areas is mapped %q", perm)
	}
	if perm := mapsPerm(t, &m[0]); !strings.HasPrefix(perm, "rw-s") {
		t.Errorf("an area is mapped %q", perm)
	}
	d.Regions[0].Areas = []Area{{3 * pg, 2 * pg}}
	if _, err := d.MapRegion(0); err == nil {
		t.Error("an area past the region was mapped")
	}
}

// mapsPerm returns the permissions /proc/self/maps gives the mapping holding p.
func mapsPerm(t *testing.T, p *byte) string {
	var addr uintptr
	fmt.Sscanf(fmt.Sprintf("%p", p), "0x%x", &addr)
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		var lo, hi uintptr
		var perm string
		if _, err := fmt.Sscanf(s.Text(), "%x-%x %s", &lo, &hi, &perm); err == nil && lo <= addr && addr < hi {
			return perm
		}
	}
	return ""
}

func FuzzRegionInfo(f *testing.F) {
	pg := uint64(os.Getpagesize())
	f.Add(regionInfoReply(4*pg, Area{2 * pg, 2 * pg}, Area{0, pg}))
	f.Add(regionInfoReply(1<<20, Area{0, 1 << 19}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := regionOf(0, b)
		if r.Areas == nil {
			return
		}
		if !r.Mmap {
			t.Fatalf("areas on a region that is not mmappable: %+v", r)
		}
		for i, a := range r.Areas {
			if a.Size == 0 || a.Offset%pg != 0 || a.Size%pg != 0 || a.Offset > r.Size || a.Size > r.Size-a.Offset ||
				(i > 0 && a.Offset < r.Areas[i-1].Offset+r.Areas[i-1].Size) {
				t.Fatalf("bad areas %#x in region of %#x bytes", r.Areas, r.Size)
			}
		}
	})
}
