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
