package vring_test

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/vring"
)

func TestMemory(t *testing.T) {
	a, b, c := make([]byte, 4096), make([]byte, 4096), make([]byte, 4096)
	// a and b adjacent, gap, c.
	m, err := vring.NewMemory(vring.Region{Addr: 0x2000, Host: b, UserAddr: 0x7000_2000},
		vring.Region{Addr: 0x1000, Host: a, UserAddr: 0x7000_1000}, vring.Region{Addr: 0x10000, Host: c})
	if err != nil {
		t.Fatal(err)
	}
	h, err := m.Translate(0x1ff0, 0x20) // crosses a->b: shorter slice
	if err != nil || len(h) != 0x10 || &h[0] != &a[0xff0] {
		t.Fatal(len(h), err)
	}
	if h, err := m.Translate(0x2000, 0x10); err != nil || &h[0] != &b[0] {
		t.Fatal(err)
	}
	if _, err := m.Slice(0x1ff0, 0x20); !errors.Is(err, vring.ErrNotContiguous) {
		t.Fatal(err)
	}
	if err := m.Check(0x1ff0, 0x20); err != nil { // adjacent regions: fine
		t.Fatal(err)
	}
	if err := m.Check(0x2ff0, 0x20); !errors.Is(err, vring.ErrAddress) { // into the gap
		t.Fatal(err)
	}
	if _, err := m.Translate(0x5000, 1); !errors.Is(err, vring.ErrAddress) {
		t.Fatal(err)
	}
	if _, err := m.Translate(^uint64(0), 2); !errors.Is(err, vring.ErrOverflow) {
		t.Fatal(err)
	}
	if err := m.Check(0x1000, ^uint64(0)); !errors.Is(err, vring.ErrOverflow) {
		t.Fatal(err)
	}
	if h, err := m.Translate(0x1000, 0); err != nil || len(h) != 0 {
		t.Fatal(err)
	}
	if _, err := m.Translate(0x3000, 0); !errors.Is(err, vring.ErrAddress) {
		t.Fatal(err) // zero-length at the end of b (unmapped) is refused
	}
	if h, err := m.TranslateUser(0x7000_2010, 16); err != nil || &h[0] != &b[0x10] {
		t.Fatal(err)
	}
	if _, err := m.TranslateUser(0x7000_1ff0, 32); !errors.Is(err, vring.ErrNotContiguous) {
		t.Fatal(err)
	}
	buf := []byte("hello, region boundary")
	if n, err := m.WriteAt(buf, 0x1ff8); n != len(buf) || err != nil {
		t.Fatal(n, err)
	}
	got := make([]byte, len(buf))
	if n, err := m.ReadAt(got, 0x1ff8); n != len(buf) || err != nil || string(got) != string(buf) {
		t.Fatal(n, err, string(got))
	}
	if _, err := vring.NewMemory(vring.Region{Addr: 0x1000, Host: a}, vring.Region{Addr: 0x1800, Host: b}); !errors.Is(err, vring.ErrInvalid) {
		t.Fatal("overlap accepted", err)
	}
	if _, err := vring.NewMemory(vring.Region{Addr: ^uint64(0) - 10, Host: a}); !errors.Is(err, vring.ErrOverflow) {
		t.Fatal("wrapping region accepted", err)
	}
	// Many regions: binary search path.
	var rs []vring.Region
	for i := 0; i < 16; i++ {
		rs = append(rs, vring.Region{Addr: uint64(i) * 0x10000, Host: make([]byte, 0x1000)})
	}
	m, _ = vring.NewMemory(rs...)
	for i := 0; i < 16; i++ {
		if err := m.Check(uint64(i)*0x10000+0xfff, 1); err != nil {
			t.Fatal(i, err)
		}
		if err := m.Check(uint64(i)*0x10000+0x1000, 1); !errors.Is(err, vring.ErrAddress) {
			t.Fatal(i, err)
		}
	}
}

// TestCursor: a cursor answers as Memory.Slice does, for addresses that stay in one
// region, move between regions, fall in gaps, cross region ends or wrap.
func TestCursor(t *testing.T) {
	a, b, c := make([]byte, 4096), make([]byte, 4096), make([]byte, 8192)
	m, err := vring.NewMemory(vring.Region{Addr: 0x1000, Host: a}, vring.Region{Addr: 0x2000, Host: b},
		vring.Region{Addr: 0x10000, Host: c})
	if err != nil {
		t.Fatal(err)
	}
	cur := m.Cursor()
	addrs := []uint64{0, 0xfff, 0x1000, 0x1001, 0x1ff0, 0x1fff, 0x2000, 0x2ff8, 0x3000, 0x9000, 0xffff,
		0x10000, 0x11000, 0x11fff, 0x12000, ^uint64(0) - 8, ^uint64(0)}
	lens := []uint64{0, 1, 8, 16, 0x20, 0x1000, 0x2000, ^uint64(0)}
	check := func(addr, n uint64) {
		t.Helper()
		want, err := m.Slice(addr, n)
		got, ok := cur.Slice(addr, n)
		if ok != (err == nil) {
			t.Fatalf("Slice(%#x, %#x): cursor ok=%v, memory err=%v", addr, n, ok, err)
		}
		if ok && (len(got) != len(want) || cap(got) != len(got) || (n > 0 && &got[0] != &want[0])) {
			t.Fatalf("Slice(%#x, %#x): cursor gives %d bytes, memory %d", addr, n, len(got), len(want))
		}
	}
	// Every pair twice in a row (a hit after a miss), and in an order that keeps
	// moving the cursor between regions.
	for _, addr := range addrs {
		for _, n := range lens {
			check(addr, n)
			check(addr, n)
			check(0x10010, 4)
		}
	}
}
