// Package vfio is dpkit's VFIO plumbing for userspace PCI drivers: container, group and
// device fds, the type1 IOMMU (no-IOMMU mode where the kernel offers it), region
// info, BAR mmap and pread/pwrite (I/O-port BARs, config space), the PCI capability
// walk, DMA map/unmap with IOVA allocation, MSI-X routing to eventfds, and binding a
// device to vfio-pci and back to its kernel driver.
//
//	Bind(bdf, "vfio-pci")        driver_override + unbind + drivers_probe
//	Open(bdf) → PCI{Container, Group, Device}
//	  Config / Capabilities      PCI config space (region 7)
//	  MapRegion(bar)             device registers (driver does fixed-width MMIO;
//	                             only Region.Areas when the kernel maps a BAR sparsely)
//	  Container.MapDMA(mem)      pool memory → IOVA the device may read and write
//	  SetIRQs(IRQMSIX, ...)      vectors → eventfds (interrupt mode)
//	... driver runs; to stop: reset the device (virtio: status 0), then
//	  Container.UnmapDMA, PCI.Close, Unbind(bdf) → kernel driver again
//
// Lifecycle: DMA mappings must outlive every device access to them: stop the device
// before UnmapDMA or Close. Container is safe for concurrent use; Group and Device are
// owned by one goroutine (pread/pwrite region access may be concurrent).
//
// Limits: Debian's kernel is built without CONFIG_VFIO_NOIOMMU, so the no-IOMMU path is
// untested here, and with it MapDMA reports ErrNotSupported (dpkit does not use
// physical addresses). The IOVA space used is the low 39 bits, which every VT-d
// supports, less the reserved regions the kernel reports for every group attached
// (read again on each attach; from sysfs on kernels before 5.4): x86's MSI window at
// 0xfee00000, RMRRs), where it refuses mappings.
package vfio
