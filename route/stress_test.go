package route

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
)

var stressUpdates = flag.Int("route.stress", 0, "route updates in TestStressConcurrentUpdates (0: 100k, 10k under -race, 20k with -short; the acceptance run uses 1000000)")

// TestStressConcurrentUpdates runs lookups on one goroutine while another
// applies route updates in small batches, then checks every sampled lookup:
// the answer must be the longest-prefix match of the address in some state
// the table was in while the lookup ran, where states exist only at batch
// boundaries (so a half-applied batch is a failure too).
func TestStressConcurrentUpdates(t *testing.T) {
	total := *stressUpdates
	if total == 0 {
		total = 100_000
		if raceEnabled {
			total = 10_000
		}
		if testing.Short() {
			total = 20_000
		}
	}
	for _, v6 := range []bool{false, true} {
		n := total
		if v6 {
			n = total / 4
		}
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) { stress(t, v6, n) })
	}
}

type stressSample struct {
	site   uint16
	result NextHopID
	from   uint32 // batch sequence before the lookup
	to     uint32 // batch sequence after the lookup (+1 is also possible)
}

func stress(t *testing.T, v6 bool, updates int) {
	rng := rand.New(rand.NewPCG(42, 9))
	tb, err := New(Options{MaxVRFs: 1, MaxNextHops: 8192})
	if err != nil {
		t.Fatal(err)
	}
	// Sites are probe addresses; each has a chain of nested prefixes.
	// Churn prefixes elsewhere change the structure around them.
	const nsites = 64
	chain4 := []int{6, 12, 16, 20, 24, 26, 30, 32}
	chain6 := []int{10, 16, 32, 40, 48, 56, 64, 96, 128}
	chain := chain4
	if v6 {
		chain = chain6
	}
	sites := make([]netip.Addr, nsites)
	var pool []netip.Prefix
	covering := make([][]int, nsites) // pool indices of prefixes containing the site
	for i := range sites {
		sites[i] = randAddr(rng, v6)
		for _, l := range chain {
			covering[i] = append(covering[i], len(pool))
			pool = append(pool, netip.PrefixFrom(sites[i], l).Masked())
		}
	}
	for len(pool) < 3000 {
		p := randPrefix(rng, v6)
		if p.Bits() < 8 {
			continue
		}
		pool = append(pool, p)
	}
	// dedupe: a prefix may appear twice; keep ids unique by prefix
	idx := map[netip.Prefix]int{}
	for i, p := range pool {
		if j, ok := idx[p]; ok {
			pool[i] = pool[j]
		} else {
			idx[p] = i
		}
	}
	// recompute covering with all pool prefixes (churn may cover sites too)
	for s := range sites {
		covering[s] = covering[s][:0]
		for p, i := range idx {
			if p.Contains(sites[s]) {
				covering[s] = append(covering[s], i)
			}
		}
	}
	nh := make([]NextHopID, len(pool)) // next hop i+1 is prefix i's identity
	owner := map[NextHopID]int{}
	for p, i := range idx {
		id, err := tb.AddNextHop(NextHop{Kind: KindLocal, Port: uint32(i)})
		if err != nil {
			t.Fatal(err)
		}
		nh[i] = id
		owner[id] = i
		_ = p
	}
	// history[i]: batch sequence numbers at which prefix i toggled; it
	// starts absent.
	history := make([][]uint32, len(pool))
	present := make([]bool, len(pool))

	var seq atomic.Uint32
	var stop atomic.Bool
	samples := make([]stressSample, 1<<19)
	var nsamples int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := rand.New(rand.NewPCG(3, 3))
		var a16 [16]byte
		for i := 0; !stop.Load(); i++ {
			s := r.IntN(nsites)
			from := seq.Load()
			var got NextHopID
			if v6 {
				a16 = sites[s].As16()
				got = tb.Lookup6(0, &a16)
			} else {
				a := sites[s].As4()
				got = tb.Lookup4(0, uint32(a[0])<<24|uint32(a[1])<<16|uint32(a[2])<<8|uint32(a[3]))
			}
			to := seq.Load()
			samples[nsamples%len(samples)] = stressSample{uint16(s), got, from, to}
			nsamples++
			if i%256 == 0 {
				runtime.Gosched()
			}
		}
	}()
	var b Batch
	done := 0
	for batchNo := uint32(1); done < updates; batchNo++ {
		b.Reset()
		touched := map[int]bool{}
		for k := 1 + rng.IntN(8); k > 0 && done < updates; k-- {
			i := idx[pool[rng.IntN(len(pool))]]
			if touched[i] {
				continue
			}
			touched[i] = true
			if present[i] {
				b.Delete(0, pool[i])
			} else {
				b.Insert(0, pool[i], nh[i])
			}
			present[i] = !present[i]
			history[i] = append(history[i], batchNo)
			done++
		}
		if err := tb.Apply(&b); err != nil {
			t.Fatal(err)
		}
		seq.Store(batchNo) // after publication: state batchNo is visible
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d updates, %d lookups sampled", updates, nsamples)
	if nsamples == 0 {
		t.Fatal("reader made no lookups")
	}
	presentAt := func(i int, s uint32) bool {
		h := history[i]
		// number of toggles at or before s
		return sort.Search(len(h), func(k int) bool { return h[k] > s })%2 == 1
	}
	lpmAt := func(site int, s uint32) NextHopID {
		best, bl := NoRoute, -1
		for _, i := range covering[site] {
			if pool[i].Bits() > bl && presentAt(i, s) {
				best, bl = nh[i], pool[i].Bits()
			}
		}
		return best
	}
	m := min(nsamples, len(samples))
	bad := 0
	for _, sm := range samples[:m] {
		if sm.result != NoRoute {
			o, ok := owner[sm.result]
			if !ok || !pool[o].Contains(sites[sm.site]) {
				t.Fatalf("site %v got next hop %d of a prefix not containing it", sites[sm.site], sm.result)
			}
		}
		ok := false
		// states from..to+1; only states where a covering prefix changed matter
		cands := []uint32{sm.from}
		for _, i := range covering[sm.site] {
			h := history[i]
			k := sort.Search(len(h), func(k int) bool { return h[k] > sm.from })
			for ; k < len(h) && h[k] <= sm.to+1; k++ {
				cands = append(cands, h[k])
			}
		}
		for _, s := range cands {
			if lpmAt(int(sm.site), s) == sm.result {
				ok = true
				break
			}
		}
		if !ok {
			bad++
			if bad < 5 {
				t.Errorf("site %v: lookup between batches %d and %d returned %d, never valid then",
					sites[sm.site], sm.from, sm.to, sm.result)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d sampled lookups were invalid", bad, m)
	}
}
