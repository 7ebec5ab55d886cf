package afxdp

import "testing"

// TestRingOffsetWrap: ring offsets near 2^64 from the kernel are refused with an
// error; before, off+4 wrapped past the bounds check and the slicing panicked (found
// in review).
func TestRingOffsetWrap(t *testing.T) {
	mem := make([]byte, 256)
	for _, off := range []RingOffsets{
		{Producer: 1<<64 - 4, Consumer: 8, Flags: 16, Desc: 64},
		{Producer: 0, Consumer: 1<<64 - 4, Flags: 16, Desc: 64},
		{Producer: 0, Consumer: 8, Flags: 1<<64 - 4, Desc: 64},
	} {
		func() {
			defer func() {
				if r := recover(); r != nil {
					t.Errorf("offsets %+v: panic %v (want an error)", off, r)
				}
			}()
			if _, err := NewConsRing[Desc](mem, off, 8); err == nil {
				t.Errorf("offsets %+v accepted", off)
			}
		}()
	}
}
