// Package vhost is a vhost-user net back-end (and front-end) for dpkit: DPDK
// virtio-user pods and QEMU guests attach to a Go dataplane over a UNIX socket, and
// each queue pair is a pmd.Port.
//
// # Packet flow (back-end)
//
//	front-end (virtio-user / QEMU guest)              dpkit
//	───────────────────────────────────      ─────────────────────────────────────
//	guest TX virtqueue (odd index) ──pop chain──► Port.Rx: strip virtio-net header,
//	                                             copy into pool frames ──► app
//	guest RX virtqueue (even index) ◄─push used── Port.Tx: copy from pool frames,
//	                                             header + num_buffers (MRG_RXBUF)
//	kick eventfd  ──► (not waited on: the back-end polls; notifications disabled)
//	call eventfd  ◄── after a batch of used entries, when the driver asks for it
//	                  (EVENT_IDX / NO_INTERRUPT, VIRTIO 1.2 §2.7.7, §2.8.10)
//
// Packets longer than a pool frame (jumbo frames) travel as pmd chains (Pkts flagged
// pmd.PktMore): Port.Rx copies such a guest packet into as many frames as it needs,
// Port.Tx spreads a chain over mergeable receive buffers (or one large buffer), and
// the front-end's port posts a chain as one buffer of several descriptors and joins
// mergeable buffers into a chain.
//
// With VIRTIO_F_IN_ORDER on a packed ring, Port.Rx completes each burst of the
// guest's transmit queue with one used descriptor, the last buffer's id (§2.8.8), as
// DPDK's vhost does: the guest reads one descriptor where it read 32.
//
// On a packed ring, Port.Tx puts a packet that fits the next buffer straight into it
// and marks that buffer used in its own slot (vring's PeekDirect and UseDirect), with
// no chain popped in between; the burst's used descriptors are published together at
// its end. It leaves the virtio-net header alone when the buffer already holds the
// right one, so the guest keeps its cached copy of that line.
//
// Guest memory is mapped from the descriptors SET_MEM_TABLE / ADD_MEM_REG pass; rings
// and buffers are reached through vring's device side (split and packed layouts).
//
// # Layers
//
//   - internal/uds: sockets with SCM_RIGHTS, socket files (mode, group, stale
//     files), eventfds, mappings of passed descriptors.
//   - msg.go: the wire format (QEMU docs/interop/vhost-user.rst) and its constants.
//   - device.go: the dispatch table (per request: exact payload size, descriptor
//     rule, handler) and the handlers; the only code that changes device state.
//   - queue.go, port.go: the running rings and the datapath.
//   - memfault.go: faults on guest memory turned into a dropped device.
//   - backend.go: socket roles (listen, or connect and reconnect with back-off) and
//     the connection lifecycle.
//
// # Lifecycle and ownership
//
// A Backend owns one socket and serves one front-end at a time. Its Ports exist for
// the Backend's life: between connections, or while a queue is reconfigured, Rx and
// Tx return 0. When a connection ends (the front-end closed it, died, or sent a
// message that cannot be answered), the device is dropped: every queue is stopped,
// its eventfds closed and all guest memory unmapped; then the next front-end is
// accepted (or, as a client, the socket is redialled with back-off).
//
// Every descriptor that arrives with a message is either kept by its handler or
// closed by the dispatcher. Malformed messages (wrong size, wrong descriptor count,
// unknown request, bad header) end the connection; well-formed messages with bad
// values are refused (a REPLY_ACK nack when negotiated, otherwise the connection
// ends, as DPDK does). Nothing a front-end sends can panic the back-end.
//
// A ring the guest breaks (a descriptor out of its memory, a chain too long, …) takes
// nothing more; the front-end hears of it once on the ring's error eventfd
// (SET_VRING_ERR). A front-end that truncates a memory file it shared, which would
// raise SIGBUS on the back-end's next access, has its device dropped with
// ErrGuestFault instead (memfault.go); files that allow it are sealed against
// shrinking when mapped, so this needs files that do not (hugetlbfs, unsealable
// memfds).
//
// # Concurrency
//
// The control path (one goroutine per Backend, in Serve) and the datapath meet only
// at each queue's active-ring pointer, guarded by a busy flag the datapath takes
// with a compare-and-swap and never waits for: if the control path holds the queue,
// Rx/Tx return 0. The control path, to stop a queue, clears the pointer and waits for
// the datapath to finish its current burst before it touches the ring or unmaps
// memory. One goroutine may call a Port's Rx and one its Tx; Stats is safe anywhere.
//
// # Not implemented
//
// Inflight tracking (INFLIGHT_SHMFD: lossless reconnect for blk-style devices) is not
// offered; its messages are range-checked and refused. Offloads (CSUM, GSO) are not
// offered.
//
// # Live migration
//
// The back-end offers VHOST_F_LOG_ALL and LOG_SHMFD. After SET_LOG_BASE maps the
// front-end's dirty bitmap, and while LOG_ALL is negotiated (a front-end turns it on
// and off under running rings), every write into guest memory — packet data into
// receive buffers, used ring entries, packed descriptors written back — marks its
// 4 KiB pages with an atomic OR, before the guest is signalled.
//
// After migration QEMU sends SEND_RARP for a guest without GUEST_ANNOUNCE; the next
// Rx on the first queue pair then delivers a RARP request from the guest's MAC to
// the broadcast address, ahead of the guest's packets, so that switches relearn
// where the MAC is.
package vhost
