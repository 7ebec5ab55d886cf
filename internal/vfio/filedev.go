package vfio

import "os"

// NewFilePCI returns a PCI device whose regions (config space at RegionConfig, BARs)
// are parts of the plain file f at their Offset, for tests of drivers without VFIO:
// config space and BARs read, write and mmap as a device's would. It has no IOMMU
// (MapDMA fails with ErrNotSupported) and no interrupts (their ioctls fail). Close
// unmaps the BARs and closes f.
func NewFilePCI(f *os.File, bdf string, regions []Region) *PCI {
	return &PCI{
		Device:    &Device{f: f, BDF: bdf, Regions: regions},
		Container: &Container{maps: make(map[uint64]uint64)},
	}
}
