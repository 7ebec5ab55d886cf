//go:build !race

// Not under the race detector: store16's fallback is a plain store racing, by
// design, with the other half's atomic writer.

package vring

import (
	"sync/atomic"
	"testing"
	"time"
	"unsafe"
)

// TestStore16HostileNeighbour: a peer rewriting the other half of store16's
// word without pause (a guest scribbling on the padding after its used ring)
// neither holds store16 in its CAS loop nor loses its own writes.
func TestStore16HostileNeighbour(t *testing.T) {
	words := make([]uint32, 2)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), 8)
	const off = 4 // the field is the low half of words[1] (little-endian)
	stop := make(chan struct{})
	done := make(chan uint32)
	go func() {
		var adds uint32
		for {
			select {
			case <-stop:
				done <- adds
				return
			default:
			}
			for range 64 {
				atomic.AddUint32(&words[1], 1<<16)
				adds++
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	var v uint16
	for i := 0; i < 200000; i++ {
		v = uint16(i)
		store16(b, off, v)
		if got := uint16(atomic.LoadUint32(&words[1])); got != v {
			close(stop)
			<-done
			t.Fatalf("store %d: field reads %d", v, got)
		}
		if time.Now().After(deadline) {
			break
		}
	}
	close(stop)
	adds := <-done
	w := atomic.LoadUint32(&words[1])
	if uint16(w>>16) != uint16(adds) {
		t.Errorf("the neighbour's half is %d after %d increments: a store overwrote it", w>>16, adds)
	}
	if uint16(w) != v {
		t.Errorf("field %d, want %d", uint16(w), v)
	}
}
