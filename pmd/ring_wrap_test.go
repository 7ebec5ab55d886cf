package pmd

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// setIndices puts an empty ring's free-running indices at v, as if 2^32-ish elements
// had passed through it.
func (r *Ring[T]) setIndices(v uint32) {
	r.prod.head.Store(v)
	r.prod.tail.Store(v)
	r.cons.head.Store(v)
	r.cons.tail.Store(v)
	r.prod.cached, r.cons.cached = v, v
}

// TestRingIndexWrap: bursts and bulks at exact full and empty stay right while the
// 32-bit indices wrap past 2^32, in every mode, and Len stays within [0, Cap].
func TestRingIndexWrap(t *testing.T) {
	for _, m := range ringModes {
		t.Run(m.name, func(t *testing.T) {
			for _, size := range []int{1, 8} {
				r, _ := NewRing[uint32](size, m.flags)
				r.setIndices(^uint32(0) - 2)
				var model []uint32
				next := uint32(0)
				rng := rand.New(rand.NewPCG(3, 4))
				buf := make([]uint32, 2*size+1)
				for step := 0; step < 4000; step++ {
					k := rng.IntN(len(buf))
					bulk := rng.IntN(3) == 0
					if rng.IntN(2) == 0 {
						for i := range buf[:k] {
							buf[i] = next + uint32(i)
						}
						want := min(k, size-len(model))
						got := 0
						if bulk {
							if r.EnqueueBulk(buf[:k]) {
								got = k
							}
							if want < k {
								want = 0
							}
						} else {
							got = r.Enqueue(buf[:k])
						}
						if got != want {
							t.Fatalf("size %d step %d: enqueue %d (bulk %v) with %d queued: %d, want %d", size, step, k, bulk, len(model), got, want)
						}
						model = append(model, buf[:got]...)
						next += uint32(got)
					} else {
						want := min(k, len(model))
						got := 0
						if bulk {
							if r.DequeueBulk(buf[:k]) {
								got = k
							}
							if want < k {
								want = 0
							}
						} else {
							got = r.Dequeue(buf[:k])
						}
						if got != want {
							t.Fatalf("size %d step %d: dequeue %d (bulk %v) with %d queued: %d, want %d", size, step, k, bulk, len(model), got, want)
						}
						for i := range buf[:got] {
							if buf[i] != model[i] {
								t.Fatalf("size %d step %d: element %d = %d, want %d", size, step, i, buf[i], model[i])
							}
						}
						model = model[got:]
					}
					if r.Len() != len(model) {
						t.Fatalf("size %d step %d: Len %d, want %d", size, step, r.Len(), len(model))
					}
				}
				if r.prod.tail.Load() > 1<<20 {
					t.Fatalf("size %d: the indices did not wrap (tail %d)", size, r.prod.tail.Load())
				}
			}
		})
	}
}

// TestRingLenConcurrent: Len, read while producers and consumers run across the
// 2^32 wrap, is never negative nor above Cap.
func TestRingLenConcurrent(t *testing.T) {
	r, _ := NewRing[uint64](64, RingMPMC)
	r.setIndices(^uint32(0) - 1000)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var buf [16]uint64
			for i := 0; i < 20000; i++ {
				if g%2 == 0 {
					r.Enqueue(buf[:1+i%16])
				} else {
					r.Dequeue(buf[:1+i%16])
				}
			}
		}()
	}
	bad := make(chan int, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(bad)
				return
			default:
			}
			if n := r.Len(); n < 0 || n > r.Cap() {
				select {
				case bad <- n:
				default:
				}
			}
		}
	}()
	wg.Wait()
	close(stop)
	for n := range bad {
		t.Fatalf("Len %d outside [0, %d]", n, r.Cap())
	}
}
