// Package xsk is AF_XDP packet IO: UMEM, sockets, the XDP program that steers frames
// to them, and a pmd.Port over each socket.
//
// Packet flow (Documentation/networking/af_xdp.rst):
//
//	           pmd.Pool region = UMEM (frame f at address f*FrameSize)
//	   ┌──────────────────────────────────────────────────────────────┐
//	   │  app ──Fill──▶ fill ring ──▶ kernel ──▶ rx ring ──Rx──▶ app  │
//	   │  app ──Tx────▶ tx ring ───▶ kernel ──▶ completion ──▶ pool   │
//	   └──────────────────────────────────────────────────────────────┘
//	NIC queue q ──▶ XDP program: bpf_redirect_map(xskmap, q, XDP_PASS) ──▶ socket q
//	                                   (no socket on q: to the kernel stack)
//
// Layers: UMEM registers a pmd.Pool's region (its own or the caller's, so XSK ports
// and other ports of the same pool exchange frames without copies). Socket is the
// low-level API over the four rings: Fill, Receive, Transmit, Complete with raw UMEM
// addresses. Port is the pmd.Port over a Socket: it takes fill frames from the pool,
// hands received ones out as pmd.Pkts, and frees sent ones on completion. Program is
// the built-in XDP program (or a caller's, or a pinned XSKMAP). Open and OpenAll put
// them together for one queue or every queue of a device, with one shared UMEM.
//
// Multi-buffer packets are whole on both sides: Rx never returns part of a chain (one
// longer than the caller's batch is dropped as DropTooLong), and Tx never queues part
// of one (a chain cut by the end of pkts or of the ring's room waits for the next
// call; a chain with a bad segment, on a socket without MultiBuffer, or longer than
// Port.MaxTxSegments, is dropped whole).
// Port.Recycle is the rxdrop fast path: received frames straight back to the fill ring.
//
// Modes: zero-copy is tried first and copy mode used where the driver lacks it
// (veth); Socket.ZeroCopy reports the result, Program.Mode the attach mode (native or
// generic). need_wakeup is on by default and the kernel is woken only when it asks,
// through a non-blocking raw syscall; with Config.BusyPoll, whose syscalls run the
// driver, on every empty Rx and every Tx. Multi-buffer (Config.MultiBuffer) delivers
// frames larger than a UMEM frame as chains, flagged pmd.PktMore on all but the last
// Pkt.
//
// Frame headroom: the kernel writes received data XDP_PACKET_HEADROOM (256) bytes plus
// the UMEM headroom into a frame; the UMEM headroom is the pool's headroom minus 256,
// so received data starts at the pool's Headroom (256 by default) like a fresh frame's.
//
// Lifecycle and ownership: create UMEM → Program (attach) → Socket/Port → Register;
// close in reverse (Port.Close, then Program and UMEM; ports from Open release them
// themselves). A frame given to the kernel (fill or tx ring) belongs to it until it
// comes back on the rx or completion ring; Port tracks each one, refuses a descriptor
// for a frame the kernel does not hold (counted as DropInvalid), and on Close returns
// every frame still in the kernel to the pool. Closing unmaps the rings before closing
// the socket, and binding retries the kernel's EBUSY window after a close.
//
// Concurrency: a Socket or Port is driven by one goroutine for rx and one for tx (one
// per queue is usual); Stats may be read from anywhere. UMEM and Program are safe for
// concurrent use by control paths.
package xsk
