package icount

// Counter returns the time stamp counter (RDTSC). Under QEMU -icount shift=0 it counts
// the instructions the guest has executed.
func Counter() uint64

func spin(n uint64)

// Supported reports whether Counter works on this architecture.
const Supported = true
