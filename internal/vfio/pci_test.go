package vfio

import (
	"errors"
	"testing"
)

func cfgWithCaps(chain ...[2]byte) []byte {
	cfg := make([]byte, 256)
	le.PutUint16(cfg[6:], 1<<4)
	off := 0x40
	cfg[0x34] = byte(off)
	for i, c := range chain {
		cfg[off] = c[0]
		next := 0
		if i+1 < len(chain) {
			next = off + 0x10
		}
		cfg[off+1] = byte(next)
		off = next
	}
	return cfg
}

func TestCapabilities(t *testing.T) {
	caps, err := Capabilities(cfgWithCaps([2]byte{CapMSIX}, [2]byte{CapVendor}, [2]byte{CapPCIe}))
	if err != nil || len(caps) != 3 || caps[0] != (Cap{CapMSIX, 0x40}) || caps[2] != (Cap{CapPCIe, 0x60}) {
		t.Fatalf("%+v %v", caps, err)
	}
	loop := cfgWithCaps([2]byte{CapMSIX})
	loop[0x41] = 0x40
	if _, err := Capabilities(loop); err == nil {
		t.Error("loop not detected")
	}
	bad := cfgWithCaps([2]byte{CapMSIX})
	bad[0x41] = 0x10 // into the header
	if _, err := Capabilities(bad); err == nil {
		t.Error("pointer into the header accepted")
	}
	if _, err := Capabilities(make([]byte, 10)); err == nil {
		t.Error("short config accepted")
	}
	none := cfgWithCaps()
	le.PutUint16(none[6:], 0)
	if caps, err := Capabilities(none); err != nil || caps != nil {
		t.Errorf("no cap list: %v %v", caps, err)
	}
}

func FuzzCapabilities(f *testing.F) {
	f.Add(cfgWithCaps([2]byte{CapMSIX}, [2]byte{CapVendor}))
	f.Fuzz(func(t *testing.T, cfg []byte) {
		caps, _ := Capabilities(cfg)
		if len(caps) > 48 {
			t.Fatalf("%d capabilities", len(caps))
		}
		for _, c := range caps {
			if c.Offset < 64 || c.Offset+2 > len(cfg) {
				t.Fatalf("cap at %#x", c.Offset)
			}
		}
	})
}

func TestIOVAAlloc(t *testing.T) {
	a := newIOVAAlloc(4096, 1<<32, nil)
	x, err := a.alloc(2 << 20)
	if err != nil || x%(2<<20) != 0 || x == 0 {
		t.Fatalf("%#x %v", x, err)
	}
	y, err := a.alloc(4096)
	if err != nil || (y < x+2<<20 && y+4096 > x) { // first fit may place it below x

		t.Fatalf("overlap %#x %#x", x, y)
	}
	if _, err := a.alloc(100); err == nil {
		t.Error("unaligned size accepted")
	}
	a.free(x, 2<<20)
	z, err := a.alloc(2 << 20)
	if err != nil || z != x {
		t.Errorf("freed range not reused: %#x", z)
	}
	if _, err := a.alloc(1 << 33); !errors.Is(err, ErrIOVAExhausted) {
		t.Errorf("huge alloc: %v", err)
	}
}
