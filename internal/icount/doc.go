// Package icount counts the instructions a port spends per packet, where no cycle
// counter can: in a QEMU TCG guest started with -icount shift=0, the guest's time
// stamp counter advances by exactly one per instruction the guest executes, so the
// TSC difference around an Rx or Tx call is that call's instruction count (user and
// kernel). The VFIO virtio-net driver can only run in such a guest here (the host has
// no VFIO and no PMU), and measuring the vhost and AF_XDP ports the same way, in the
// same guest, gives the figures to set beside it.
//
// Counter reads the TSC; Calibrate checks that it counts instructions. The tests boot
// the guest (internal/vmtest) and report instructions per packet for RX and TX bursts
// of 32 as benchmark metrics.
package icount
