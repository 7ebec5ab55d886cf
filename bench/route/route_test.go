package routebench

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dpkit/dpkit/route"
	"github.com/gaissmai/bart"
)

// Table sizes: the full Internet-size tables.
const (
	n4      = 1 << 20
	n6      = 200_000
	nLookup = 1 << 20 // distinct random lookup addresses, far beyond cache
)

type fixture struct {
	ps    []netip.Prefix
	addrs []netip.Addr
	a4    []uint32
	a6    [][16]byte
	dp    *route.Table
	nhs   []route.NextHopID
	dpMem uint64
	bt    *bart.Table[route.NextHopID]
	btMem uint64
	bf    *bart.Fast[route.NextHopID]
	bfMem uint64
}

var (
	fix4, fix6 *fixture
	once4      sync.Once
	once6      sync.Once
)

func heap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

func build(tb testing.TB, v6 bool) *fixture {
	f := &fixture{}
	if v6 {
		f.ps = Routes6(n6, 1)
	} else {
		f.ps = Routes4(n4, 1)
	}
	f.addrs = Addrs(f.ps, nLookup, 2)
	for _, a := range f.addrs {
		if v6 {
			f.a6 = append(f.a6, a.As16())
		} else {
			b := a.As4()
			f.a4 = append(f.a4, binary.BigEndian.Uint32(b[:]))
		}
	}
	var err error
	h0 := heap()
	f.dp, err = route.New(route.Options{MaxVRFs: 1, MaxNextHops: 1024})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range 1000 {
		id, err := f.dp.AddNextHop(route.NextHop{Kind: route.KindLocal, Port: uint32(i)})
		if err != nil {
			tb.Fatal(err)
		}
		f.nhs = append(f.nhs, id)
	}
	var b route.Batch
	for i, p := range f.ps {
		b.Insert(0, p, f.nhs[i%len(f.nhs)])
	}
	if err := f.dp.Apply(&b); err != nil {
		tb.Fatal(err)
	}
	b = route.Batch{}
	f.dpMem = heap() - h0
	h0 = heap()
	f.bt = new(bart.Table[route.NextHopID])
	for i, p := range f.ps {
		f.bt.Insert(p, f.nhs[i%len(f.nhs)])
	}
	f.btMem = heap() - h0
	h0 = heap()
	f.bf = new(bart.Fast[route.NextHopID])
	for i, p := range f.ps {
		f.bf.Insert(p, f.nhs[i%len(f.nhs)])
	}
	f.bfMem = heap() - h0
	// every implementation must agree on every lookup address
	for i, a := range f.addrs[:1<<16] {
		want := f.dp.Lookup(0, a)
		got, _ := f.bt.Lookup(a)
		gf, _ := f.bf.Lookup(a)
		if got != want || gf != want || want == route.NoRoute {
			tb.Fatalf("address %d %v: dpkit %d bart %d bart.Fast %d", i, a, want, got, gf)
		}
	}
	return f
}

func get(tb testing.TB, v6 bool) *fixture {
	if v6 {
		once6.Do(func() { fix6 = build(tb, true) })
		return fix6
	}
	once4.Do(func() { fix4 = build(tb, false) })
	return fix4
}

func perLookup(b *testing.B, n int) {
	el := b.Elapsed()
	b.ReportMetric(float64(el.Nanoseconds())/float64(b.N*n), "ns/lookup")
	b.ReportMetric(float64(b.N*n)/el.Seconds()/1e6, "Mlookups/s")
}

var sink route.NextHopID

func BenchmarkLookup(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "ipv4"
		if v6 {
			fam = "ipv6"
		}
		f := get(b, v6)
		mask := nLookup - 1
		b.Run(fam+"/dpkit/single", func(b *testing.B) {
			b.ReportAllocs()
			var s route.NextHopID
			for i := 0; b.Loop(); i++ {
				if v6 {
					s += f.dp.Lookup6(0, &f.a6[i&mask])
				} else {
					s += f.dp.Lookup4(0, f.a4[i&mask])
				}
			}
			sink = s
			perLookup(b, 1)
		})
		b.Run(fam+"/dpkit/bulk32", func(b *testing.B) {
			b.ReportAllocs()
			out := make([]route.NextHopID, 32)
			for i := 0; b.Loop(); i++ {
				o := (i * 32) & mask
				if v6 {
					f.dp.LookupBatch6(0, f.a6[o:o+32], out)
				} else {
					f.dp.LookupBatch4(0, f.a4[o:o+32], out)
				}
			}
			sink = out[0]
			perLookup(b, 32)
		})
		for _, bt := range []struct {
			name string
			look func(netip.Addr) (route.NextHopID, bool)
		}{{"bart", f.bt.Lookup}, {"bart.Fast", f.bf.Lookup}} {
			b.Run(fam+"/"+bt.name+"/single", func(b *testing.B) {
				b.ReportAllocs()
				var s route.NextHopID
				for i := 0; b.Loop(); i++ {
					v, _ := bt.look(f.addrs[i&mask])
					s += v
				}
				sink = s
				perLookup(b, 1)
			})
			b.Run(fam+"/"+bt.name+"/bulk32", func(b *testing.B) {
				b.ReportAllocs()
				out := make([]route.NextHopID, 32)
				for i := 0; b.Loop(); i++ {
					o := (i * 32) & mask
					for j, a := range f.addrs[o : o+32] {
						out[j], _ = bt.look(a)
					}
				}
				sink = out[0]
				perLookup(b, 32)
			})
		}
	}
}

// BenchmarkUpdate measures insert+delete of routes absent from the full
// table (each op is one route change; single = one Apply per change,
// batch1024 = 1024 changes per Apply), and bart's Insert/Delete.
func BenchmarkUpdate(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "ipv4"
		if v6 {
			fam = "ipv6"
		}
		f := get(b, v6)
		// fresh prefixes from another seed, not in the table
		var extra []netip.Prefix
		have := map[netip.Prefix]bool{}
		for _, p := range f.ps {
			have[p] = true
		}
		var cand []netip.Prefix
		if v6 {
			cand = Routes6(20000, 77)
		} else {
			cand = Routes4(20000, 77)
		}
		for _, p := range cand {
			if !have[p] {
				extra = append(extra, p)
			}
		}
		extra = extra[:8192]
		for _, bs := range []int{1, 1024} {
			b.Run(fmt.Sprintf("%s/dpkit/batch%d", fam, bs), func(b *testing.B) {
				b.ReportAllocs()
				var bt route.Batch
				ops := 0
				for b.Loop() {
					n, err := updateStep(f.dp, &bt, extra, f.nhs, bs, ops)
					if err != nil {
						b.Fatal(err)
					}
					ops += n
				}
				b.StopTimer()
				if err := restoreUpdates(f.dp, &bt, extra, ops); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops), "ns/route")
			})
		}
		b.Run(fam+"/bart/single", func(b *testing.B) {
			b.ReportAllocs()
			ops := 0
			for b.Loop() {
				p := extra[ops%len(extra)]
				if (ops/len(extra))%2 == 0 {
					f.bt.Insert(p, 1)
				} else {
					f.bt.Delete(p)
				}
				ops++
			}
			b.StopTimer()
			for _, p := range extra {
				f.bt.Delete(p)
			}
			b.StartTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops), "ns/route")
		})
	}
}

// updateStep applies the next change batch of BenchmarkUpdate's dpkit rows: up to bs
// changes from extra starting at change number ops, inserts on even passes over extra
// and deletes on odd ones, never crossing a pass. It returns how many it applied.
func updateStep(t *route.Table, bt *route.Batch, extra []netip.Prefix, nhs []route.NextHopID, bs, ops int) (int, error) {
	bt.Reset()
	k := ops % len(extra)
	for j := 0; j < bs; j++ {
		p := extra[(k+j)%len(extra)]
		if (ops/len(extra))%2 == 0 {
			bt.Insert(0, p, nhs[j%len(nhs)])
		} else {
			bt.Delete(0, p)
		}
		if (k+j+1)%len(extra) == 0 {
			break
		}
	}
	return bt.Len(), t.Apply(bt)
}

// restoreUpdates deletes what ops changes of updateStep left in the table, leaving it
// as built for the next row or run: in an insert pass (even) the routes inserted so
// far, extra[:r]; in a delete pass (odd) those not yet deleted, extra[r:].
func restoreUpdates(t *route.Table, bt *route.Batch, extra []netip.Prefix, ops int) error {
	bt.Reset()
	r := ops % len(extra)
	left := extra[:r]
	if (ops/len(extra))%2 == 1 {
		left = extra[r:]
	}
	for _, p := range left {
		bt.Delete(0, p)
	}
	if bt.Len() == 0 {
		return nil
	}
	return t.Apply(bt)
}

// TestUpdateRestores runs BenchmarkUpdate's dpkit change sequence on a small table,
// stopping after various numbers of changes, and checks restoreUpdates leaves the
// table as built: later rows and -count runs must not start from leftover routes.
func TestUpdateRestores(t *testing.T) {
	base := Routes4(1000, 1)
	var extra []netip.Prefix
	have := map[netip.Prefix]bool{}
	for _, p := range base {
		have[p] = true
	}
	for _, p := range Routes4(200, 77) {
		if !have[p] && len(extra) < 40 {
			extra = append(extra, p)
		}
	}
	for _, bs := range []int{1, 7} {
		for _, stop := range []int{0, 1, 13, 40, 41, 79, 80, 95} {
			tb, err := route.New(route.Options{MaxVRFs: 1, MaxNextHops: 16})
			if err != nil {
				t.Fatal(err)
			}
			nh, err := tb.AddNextHop(route.NextHop{Kind: route.KindLocal, Port: 1})
			if err != nil {
				t.Fatal(err)
			}
			nhs := []route.NextHopID{nh}
			var bt route.Batch
			for _, p := range base {
				bt.Insert(0, p, nh)
			}
			if err := tb.Apply(&bt); err != nil {
				t.Fatal(err)
			}
			ops := 0
			for ops < stop {
				n, err := updateStep(tb, &bt, extra, nhs, bs, ops)
				if err != nil {
					t.Fatalf("bs %d after %d changes: %v", bs, ops, err)
				}
				ops += n
			}
			if err := restoreUpdates(tb, &bt, extra, ops); err != nil {
				t.Errorf("bs %d, %d changes: restore: %v", bs, ops, err)
			}
			for _, p := range extra {
				// A fresh delete of an extra route succeeds only if it was left behind.
				if err := tb.Delete(0, p); err == nil {
					t.Errorf("bs %d, %d changes: %v left in the table", bs, ops, p)
				}
			}
		}
	}
}

// TestReportMemory prints bytes per route of each structure and the time
// to load the full table (run with -run Memory -v; skipped in -short).
func TestReportMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds full-size tables")
	}
	for _, v6 := range []bool{false, true} {
		t0 := time.Now()
		f := get(t, v6)
		n := len(f.ps)
		st := f.dp.Stats()
		t.Logf("v6=%v routes=%d (fixture %v): dpkit %.1f B/route (heap; Stats says %d+%d B), bart %.1f B/route, bart.Fast %.1f B/route",
			v6, n, time.Since(t0).Round(time.Millisecond), float64(f.dpMem)/float64(n), st.Bytes4, st.Bytes6,
			float64(f.btMem)/float64(n), float64(f.bfMem)/float64(n))
	}
}
