#!/bin/sh
# /init of dpkit's VM test guest (busybox). Loads the modules the tests need, runs
# /dpkit.test with the arguments in /dpkit.args, prints the end marker with the exit
# status on the serial console, and powers off. The host helper (vmtest.go) reads the
# marker; a guest that never prints it is a failure (timeout).
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts /dev/hugepages
mount -t devpts devpts /dev/pts
for m in virtio_pci virtio_net vfio vfio_iommu_type1 vfio_pci af_packet veth tun; do
	modprobe $m 2>/dev/null
done
# Tests must not depend on the kernel grabbing devices in a given order: they bind
# what they need themselves.
ip link set lo up
export DPKIT_VMTEST=1 HOME=/tmp TMPDIR=/tmp
cd /tmp
set -f # arguments are split on white space only, never globbed
args=$(cat /dpkit.args 2>/dev/null)
echo "dpkit-vmtest: running /dpkit.test $args"
/dpkit.test $args
rc=$?
echo "DPKIT-VMTEST-EXIT=$rc"
sync
poweroff -f
