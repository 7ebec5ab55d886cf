package vring_test

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/vring"
)

// TestConcurrentSleep runs a driver and a device that both go to sleep whenever
// they have nothing to do, as a guest driver waiting for interrupts and a back-end
// waiting for kicks do. Each side arms its notification, checks once more, and
// only then waits; the other side signals only when NeedNotify or Publish says so.
// A missed store-load ordering on either side shows up as a lost wake-up: both
// asleep with work outstanding, and the test times out.
func TestConcurrentSleep(t *testing.T) {
	// A reordering shows up rarely: with the device's fence removed, one lost
	// interrupt in about 3M buffers here. -vring.exchange raises the count.
	count := 500_000
	switch {
	case *exchangeCount > 0:
		count = *exchangeCount
	case testing.Short() || raceEnabled:
		count = 20_000
	}
	for _, c := range []struct {
		layout string
		feat   uint64
		direct bool
	}{
		{"split", 0, false},
		{"split", vring.FeatureEventIdx, false},
		{"packed", 0, false},
		{"packed", vring.FeatureEventIdx, false},
		{"packed", 0, true},
		{"packed", vring.FeatureEventIdx, true},
	} {
		name := fmt.Sprintf("%s/event-idx=%v/direct=%v", c.layout, c.feat != 0, c.direct)
		t.Run(name, func(t *testing.T) {
			sleepExchange(t, newPair(t, c.layout, 64, c.feat), count, c.direct)
		})
	}
}

func sleepExchange(t *testing.T, p *pair, count int, direct bool) {
	const wait = 5 * time.Second
	n := p.drv.Free()
	base := p.g.Alloc(16*n, 16)
	kick := make(chan struct{}, 1) // driver → device
	irq := make(chan struct{}, 1)  // device → driver
	signal := func(c chan struct{}) {
		select {
		case c <- struct{}{}:
		default:
		}
	}
	stop := make(chan struct{})
	var devSleeps atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Add(1)
	go func() { // device
		defer wg.Done()
		chains := makeChains(8, 1)
		used := make([]vring.Used, 8)
		var seq uint64
		for seq < uint64(count) {
			k := 0
			if direct {
				dev := p.dev.(*vring.PackedDevice)
				for ; k < 8; k++ {
					addr, _, _, ok := dev.PeekDirect()
					if !ok {
						break
					}
					b, err := p.g.Mem.Slice(addr, 8)
					if err != nil {
						errc <- err
						return
					}
					binary.LittleEndian.PutUint64(b, seq^magic)
					seq++
					if err := dev.UseDirect(8); err != nil {
						errc <- err
						return
					}
				}
			} else {
				var err error
				if k, err = p.dev.Pop(chains); err != nil {
					errc <- err
					return
				}
				for i := range chains[:k] {
					b, err := p.g.Mem.Slice(chains[i].Segs[0].Addr, 8)
					if err != nil {
						errc <- err
						return
					}
					binary.LittleEndian.PutUint64(b, seq^magic)
					seq++
					used[i] = chains[i].Used(8)
				}
				if err := p.dev.Push(used[:k]); err != nil {
					errc <- err
					return
				}
			}
			if p.dev.NeedNotify() {
				signal(irq)
			}
			if k > 0 {
				continue
			}
			if p.dev.EnableNotify() {
				p.dev.DisableNotify()
				continue
			}
			devSleeps.Add(1)
			select {
			case <-kick:
			case <-stop:
				return
			case <-time.After(wait):
				errc <- fmt.Errorf("device asleep for %v at buffer %d with kicks armed: a lost kick", wait, seq)
				return
			}
			p.dev.DisableNotify()
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	slotOf := make([]int, n)
	free := make([]int, 0, n)
	for s := n - 1; s >= 0; s-- {
		free = append(free, s)
	}
	done := make([]vring.Used, 64)
	p.drv.DisableInterrupts()
	var sent, recv, drvSleeps int
	for recv < count {
		select {
		case err := <-errc:
			t.Fatal(err)
		default:
		}
		// Small batches, so both sides run dry and sleep often.
		for k := 0; k < 1+recv%5 && len(free) > 0 && sent < count; k++ {
			s := free[len(free)-1]
			id, err := p.drv.Add([]vring.Seg{{Addr: base + uint64(16*s), Len: 16, Write: true}})
			if err != nil {
				t.Fatal(err)
			}
			free = free[:len(free)-1]
			slotOf[id] = s
			sent++
		}
		if p.drv.Publish() {
			signal(kick)
		}
		k, err := p.drv.Collect(done)
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range done[:k] {
			s := slotOf[u.ID]
			got := binary.LittleEndian.Uint64(p.g.Bytes(base+uint64(16*s), 8))
			if got != uint64(recv)^magic || u.Len != 8 {
				t.Fatalf("buffer %d: value %#x len %d", recv, got^magic, u.Len)
			}
			free = append(free, s)
			recv++
		}
		// Sleep with a few buffers still out, so the wake-up must come from
		// the device; keep adding only while fewer than 1-3 are out.
		if k > 0 || (sent-recv < 1+recv%3 && len(free) > 0 && sent < count) {
			continue
		}
		drvSleeps++
		if p.drv.EnableInterrupts() {
			p.drv.DisableInterrupts()
			continue
		}
		select {
		case <-irq:
		case err := <-errc:
			t.Fatal(err)
		case <-time.After(wait):
			t.Fatalf("driver asleep for %v at buffer %d of %d sent with interrupts armed: a lost interrupt", wait, recv, sent)
		}
		p.drv.DisableInterrupts()
	}
	t.Logf("%d buffers; the driver armed interrupts and waited %d times, the device %d", count, drvSleeps, devSleeps.Load())
	if drvSleeps < count/100 || devSleeps.Load() < int64(count/100) {
		t.Errorf("too few waits to test wake-ups: driver %d, device %d", drvSleeps, devSleeps.Load())
	}
}
