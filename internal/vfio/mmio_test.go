package vfio

import "testing"

// TestMMIOChecksLength: a window cut from a BAR has capacity past its end; an access
// there must fail rather than reach the registers that follow the window. Found in
// review (the accessors checked against the capacity).
func TestMMIOChecksLength(t *testing.T) {
	bar := make([]byte, 16)
	w := MMIO(bar[:8])
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"Read8", func() { w.Read8(8) }},
		{"Write8", func() { w.Write8(8, 1) }},
		{"Read16", func() { w.Read16(7) }},
		{"Write16", func() { w.Write16(7, 1) }},
		{"Read32", func() { w.Read32(6) }},
		{"Write32", func() { w.Write32(5, 1) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s past the window's length did not panic", c.name)
				}
			}()
			c.f()
		}()
	}
	for i := range bar {
		if bar[i] != 0 {
			t.Fatalf("byte %d after the window was written", i)
		}
	}
	w.Write32(4, 0x01020304)
	if w.Read32(4) != 0x01020304 || w.Read16(6) != 0x0102 || w.Read8(7) != 1 {
		t.Fatal("accesses inside the window are wrong")
	}
}
