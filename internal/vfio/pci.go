package vfio

import "fmt"

// PCI capability IDs (PCI Local Bus 3.0 §6.7, PCI Code and ID Assignment §2).
const (
	CapPM     = 0x01
	CapMSI    = 0x05
	CapVendor = 0x09 // virtio's capabilities (VIRTIO 1.2 §4.1.4)
	CapPCIe   = 0x10
	CapMSIX   = 0x11
)

// Cap is one entry of the PCI capability list.
type Cap struct {
	ID     uint8
	Offset int // offset of the capability header in config space
}

// Capabilities walks the standard capability list of config space cfg (at least the
// 64-byte header). The list comes from the device: a pointer outside config space, into
// the header, or a loop ends the walk with an error (the capabilities found so far are
// returned with it).
func Capabilities(cfg []byte) ([]Cap, error) {
	if len(cfg) < 64 {
		return nil, fmt.Errorf("vfio: config space of %d bytes is too short", len(cfg))
	}
	if le.Uint16(cfg[6:])&(1<<4) == 0 { // status: capabilities list
		return nil, nil
	}
	var caps []Cap
	ptr := int(cfg[0x34]) &^ 3
	for ttl := 48; ptr != 0; ttl-- { // at most 48 capabilities fit in 192 bytes
		if ttl == 0 {
			return caps, fmt.Errorf("vfio: capability list loops")
		}
		if ptr < 64 || ptr+2 > len(cfg) {
			return caps, fmt.Errorf("vfio: capability pointer %#x out of range", ptr)
		}
		caps = append(caps, Cap{ID: cfg[ptr], Offset: ptr})
		ptr = int(cfg[ptr+1]) &^ 3
	}
	return caps, nil
}
