package vring

import "testing"

// TestPackedNeedEventModel checks packedNeedEvent (§2.8.10, EVENT_IDX) against a
// naive model on free-running positions, for ring sizes that are not powers of
// two: a notification is due when the event position, taken in either lap of
// its wrap counter's parity, lies among the k positions used since the last
// decision. Internal: packedNeedEvent's wrap arithmetic is what is modelled.
func TestPackedNeedEventModel(t *testing.T) {
	for _, size := range []int{1, 2, 3, 5, 7, 12} {
		for lapNew := 2; lapNew < 6; lapNew++ {
			for newPos := 0; newPos < size; newPos++ {
				aNew := lapNew*size + newPos
				wrapNew := lapNew%2 == 0 // the wrap counter is 1 on lap 0
				for k := 1; k < size; k++ {
					for off := 0; off < size; off++ {
						for _, w := range []bool{false, true} {
							want := false
							for j := 0; j < 8; j++ { // laps 0..7 cover the window
								if (j%2 == 0) != w {
									continue
								}
								e := off + j*size
								if e >= aNew-k && e < aNew {
									want = true
								}
							}
							ev := uint32(offWrap(uint16(off), w)) | uint32(EventDesc)<<16
							got := packedNeedEvent(ev, true, uint16(newPos), wrapNew, k, uint16(size))
							if got != want {
								t.Fatalf("size %d new %d wrap %v k %d off %d w %v: got %v want %v", size, newPos, wrapNew, k, off, w, got, want)
							}
						}
					}
				}
			}
		}
	}
}
