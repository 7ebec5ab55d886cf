package vring_test

import (
	"encoding/binary"
	"flag"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/dpkit/dpkit/vring"
)

var exchangeCount = flag.Int("vring.exchange", 0,
	"buffers exchanged by TestConcurrent per layout (0: 10M, 200k with -short; in-order variants at most 1M) and by TestConcurrentSleep per case (0: 500k, 20k with -short or -race)")

// TestConcurrent runs a driver and a device on two goroutines exchanging
// buffers through shared memory. The driver writes a sequence number into
// each readable segment; the device checks it arrives in order and answers
// seq^magic in the writable segment, completing batches in reverse order;
// the driver checks every answer.
func TestConcurrent(t *testing.T) {
	count := 10_000_000
	switch {
	case *exchangeCount > 0:
		count = *exchangeCount
	case testing.Short():
		count = 200_000
	}
	for _, l := range layouts {
		for _, f := range []uint64{vring.FeatureEventIdx, vring.FeatureInOrder} {
			name, cnt := l, count
			if f == vring.FeatureInOrder {
				// The IN_ORDER variant only changes bookkeeping.
				name, cnt = l+"/in-order", min(count, 1_000_000)
			}
			t.Run(name, func(t *testing.T) {
				start := time.Now()
				concurrentExchange(t, newPair(t, l, 256, f), cnt, f&vring.FeatureInOrder != 0)
				t.Logf("%d buffers in %v (race detector: %v)", cnt, time.Since(start), raceEnabled)
			})
		}
	}
}

const magic = 0x0123456789abcdef

func concurrentExchange(t *testing.T, p *pair, count int, inOrderDev bool) {
	n := p.drv.Free()
	base := p.g.Alloc(16*n, 16)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() { // device
		defer wg.Done()
		chains := makeChains(32, 2)
		used := make([]vring.Used, 32)
		var expect uint64
		for expect < uint64(count) {
			k, err := p.dev.Pop(chains)
			if err != nil {
				errc <- err
				return
			}
			if k == 0 {
				runtime.Gosched()
				continue
			}
			for i := range chains[:k] {
				c := &chains[i]
				if len(c.Segs) != 2 {
					errc <- fmt.Errorf("chain %d has %d segs", expect, len(c.Segs))
					return
				}
				in, err1 := p.g.Mem.Slice(c.Segs[0].Addr, 8)
				out, err2 := p.g.Mem.Slice(c.Segs[1].Addr, 8)
				if err1 != nil || err2 != nil || c.Segs[0].Write || !c.Segs[1].Write {
					errc <- fmt.Errorf("bad chain %+v", c)
					return
				}
				seq := binary.LittleEndian.Uint64(in)
				if seq != expect {
					errc <- fmt.Errorf("device got seq %d, want %d", seq, expect)
					return
				}
				expect++
				binary.LittleEndian.PutUint64(out, seq^magic)
				used[i] = c.Used(8)
			}
			if !inOrderDev {
				reversed(chains[:k]) // complete out of order
				for i := range chains[:k] {
					used[i] = chains[i].Used(8)
				}
			}
			if inOrderDev {
				// One used entry for the whole batch (IN_ORDER).
				err = p.dev.(interface{ PushInOrder([]vring.Used) error }).PushInOrder(used[:k])
			} else {
				err = p.dev.Push(used[:k])
			}
			if err != nil {
				errc <- err
				return
			}
		}
	}()
	// Driver on this goroutine.
	slots := make([]int, 0, n) // free buffer slots
	for s := n - 1; s >= 0; s-- {
		slots = append(slots, s)
	}
	slotOf := make([]int, n)
	seqOf := make([]uint64, n)
	done := make([]vring.Used, 64)
	var sent, recv uint64
	for recv < uint64(count) {
		for sent < uint64(count) && p.drv.Free() >= 2 && len(slots) > 0 {
			s := slots[len(slots)-1]
			a := base + uint64(16*s)
			binary.LittleEndian.PutUint64(p.g.Bytes(a, 8), sent)
			id, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 8}, {Addr: a + 8, Len: 8, Write: true}})
			if err != nil {
				t.Fatal(err)
			}
			slots = slots[:len(slots)-1]
			slotOf[id], seqOf[id] = s, sent
			sent++
		}
		p.drv.Publish()
		k, err := p.drv.Collect(done)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range done[:k] {
			s := slotOf[u.ID]
			out := binary.LittleEndian.Uint64(p.g.Bytes(base+uint64(16*s)+8, 8))
			if out != seqOf[u.ID]^magic || u.Len != 8 {
				t.Fatalf("id %d: answer %#x len %d for seq %d", u.ID, out, u.Len, seqOf[u.ID])
			}
			slots = append(slots, s)
			recv++
		}
		if k == 0 {
			select {
			case err := <-errc:
				t.Fatal(err)
			default:
			}
			runtime.Gosched()
		}
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
