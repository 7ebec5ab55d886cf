package icount

import (
	"fmt"
	"math"
)

// spinIters is the length of the calibration loop: 2×spinIters instructions.
const spinIters = 10_000_000

// Calibrate measures how many counter ticks one instruction takes by running a loop
// of known length, and returns an error unless it is 1 within 1% (the guest does not
// run under -icount shift=0, or the counter is not the instruction count).
func Calibrate() (float64, error) {
	best := math.Inf(1)
	for range 3 { // the least of three: an interrupt can only add instructions
		t0 := Counter()
		spin(spinIters)
		d := float64(Counter()-t0) / (2 * spinIters)
		best = min(best, d)
	}
	if math.Abs(best-1) > 0.01 {
		return best, fmt.Errorf("icount: %.4f counter ticks per instruction, want 1: not a guest under -icount shift=0", best)
	}
	return best, nil
}

// Tally sums the instructions of measured calls and the packets they handled.
type Tally struct {
	Insns, Packets, Calls uint64
}

// Add records one call that took insns instructions for pkts packets.
func (t *Tally) Add(insns uint64, pkts int) {
	t.Insns += insns
	t.Packets += uint64(pkts)
	t.Calls++
}

// PerPacket returns instructions per packet.
func (t *Tally) PerPacket() float64 {
	if t.Packets == 0 {
		return 0
	}
	return float64(t.Insns) / float64(t.Packets)
}
