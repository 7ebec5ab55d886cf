package pmd

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
)

func TestRingSize(t *testing.T) {
	for _, n := range []int{0, -1, 3, 1000, MaxRingSize + 1, MaxRingSize * 2} {
		if _, err := NewRing[int](n, RingMPMC); !errors.Is(err, ErrRingSize) {
			t.Errorf("NewRing(%d): err %v, want ErrRingSize", n, err)
		}
	}
	for _, n := range []int{1, 2, 1024} {
		r, err := NewRing[int](n, RingSPSC)
		if err != nil || r.Cap() != n {
			t.Errorf("NewRing(%d): %v cap %d", n, err, r.Cap())
		}
	}
}

var ringModes = []struct {
	name  string
	flags RingFlags
}{
	{"SPSC", RingSPSC},
	{"MPSC", RingSingleConsumer},
	{"SPMC", RingSingleProducer},
	{"MPMC", RingMPMC},
}

// TestRingModel drives a ring with random bursts and bulks against a slice model,
// long enough for the free-running indices to wrap many times around the mask.
func TestRingModel(t *testing.T) {
	for _, m := range ringModes {
		t.Run(m.name, func(t *testing.T) {
			r, _ := NewRing[uint32](16, m.flags)
			var model []uint32
			next := uint32(0)
			rng := rand.New(rand.NewPCG(1, 2))
			buf := make([]uint32, 40)
			for step := 0; step < 20000; step++ {
				k := rng.IntN(len(buf))
				bulk := rng.IntN(4) == 0
				if rng.IntN(2) == 0 {
					for i := range buf[:k] {
						buf[i] = next + uint32(i)
					}
					want := min(k, 16-len(model))
					var got int
					if bulk {
						if r.EnqueueBulk(buf[:k]) {
							got = k
						}
						if k > 16-len(model) {
							want = 0
						} else {
							want = k
						}
					} else {
						got = r.Enqueue(buf[:k])
					}
					if got != want {
						t.Fatalf("step %d: enqueue %d (bulk %v) with %d queued: got %d want %d", step, k, bulk, len(model), got, want)
					}
					model = append(model, buf[:got]...)
					next += uint32(got)
				} else {
					want := min(k, len(model))
					var got int
					if bulk {
						if r.DequeueBulk(buf[:k]) {
							got = k
						}
						if k > len(model) {
							want = 0
						} else {
							want = k
						}
					} else {
						got = r.Dequeue(buf[:k])
					}
					if got != want {
						t.Fatalf("step %d: dequeue %d: got %d want %d", step, k, got, want)
					}
					for i := 0; i < got; i++ {
						if buf[i] != model[i] {
							t.Fatalf("step %d: element %d = %d want %d", step, i, buf[i], model[i])
						}
					}
					model = model[got:]
				}
				if r.Len() != len(model) {
					t.Fatalf("step %d: Len %d want %d", step, r.Len(), len(model))
				}
			}
		})
	}
}

// TestRingStress moves sequence-numbered values through each mode with several
// goroutines per multi end; every value must arrive exactly once and, per producer,
// in order. Run it with -race.
func TestRingStress(t *testing.T) {
	perProducer := 200000
	if testing.Short() || raceEnabled {
		perProducer = 50000
	}
	for _, m := range ringModes {
		t.Run(m.name, func(t *testing.T) {
			producers, consumers := 1, 1
			if m.flags&RingSingleProducer == 0 {
				producers = 3
			}
			if m.flags&RingSingleConsumer == 0 {
				consumers = 3
			}
			r, _ := NewRing[uint64](256, m.flags)
			var wg sync.WaitGroup
			for p := 0; p < producers; p++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var buf [32]uint64
					rng := rand.New(rand.NewPCG(uint64(p), 9))
					for i := 0; i < perProducer; {
						k := min(1+rng.IntN(32), perProducer-i)
						for j := range buf[:k] {
							buf[j] = uint64(p)<<32 | uint64(i+j)
						}
						var n int
						if rng.IntN(2) == 0 {
							n = r.Enqueue(buf[:k])
						} else if r.EnqueueBulk(buf[:k]) {
							n = k
						}
						i += n
						if n == 0 {
							runtime.Gosched()
						}
					}
				}()
			}
			total := producers * perProducer
			var mu sync.Mutex
			seen := make([]int, producers) // count per producer
			var cwg sync.WaitGroup
			remaining := int64(total)
			var remMu sync.Mutex
			for c := 0; c < consumers; c++ {
				cwg.Add(1)
				go func() {
					defer cwg.Done()
					last := make([]int64, producers)
					for i := range last {
						last[i] = -1
					}
					var buf [32]uint64
					rng := rand.New(rand.NewPCG(uint64(c), 7))
					for {
						remMu.Lock()
						done := remaining == 0
						remMu.Unlock()
						if done {
							return
						}
						var n int
						k := 1 + rng.IntN(32)
						if rng.IntN(2) == 0 {
							n = r.Dequeue(buf[:k])
						} else if r.DequeueBulk(buf[:k]) {
							n = k
						}
						if n == 0 {
							runtime.Gosched()
							continue
						}
						for _, v := range buf[:n] {
							p, seq := int(v>>32), int64(uint32(v))
							if seq <= last[p] {
								t.Errorf("consumer %d: producer %d value %d after %d", c, p, seq, last[p])
							}
							last[p] = seq
						}
						mu.Lock()
						for _, v := range buf[:n] {
							seen[v>>32]++
						}
						mu.Unlock()
						remMu.Lock()
						remaining -= int64(n)
						remMu.Unlock()
					}
				}()
			}
			wg.Wait()
			cwg.Wait()
			for p, n := range seen {
				if n != perProducer {
					t.Errorf("producer %d: %d values arrived, want %d", p, n, perProducer)
				}
			}
			if r.Len() != 0 {
				t.Errorf("ring not empty: %d", r.Len())
			}
		})
	}
}

func TestRingZeroAlloc(t *testing.T) {
	for _, m := range ringModes {
		r, _ := NewRing[Pkt](1024, m.flags)
		var buf [32]Pkt
		allocs := testing.AllocsPerRun(1000, func() {
			r.Enqueue(buf[:])
			r.Dequeue(buf[:])
			r.EnqueueBulk(buf[:])
			r.DequeueBulk(buf[:])
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per burst, want 0", m.name, allocs)
		}
	}
}

// TestRingBulkLongerThanMax: EnqueueBulk and DequeueBulk are all or nothing, like
// rte_ring's bulk calls, even for a slice longer than MaxRingSize. A burst that long
// is clamped to MaxRingSize; a bulk one must not be, or a ring of MaxRingSize moves
// MaxRingSize elements and still reports that it moved none. Zero-size elements keep
// the rings and slices of this test free of memory.
func TestRingBulkLongerThanMax(t *testing.T) {
	for _, m := range ringModes {
		t.Run(m.name, func(t *testing.T) {
			r, err := NewRing[struct{}](MaxRingSize, m.flags)
			if err != nil {
				t.Fatal(err)
			}
			huge := make([]struct{}, MaxRingSize+1)
			if r.EnqueueBulk(huge) {
				t.Fatal("EnqueueBulk of more than the ring holds succeeded")
			}
			if n := r.Len(); n != 0 {
				t.Fatalf("a refused EnqueueBulk left %d elements in the ring", n)
			}
			if n := r.Enqueue(huge); n != MaxRingSize {
				t.Fatalf("Enqueue took %d, want %d", n, MaxRingSize)
			}
			if r.DequeueBulk(huge) {
				t.Fatal("DequeueBulk of more than the ring holds succeeded")
			}
			if n := r.Len(); n != MaxRingSize {
				t.Fatalf("a refused DequeueBulk took %d elements", MaxRingSize-n)
			}
		})
	}
}
