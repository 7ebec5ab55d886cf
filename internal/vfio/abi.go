package vfio

import "encoding/binary"

// Kernel ABI of include/uapi/linux/vfio.h: _IO(VFIO_TYPE=';', VFIO_BASE=100 + n).
const (
	ioGetAPIVersion       = 0x3B64
	ioCheckExtension      = 0x3B65
	ioSetIOMMU            = 0x3B66
	ioGroupGetStatus      = 0x3B67
	ioGroupSetContainer   = 0x3B68
	ioGroupUnsetContainer = 0x3B69
	ioGroupGetDeviceFD    = 0x3B6A
	ioDeviceGetInfo       = 0x3B6B
	ioDeviceGetRegion     = 0x3B6C
	ioDeviceGetIRQInfo    = 0x3B6D
	ioDeviceSetIRQs       = 0x3B6E
	ioDeviceReset         = 0x3B6F
	ioIOMMUGetInfo        = 0x3B70
	ioIOMMUMapDMA         = 0x3B71
	ioIOMMUUnmapDMA       = 0x3B72

	apiVersion = 0

	groupFlagsViable       = 1 << 0
	groupFlagsContainerSet = 1 << 1

	regionFlagRead  = 1 << 0
	regionFlagWrite = 1 << 1
	regionFlagMmap  = 1 << 2
	regionFlagCaps  = 1 << 3 // VFIO_REGION_INFO_FLAG_CAPS
	regionInfoSize  = 32     // sizeof(struct vfio_region_info)
	capSparseMmap   = 1      // VFIO_REGION_INFO_CAP_SPARSE_MMAP

	irqSetDataNone      = 1 << 0
	irqSetDataEventfd   = 1 << 2
	irqSetActionTrigger = 1 << 5

	dmaMapRead  = 1 << 0
	dmaMapWrite = 1 << 1

	iommuInfoSize = 24     // sizeof(struct vfio_iommu_type1_info)
	iommuInfoCaps = 1 << 1 // VFIO_IOMMU_INFO_CAPS
	capIOVARange  = 1      // VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE
)

// IOMMU types (VFIO_SET_IOMMU arguments).
const (
	IOMMUType1   = 1
	IOMMUType1v2 = 3
	IOMMUNone    = 8 // VFIO_NOIOMMU_IOMMU: no isolation, physical addresses as IOVA
)

// PCI region indexes (VFIO_PCI_*_REGION_INDEX).
const (
	RegionBAR0   = 0
	RegionBAR5   = 5
	RegionROM    = 6
	RegionConfig = 7
)

// PCI interrupt indexes (VFIO_PCI_*_IRQ_INDEX).
const (
	IRQIntx = 0
	IRQMSI  = 1
	IRQMSIX = 2
)

var le = binary.LittleEndian

func u32s(vals ...uint32) []byte {
	b := make([]byte, 4*len(vals))
	for i, v := range vals {
		le.PutUint32(b[4*i:], v)
	}
	return b
}
