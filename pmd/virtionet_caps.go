package pmd

import (
	"fmt"

	"github.com/dpkit/dpkit/internal/vfio"
)

// virtioCap is one virtio PCI capability (struct virtio_pci_cap, VIRTIO 1.2 §4.1.4).
type virtioCap struct {
	typ            uint8
	bar            uint8
	offset, length uint32
}

type virtioCaps struct {
	common, notify, isr, device virtioCap
	notifyMul                   uint32
}

// capAlign is the alignment of each structure's offset in its BAR, by capability type.
var capAlign = [5]uint32{virtioPCICapCommon: 4, virtioPCICapNotify: 2, virtioPCICapISR: 1, virtioPCICapDevice: 4}

// parseVirtioCaps finds the common, notify, ISR and device configuration structures in
// config space cfg (§4.1.4). Config space comes from the device: every field is
// checked, and the first capability of each type wins (§4.1.4.1: the driver uses the
// first one it can).
func parseVirtioCaps(cfg []byte) (virtioCaps, error) {
	var out virtioCaps
	caps, err := vfio.Capabilities(cfg)
	if err != nil {
		return out, fmt.Errorf("%w: %w", ErrNotVirtioNet, err)
	}
	var seen [5]bool
	for _, c := range caps {
		if c.ID != vfio.CapVendor {
			continue
		}
		o := c.Offset
		if o+16 > len(cfg) || cfg[o+2] < 16 {
			continue
		}
		vc := virtioCap{typ: cfg[o+3], bar: cfg[o+4], offset: le32(cfg[o+8:]), length: le32(cfg[o+12:])}
		if vc.typ < virtioPCICapCommon || vc.typ > virtioPCICapDevice || seen[vc.typ] || vc.bar > 5 {
			continue
		}
		if uint64(vc.offset)+uint64(vc.length) > 1<<32 {
			continue
		}
		// The structure's alignment (§4.1.4.3, §4.1.4.4, §4.1.4.6): the BAR is
		// mapped page-aligned, so a misaligned offset would make every register
		// access unaligned device memory (a SIGBUS on arm64).
		if vc.offset&(capAlign[vc.typ]-1) != 0 {
			continue
		}
		switch vc.typ {
		case virtioPCICapCommon:
			out.common = vc
		case virtioPCICapNotify:
			if o+20 > len(cfg) || cfg[o+2] < 20 {
				continue
			}
			out.notify = vc
			out.notifyMul = le32(cfg[o+16:])
		case virtioPCICapISR:
			out.isr = vc
		case virtioPCICapDevice:
			out.device = vc
		}
		seen[vc.typ] = true
	}
	if !seen[virtioPCICapCommon] || !seen[virtioPCICapNotify] || !seen[virtioPCICapDevice] {
		return out, fmt.Errorf("%w: missing common, notify or device capability", ErrNotVirtioNet)
	}
	return out, nil
}

// capWindow returns the registers of capability c in its BAR, m.
func capWindow(m vfio.MMIO, c virtioCap) (vfio.MMIO, error) {
	// The end in 64 bits: offset+length may be 2^32, which 32 bits wrap to 0.
	end := uint64(c.offset) + uint64(c.length)
	if end > uint64(len(m)) {
		return nil, fmt.Errorf("%w: capability type %d [%#x+%#x) outside BAR %d of %#x bytes",
			ErrNotVirtioNet, c.typ, c.offset, c.length, c.bar, len(m))
	}
	// A full slice expression: accesses past the capability's window fail
	// instead of reaching the registers after it.
	return m[c.offset:end:end], nil
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
