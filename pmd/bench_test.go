package pmd

import (
	"runtime"
	"strconv"
	"testing"
)

// Each benchmark op is one packet (one frame or one ring element), so ns/op compares
// directly across the ring, the channel and the pool.

func reportMpps(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

func BenchmarkPool(b *testing.B) {
	p, err := NewPool(PoolOptions{Frames: 8192, Huge: HugeNever})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for _, burst := range []int{1, 32} {
		b.Run("cache/burst="+strconv.Itoa(burst), func(b *testing.B) {
			c := p.NewCache(256)
			buf := make([]Frame, burst)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				n := c.Get(buf)
				c.Put(buf[:n])
			}
			reportMpps(b)
			c.Flush()
		})
		b.Run("shared/burst="+strconv.Itoa(burst), func(b *testing.B) {
			buf := make([]Frame, burst)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				n := p.Get(buf)
				p.Put(buf[:n])
			}
			reportMpps(b)
		})
	}
}

// BenchmarkRing moves packets between goroutines in bursts of 32, as frame handles
// (Frame, 4 bytes: what a DPDK rte_ring of mbuf pointers carries) and as full
// descriptors (Pkt, 20 bytes: handle plus length, offset and metadata). "1core": one
// goroutine enqueues a burst then dequeues it. "2cores": a producer goroutine and the
// consumer run concurrently. The channel rows do the same with a buffered channel of
// the same element type and capacity, one element per send/receive.
func BenchmarkRing(b *testing.B) {
	b.Run("Frame", benchRing[Frame])
	b.Run("Pkt", benchRing[Pkt])
}

func benchRing[T any](b *testing.B) {
	const size, burst = 1024, 32
	modes := []struct {
		name  string
		flags RingFlags
	}{{"SPSC", RingSPSC}, {"MPMC", RingMPMC}}
	for _, m := range modes {
		b.Run(m.name+"/1core", func(b *testing.B) {
			r, _ := NewRing[T](size, m.flags)
			var buf [burst]T
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i += burst {
				r.Enqueue(buf[:])
				r.Dequeue(buf[:])
			}
			reportMpps(b)
		})
		b.Run(m.name+"/2cores", func(b *testing.B) {
			r, _ := NewRing[T](size, m.flags)
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan struct{})
			go func() {
				var buf [burst]T
				for sent := 0; sent < b.N; {
					n := r.Enqueue(buf[:min(burst, b.N-sent)])
					if n == 0 {
						runtime.Gosched()
					}
					sent += n
				}
				close(done)
			}()
			var buf [burst]T
			for got := 0; got < b.N; {
				n := r.Dequeue(buf[:])
				if n == 0 {
					runtime.Gosched()
				}
				got += n
			}
			<-done
			reportMpps(b)
		})
	}
	b.Run("chan/1core", func(b *testing.B) {
		ch := make(chan T, size)
		var buf [burst]T
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i += burst {
			for j := range buf {
				ch <- buf[j]
			}
			for j := range buf {
				buf[j] = <-ch
			}
		}
		reportMpps(b)
	})
	b.Run("chan/2cores", func(b *testing.B) {
		ch := make(chan T, size)
		b.ReportAllocs()
		b.ResetTimer()
		go func() {
			var p T
			for i := 0; i < b.N; i++ {
				ch <- p
			}
		}()
		for i := 0; i < b.N; i++ {
			<-ch
		}
		reportMpps(b)
	})
}
