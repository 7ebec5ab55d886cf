package pmd_test

import (
	"context"
	"fmt"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// A pool, a cache per worker, and a software port pair: what one end transmits the
// other receives, frames and all.
func Example() {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 1024, Huge: pmd.HugeNever})
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer b.Close()
	defer a.Close()
	cache := pool.NewCache(0)
	defer cache.Flush()

	var out pmd.Batch
	out.Grow(cache.Alloc(out.Room()[:4]))
	for i := range out.Pkts() {
		pk := &out.Pkts()[i]
		pool.Append(pk, 64)
		copy(pool.Data(pk), "ping")
	}
	out.Tx(a)
	cache.Free(out.Pkts()) // whatever a did not accept is still ours
	out.Reset()

	var in pmd.Batch
	in.Rx(b)
	for _, pk := range in.Pkts() {
		fmt.Printf("%d bytes: %s\n", pk.Len, pool.Data(&pk)[:4])
	}
	cache.Free(in.Pkts())
	// Output:
	// 64 bytes: ping
	// 64 bytes: ping
	// 64 bytes: ping
	// 64 bytes: ping
}

func ExampleParseCPUSet() {
	for _, s := range []string{"0xf", "1,2,4", "0-3,8,10-11", "1-3,2"} {
		set, err := pmd.ParseCPUSet(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: %d CPUs %s\n", s, set.Count(), set)
	}
	// Output:
	// 0xf: 4 CPUs 0-3
	// 1,2,4: 3 CPUs 1-2,4
	// 0-3,8,10-11: 7 CPUs 0-3,8,10-11
	// pmd: bad CPU set: CPU 2 given twice (in "2")
}

// A worker polls a port on a pinned thread until its context ends.
func ExampleWorker() {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer b.Close()
	defer a.Close()

	cache := pool.NewCache(0)
	var batch pmd.Batch
	forwarded := 0
	w, err := pmd.NewWorker(pmd.WorkerOptions{Name: "fwd", CPUs: pmd.CPUSetOf(0), Idle: pmd.IdleAdaptive},
		func() int {
			n := batch.Rx(b)
			forwarded += n
			cache.Free(batch.Pkts()) // a real worker would process and transmit
			batch.Reset()
			return n
		})
	if err != nil {
		panic(err)
	}
	var pkts [8]pmd.Pkt
	n := cache.Alloc(pkts[:])
	a.Tx(pkts[:n])

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	w.Run(ctx)
	cache.Flush()
	fmt.Println("forwarded", forwarded, "packets")
	// Output: forwarded 8 packets
}
