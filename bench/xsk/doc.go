// Package xskbench compares dpkit's AF_XDP ports with slavc/xdp v0.3.4, asavie/xdp
// v0.3.3 and a C/libxdp reference (cref/) on a veth pair in two namespaces it creates:
//
//	namespace gen                         namespace dut
//	BPF_PROG_RUN live frames ──XDP_TX──▶ veth ──XDP redirect──▶ XSK (rxdrop, l2fwd)
//	XDP_DROP sink ◀──────────────────── veth ◀──────────────── XSK tx (txonly, l2fwd)
//
// The generator runs an XDP program returning XDP_TX with BPF_F_TEST_XDP_LIVE_FRAMES,
// so frames are built and sent by the kernel in a loop (no per-packet syscall); it is
// faster than any receiver here. Kernels that refuse live-frame runs (EPERM, as
// 6.18.44 here does even for root) get an AF_XDP copy-mode socket on gen's end
// instead; it sends about 1.3 Mpps, so rxdrop and l2fwd then measure the generator,
// and the benchmark says so in its log. Each implementation runs the same three modes with
// 64-byte frames, 4096 UMEM frames and 2048-entry rings, and reports Mpps.
//
// The peers are separate programs (peers/, its own module: they need cilium/ebpf
// v0.4.0, which does not build next to dpkit's v0.22) and cref/ is built with gcc and
// libxdp at benchmark time; all report through one line protocol (see runExternal).
//
// Run as root:  cd bench && go test -bench . -benchtime 2000000x ./xsk
package xskbench
