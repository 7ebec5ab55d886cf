//go:build !amd64

package icount

// Counter returns 0: only amd64 guests are measured.
func Counter() uint64 { return 0 }

func spin(n uint64) {}

// Supported reports whether Counter works on this architecture.
const Supported = false
