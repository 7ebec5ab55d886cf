package pmd

import (
	"sync"
	"testing"
)

// TestCounter: one writer adds while readers load; readers never see the count go
// back, and the final count is the sum (run with -race too).
func TestCounter(t *testing.T) {
	var c Counter
	const n = 100_000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := uint64(0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				v := c.Load()
				if v < last || v%3 != 0 {
					t.Errorf("read %d after %d", v, last)
					return
				}
				last = v
			}
		}()
	}
	for range n {
		c.Add(3)
	}
	close(stop)
	wg.Wait()
	if c.Load() != 3*n {
		t.Fatalf("count %d, want %d", c.Load(), 3*n)
	}
	if a := testing.AllocsPerRun(100, func() { c.Add(1) }); a != 0 {
		t.Fatalf("Add allocates %v", a)
	}
}
