// Package afxdp is the kernel side of dpkit's AF_XDP support: the socket calls, the
// kernel ABI structures of <linux/if_xdp.h>, and the four single-producer
// single-consumer rings the kernel shares with userspace through mmap.
//
// Rings (Documentation/networking/af_xdp.rst, "Rings"): each ring is a power-of-two
// array of slots with a free-running 32-bit producer index and consumer index living in
// the same mapping. One side only ever writes producer, the other only consumer:
//
//	fill (UMEM addresses)      user produces, kernel consumes
//	completion (addresses)     kernel produces, user consumes
//	rx (descriptors)           kernel produces, user consumes
//	tx (descriptors)           user produces, kernel consumes
//
// ProdRing and ConsRing keep cached copies of both indices and touch the shared ones
// only at batch boundaries (Reserve/Submit, Peek/Release), as libxdp's xsk.h does.
//
// Nothing here is safe for concurrent use: a ring belongs to one goroutine, like the
// socket's queue it serves. The kernel is not trusted: ring contents are returned as
// read and must be validated by the caller (package xsk does).
package afxdp
