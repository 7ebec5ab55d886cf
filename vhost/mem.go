package vhost

import (
	"fmt"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/vring"
)

// memSlot is one guest memory region mapped from the front-end's descriptor.
type memSlot struct {
	r memRegion
	m *uds.FdMapping
}

// guestMem is the device's memory table. It is owned by the control goroutine; the
// datapath only sees the immutable vring.Memory built from it, and only while its
// queues run (every queue is stopped before a slot is unmapped).
type guestMem struct {
	slots []memSlot
	mem   *vring.Memory
}

// mapRegion validates r and maps it from fd (vhost-user.rst, "Memory regions").
func mapRegion(r memRegion, fd int) (memSlot, error) {
	if r.Size == 0 {
		return memSlot{}, fmt.Errorf("%w: empty memory region", ErrInvalid)
	}
	if r.GuestAddr+r.Size-1 < r.GuestAddr || r.UserAddr+r.Size-1 < r.UserAddr || r.MmapOffset+r.Size < r.MmapOffset {
		return memSlot{}, fmt.Errorf("%w: memory region %#x+%#x wraps", ErrInvalid, r.GuestAddr, r.Size)
	}
	m, err := uds.MapFd(fd, r.Size, r.MmapOffset)
	if err != nil {
		return memSlot{}, fmt.Errorf("%w: region %#x+%#x: %v", ErrInvalid, r.GuestAddr, r.Size, err)
	}
	return memSlot{r: r, m: m}, nil
}

// checkTotal refuses regions whose sizes add up to more than limit (Options.
// MaxGuestMemory), before anything is mapped: a mapping takes address space for its
// whole size, however sparse the front-end's file.
func checkTotal(limit uint64, rs ...memRegion) error {
	var total uint64
	for _, r := range rs {
		if total+r.Size < total || total+r.Size > limit {
			return fmt.Errorf("%w: guest memory beyond the %#x bytes allowed", ErrInvalid, limit)
		}
		total += r.Size
	}
	return nil
}

// build makes the vring.Memory for slots (checking overlap).
func buildMemory(slots []memSlot) (*vring.Memory, error) {
	if len(slots) == 0 {
		return nil, nil
	}
	regs := make([]vring.Region, len(slots))
	for i, s := range slots {
		regs[i] = vring.Region{Addr: s.r.GuestAddr, UserAddr: s.r.UserAddr, Host: s.m.Mem}
	}
	m, err := vring.NewMemory(regs...)
	if err != nil {
		return nil, fmt.Errorf("%w: memory table: %v", ErrInvalid, err)
	}
	return m, nil
}

func unmapSlots(slots []memSlot) {
	for i := range slots {
		slots[i].m.Unmap()
	}
}

// unmapAll releases every region.
func (g *guestMem) unmapAll() {
	unmapSlots(g.slots)
	g.slots, g.mem = nil, nil
}
