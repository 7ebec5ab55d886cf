package pmd

import (
	"errors"
	"strings"
	"testing"
)

func TestParseCPUSet(t *testing.T) {
	good := []struct{ in, want string }{
		{"0", "0"},
		{"0xf", "0-3"},
		{"0XF", "0-3"},
		{"0x1F0", "4-8"},
		{"0x0001", "0"},
		{"0x8000000000000000", "63"},
		{"0x10000000000000000", "64"},
		{"1,2,4", "1-2,4"},
		{"1-4", "1-4"},
		{"0-3,8,10-11", "0-3,8,10-11"},
		{" 2 , 5-6 ", "2,5-6"},
		{"7-7", "7"},
		{"1023", "1023"},
		{"1024,8191", "1024,8191"},
	}
	for _, g := range good {
		s, err := ParseCPUSet(g.in)
		if err != nil {
			t.Errorf("ParseCPUSet(%q): %v", g.in, err)
			continue
		}
		if s.String() != g.want {
			t.Errorf("ParseCPUSet(%q) = %s, want %s", g.in, s, g.want)
		}
		// The canonical form parses back to the same set.
		back, err := ParseCPUSet(s.String())
		if err != nil || back != s {
			t.Errorf("round trip of %q: %v %v", g.in, back, err)
		}
	}
	bad := []struct{ in, mention string }{
		{"", "empty"},
		{"   ", "empty"},
		{"abc", "abc"},
		{"0x", "0x"},
		{"0xg", "0xg"},
		{"0x0", "no CPU"},
		{"1,,2", "empty item"},
		{"1,", "empty item"},
		{"4-1", "backwards"},
		{"1-", "1-"},
		{"-1", "-1"},
		{"1-2-3", "1-2-3"},
		{"8192", "out of range"},
		{"99999999", "99999999"},
		{"1-3,2", "CPU 2 given twice"},
		{"0,0", "CPU 0 given twice"},
		{"0xf,5", "cannot be mixed"},
		{"1,0x2", "cannot be mixed"},
		{"+1", "+1"},
		{"0x" + strings.Repeat("f", 2049), "beyond"},
	}
	for _, b := range bad {
		_, err := ParseCPUSet(b.in)
		if !errors.Is(err, ErrCPUSet) {
			t.Errorf("ParseCPUSet(%q): err %v, want ErrCPUSet", b.in, err)
			continue
		}
		if !strings.Contains(err.Error(), b.mention) {
			t.Errorf("ParseCPUSet(%q): error %q does not mention %q", b.in, err, b.mention)
		}
	}
}

func TestCPUSetOps(t *testing.T) {
	a, b := CPUSetOf(0, 1, 2), CPUSetOf(2, 3)
	if !a.Overlaps(b) || a.Overlaps(CPUSetOf(5)) {
		t.Fatal("Overlaps")
	}
	if a.Count() != 3 || !a.Has(1) || a.Has(3) || a.Has(-1) || a.Has(5000) {
		t.Fatal("Count/Has")
	}
	if got := a.CPUs(); len(got) != 3 || got[2] != 2 {
		t.Fatalf("CPUs %v", got)
	}
	if err := CPUSetOf(0).CheckAvailable(); err != nil {
		t.Fatalf("CPU 0 unavailable: %v", err)
	}
	err := CPUSetOf(1000).CheckAvailable()
	if !errors.Is(err, ErrCPUSet) || !strings.Contains(err.Error(), "1000") {
		t.Fatalf("CPU 1000 available? %v", err)
	}
}

func FuzzParseCPUSet(f *testing.F) {
	for _, s := range []string{"0xf", "1,2,4", "1-4", "0-3,8,10-11", "", "0x", "4-1", "1-3,2", "0x1F0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseCPUSet(in)
		if err != nil {
			if !errors.Is(err, ErrCPUSet) {
				t.Fatalf("error %v does not wrap ErrCPUSet", err)
			}
			return
		}
		if s.Count() == 0 {
			t.Fatalf("%q parsed to an empty set", in)
		}
		back, err := ParseCPUSet(s.String())
		if err != nil || back != s {
			t.Fatalf("%q -> %s does not round-trip: %v", in, s, err)
		}
	})
}
