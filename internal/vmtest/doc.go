// Package vmtest runs a package's tests inside a throwaway QEMU guest with a real
// (emulated) Intel IOMMU, so VFIO drivers can be tested against real PCI devices
// without touching the host's hardware.
//
// Flow of one run:
//
//	mkimage.sh (once, cached in .cache/vm, flock-serialised):
//	  apt-get download linux-image-<current>-amd64 → vmlinuz → (xz/zstd magic) → vmlinux
//	  busybox-static + virtio/vfio modules + busybox depmod + init.sh → base.cpio
//	Run (per host test):
//	  go test -c (CGO_ENABLED=0) → dpkit.test ─┐
//	  base.cpio ++ cpio{dpkit.test, dpkit.args} → initrd
//	  qemu -accel tcg -machine q35,kernel-irqchip=split -device intel-iommu,...
//	       virtio-net-pci,iommu_platform=on,disable-legacy=on[,packed=on] on hubports
//	  guest /init: modprobe, run dpkit.test -test.run ^TestGuest..., print
//	       DPKIT-VMTEST-EXIT=<status>, poweroff
//	  host: parse the serial console; fail on a non-zero status, a missing marker
//	       (panic, hang) or the timeout.
//
// Host-side tests call Run (gated by testenv: root, QEMU, apt tools; they fail in CI if
// these are missing). Guest-side tests start with NeedGuest, which skips them anywhere
// but inside the VM. NICs on the same Hub are joined by a QEMU hub: frames never leave
// QEMU.
//
// Nothing here is safe for concurrent use except Image and Run, which may be called
// from parallel tests (each run gets its own temporary directory and QEMU process).
package vmtest
