package pmd

import (
	"errors"
	"fmt"
	"math/bits"
	"strconv"
	"strings"

	"github.com/dpkit/dpkit/internal/affinity"
)

// MaxCPUs is the highest CPU count a CPUSet can name.
const MaxCPUs = affinity.MaxCPUs

// ErrCPUSet is wrapped by every CPU-set parse or check error.
var ErrCPUSet = errors.New("pmd: bad CPU set")

// CPUSet is a set of CPU numbers below MaxCPUs. The zero value is the empty set.
type CPUSet struct{ m affinity.Mask }

// CPUSetOf returns the set of the given CPUs; numbers out of range are ignored.
func CPUSetOf(cpus ...int) CPUSet {
	var s CPUSet
	for _, c := range cpus {
		if c >= 0 && c < MaxCPUs {
			s.m[c/64] |= 1 << (c % 64)
		}
	}
	return s
}

// ParseCPUSet reads a CPU set written the ways DPDK and the Contrail vRouter accept:
//
//	a hex mask       0xf, 0x1F0   (bit i is CPU i; must stand alone)
//	a list           1,2,4
//	ranges           1-4
//	a mix            0-3,8,10-11
//
// Spaces around items are allowed. Empty input, garbage, reversed ranges, CPUs of
// MaxCPUs or more, and a CPU given twice (overlap) are errors that wrap ErrCPUSet and
// quote the offending part. Whether the machine has the CPUs is a separate check,
// CheckAvailable.
func ParseCPUSet(s string) (CPUSet, error) {
	var set CPUSet
	in := strings.TrimSpace(s)
	if in == "" {
		return set, fmt.Errorf("%w: empty", ErrCPUSet)
	}
	if len(in) > 2 && (in[:2] == "0x" || in[:2] == "0X") {
		if strings.ContainsAny(in, ",-") {
			return CPUSet{}, fmt.Errorf("%w: hex mask %q cannot be mixed with a list", ErrCPUSet, in)
		}
		return parseMask(in)
	}
	for _, item := range strings.Split(in, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			return CPUSet{}, fmt.Errorf("%w: empty item in %q", ErrCPUSet, s)
		}
		if strings.HasPrefix(item, "0x") || strings.HasPrefix(item, "0X") {
			return CPUSet{}, fmt.Errorf("%w: hex mask %q cannot be mixed with a list", ErrCPUSet, item)
		}
		lo, hi := item, item
		if i := strings.IndexByte(item, '-'); i >= 0 {
			lo, hi = strings.TrimSpace(item[:i]), strings.TrimSpace(item[i+1:])
		}
		a, err := parseCPU(lo, item)
		if err != nil {
			return CPUSet{}, err
		}
		b, err := parseCPU(hi, item)
		if err != nil {
			return CPUSet{}, err
		}
		if b < a {
			return CPUSet{}, fmt.Errorf("%w: range %q runs backwards", ErrCPUSet, item)
		}
		for c := a; c <= b; c++ {
			if set.Has(c) {
				return CPUSet{}, fmt.Errorf("%w: CPU %d given twice (in %q)", ErrCPUSet, c, item)
			}
			set.m[c/64] |= 1 << (c % 64)
		}
	}
	return set, nil
}

func parseCPU(num, item string) (int, error) {
	if num == "" || len(num) > 6 {
		return 0, fmt.Errorf("%w: %q is not a CPU number or range", ErrCPUSet, item)
	}
	for _, r := range num {
		if r < '0' || r > '9' {
			return 0, fmt.Errorf("%w: %q is not a CPU number or range", ErrCPUSet, item)
		}
	}
	c, err := strconv.Atoi(num)
	if err != nil || c >= MaxCPUs {
		return 0, fmt.Errorf("%w: CPU %s out of range 0..%d", ErrCPUSet, num, MaxCPUs-1)
	}
	return c, nil
}

func parseMask(in string) (CPUSet, error) {
	var set CPUSet
	hex := strings.TrimLeft(in[2:], "0")
	if len(hex) > MaxCPUs/4 {
		return set, fmt.Errorf("%w: mask %q names CPUs beyond %d", ErrCPUSet, in, MaxCPUs-1)
	}
	for i := 0; i < len(hex); i++ {
		d := hex[len(hex)-1-i] // nibble i holds CPUs 4i..4i+3
		var v uint64
		switch {
		case d >= '0' && d <= '9':
			v = uint64(d - '0')
		case d >= 'a' && d <= 'f':
			v = uint64(d-'a') + 10
		case d >= 'A' && d <= 'F':
			v = uint64(d-'A') + 10
		default:
			return CPUSet{}, fmt.Errorf("%w: %q is not a hex mask", ErrCPUSet, in)
		}
		set.m[(4*i)/64] |= v << ((4 * i) % 64)
	}
	if set.Count() == 0 {
		return set, fmt.Errorf("%w: mask %q names no CPU", ErrCPUSet, in)
	}
	return set, nil
}

// Has reports whether cpu is in the set.
func (s CPUSet) Has(cpu int) bool {
	return cpu >= 0 && cpu < MaxCPUs && s.m[cpu/64]&(1<<(cpu%64)) != 0
}

// Count returns the number of CPUs in the set.
func (s CPUSet) Count() int {
	n := 0
	for _, w := range s.m {
		n += bits.OnesCount64(w)
	}
	return n
}

// CPUs returns the CPU numbers in ascending order.
func (s CPUSet) CPUs() []int {
	var out []int
	for c := 0; c < MaxCPUs; c++ {
		if s.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// Overlaps reports whether s and o share a CPU.
func (s CPUSet) Overlaps(o CPUSet) bool {
	for i := range s.m {
		if s.m[i]&o.m[i] != 0 {
			return true
		}
	}
	return false
}

// String writes the set as a list with ranges, e.g. "0-3,8,10-11"; "" for empty.
func (s CPUSet) String() string {
	var b strings.Builder
	for c := 0; c < MaxCPUs; c++ {
		if !s.Has(c) {
			continue
		}
		end := c
		for end+1 < MaxCPUs && s.Has(end+1) {
			end++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(c))
		if end > c {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(end))
		}
		c = end
	}
	return b.String()
}

// CheckAvailable reports, wrapping ErrCPUSet, CPUs of the set that this process may not
// run on (not present, offline, or outside its cgroup cpuset or affinity).
func (s CPUSet) CheckAvailable() error {
	m, err := affinity.Process()
	if err != nil {
		return err
	}
	avail := CPUSet{m: m}
	var missing CPUSet
	for i := range s.m {
		missing.m[i] = s.m[i] &^ avail.m[i]
	}
	if missing.Count() > 0 {
		return fmt.Errorf("%w: CPUs %s are not available (this process may use %s)", ErrCPUSet, missing, avail)
	}
	return nil
}

// PinProcess confines the whole process to s: every thread it has now, and every
// thread the Go runtime starts later (see affinity.SetProcessThreads), so the
// garbage collector, timers, blocking system calls and control goroutines all stay
// on s. Call it before starting pinned Workers; each then narrows its own locked
// thread to its CPUs, which may lie outside s. This is how a program keeps its
// control work off the forwarding CPUs, as DPDK's control threads stay off the
// lcores' CPUs. The set must be non-empty and available (CheckAvailable).
func PinProcess(s CPUSet) error {
	if s.Count() == 0 {
		return fmt.Errorf("%w: empty", ErrCPUSet)
	}
	if err := s.CheckAvailable(); err != nil {
		return err
	}
	return affinity.SetProcessThreads(&s.m)
}
