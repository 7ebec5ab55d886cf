// Package pmd is dpkit's poll-mode layer: the packet memory, batches, port interface,
// pinned poll loops and inter-core rings that every port and pipeline shares.
//
// # Packet flow
//
//	        Pool (one mmap'd region, 2 MiB hugepages when available)
//	         │ frames by handle (Frame = index), never by Go pointer
//	         ▼
//	Cache ── Alloc/Get ──► Port.Rx(pkts) ──► app stages ──► Port.Tx(pkts) ──┐
//	 ▲   (per worker, no atomics)        (Batch of Pkt values)               │
//	 └──────────────── Free/Put ◄── frames the port has finished sending ◄───┘
//
//	worker A ──Ring[Pkt] (SPSC/MPMC, burst or bulk)──► worker B
//
// A Pkt is a small value (frame handle, data offset and length, flow hash, ingress port,
// flags, application metadata). Packet bytes stay in the frame: Pool.Data returns them.
// Each frame starts with Headroom bytes (256 by default, at least 128) so
// encapsulations prepend headers in place (Pkt.Prepend).
//
// The region is one mapping: a frame's offset in it (Pool.Addr) is its AF_XDP UMEM
// address and, added to an IOVA base, its VFIO DMA address, so an XSK port and a NIC
// port can pass frames to each other without a copy. A Shared pool is backed by a memfd
// that a vhost-user frontend hands to its backend.
//
// # Ownership
//
// Whoever holds a Frame handle owns the frame and must hand it on or free it exactly
// once. Port.Rx hands frames to the caller; Port.Tx takes the frames of the packets it
// accepts (the first n) and leaves the rest with the caller. A free of a frame that is
// already free, or of a handle beyond the pool, is refused and counted
// (PoolStats.BadFrees); pool exhaustion is counted (PoolStats.Exhausted), never a
// panic. A handle is only an index, so two frees are caught only while the frame is
// still free (not once it has been taken again), and a frame of another pool whose
// index is in range and in use here cannot be told from this pool's own: freeing it
// hands out a frame still in use and leaks the other pool's. Both are the caller's
// bugs, which the pool cannot always see.
//
// # Concurrency
//
// Pool and Ring (in its configured mode) are safe for concurrent use. A Cache, a Batch
// and each direction of a Port belong to one goroutine at a time: one queue, one
// worker, as in DPDK. Ports that allocate and free frames (CacheUser) take the cache
// of the worker that polls them (ShareCache), so frames cycle through one worker's
// cache and stay in its CPU's cache. Workers lock a goroutine to an OS thread pinned to a CPU
// (sched_setaffinity) and poll with an idle policy (busy-poll, yield, sleep with
// back-off, adaptive); their counters may be read from anywhere.
//
// CPU sets are written as DPDK and the Contrail vRouter accept them: hex masks (0xf),
// lists (1,2,4), ranges (1-4) and mixes (0-3,8,10-11); see ParseCPUSet.
package pmd
