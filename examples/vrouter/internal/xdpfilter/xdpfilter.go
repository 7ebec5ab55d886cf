// Package xdpfilter builds the uplink's XDP program: overlay traffic (VXLAN on UDP
// 4789, MPLS over UDP on 6635, GRE) addressed to the node's underlay address is
// redirected into the AF_XDP socket of its receive queue; everything else (ARP, the
// host's own traffic, fragments, tunnels to the host's other addresses) passes to the
// kernel, which keeps owning the underlay interface.
//
// The program is assembled with cilium/ebpf's asm package; no compiler is needed at
// build or run time.
package xdpfilter

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// UDP ports and IP protocols the filter redirects.
const (
	PortVXLAN    = 4789
	PortMPLSoUDP = 6635
	ProtoGRE     = 47
	ProtoUDP     = 17
)

// XDP actions.
const (
	XDPDrop = 1
	XDPPass = 2
)

// be16 returns the value a little-endian 16-bit load of the big-endian bytes of v
// yields.
func be16(v uint16) int32 { return int32(v>>8 | (v&0xff)<<8) }

// dstCheck returns the instructions that jump to "pass" unless the 4 or 16 bytes at
// off from reg (the destination address, bounds already checked) are local's.
func dstCheck(reg asm.Register, off int16, local netip.Addr) asm.Instructions {
	var insns asm.Instructions
	b := local.AsSlice()
	for i := 0; i < len(b); i += 4 {
		// A word load yields the bytes in host (little-endian) order; compare all
		// 64 bits against a 64-bit immediate, as a 32-bit immediate would be
		// sign-extended.
		insns = append(insns,
			asm.LoadMem(asm.R2, reg, off+int16(i), asm.Word),
			asm.LoadImm(asm.R3, int64(binary.LittleEndian.Uint32(b[i:])), asm.DWord),
			asm.JNE.Reg(asm.R2, asm.R3, "pass"),
		)
	}
	return insns
}

// Spec returns the program for the XSKMAP xsks. Overlay frames whose queue has no
// socket in the map get fallback (XDPPass in production; tests use XDPDrop to see the
// classification). Only frames to local, the node's underlay address, are overlay
// traffic, and only of its family; an invalid local takes any destination.
func Spec(xsks *ebpf.Map, fallback int32, local netip.Addr) *ebpf.ProgramSpec {
	const (
		ctx  = asm.R6 // xdp_md
		data = asm.R7 // packet start
		end  = asm.R8 // packet end
		l3   = asm.R9 // network header
	)
	// The family the node's address is not of is the kernel's: its frames go to
	// "pass" at the ethertype, and its block is left out (the verifier refuses
	// unreachable instructions).
	v4, v6 := !local.Is6(), !local.Is4()
	insns := asm.Instructions{
		asm.Mov.Reg(ctx, asm.R1),
		asm.LoadMem(data, ctx, 0, asm.Word), // xdp_md.data
		asm.LoadMem(end, ctx, 4, asm.Word),  // xdp_md.data_end

		// Ethernet, with at most one 802.1Q tag.
		asm.Mov.Reg(l3, data),
		asm.Add.Imm(l3, 14),
		asm.JGT.Reg(l3, end, "pass"),
		asm.LoadMem(asm.R2, data, 12, asm.Half),
		asm.JNE.Imm(asm.R2, be16(0x8100), "ethertype"),
		asm.Mov.Reg(asm.R3, l3),
		asm.Add.Imm(asm.R3, 4),
		asm.JGT.Reg(asm.R3, end, "pass"),
		asm.LoadMem(asm.R2, data, 16, asm.Half),
		asm.Mov.Reg(l3, asm.R3),
		asm.Mov.Reg(asm.R2, asm.R2).WithSymbol("ethertype"), // a no-op to carry the label
	}
	if v4 {
		insns = append(insns, asm.JEq.Imm(asm.R2, be16(0x0800), "ipv4"))
	}
	if v6 {
		insns = append(insns, asm.JEq.Imm(asm.R2, be16(0x86dd), "ipv6"))
	}
	insns = append(insns, asm.Ja.Label("pass"))
	if v4 {
		// IPv4: to the node, version 4, no fragment (MF or offset), then the
		// protocol.
		insns = append(insns,
			asm.Mov.Reg(asm.R3, l3).WithSymbol("ipv4"),
			asm.Add.Imm(asm.R3, 20),
			asm.JGT.Reg(asm.R3, end, "pass"),
		)
		if local.IsValid() {
			insns = append(insns, dstCheck(l3, 16, local)...)
		}
		insns = append(insns,
			asm.LoadMem(asm.R2, l3, 6, asm.Half), // flags+fragment offset, big-endian
			asm.And.Imm(asm.R2, be16(0x3fff)),
			asm.JNE.Imm(asm.R2, 0, "pass"),
			asm.LoadMem(asm.R4, l3, 0, asm.Byte), // version+IHL
			asm.Mov.Reg(asm.R2, asm.R4),
			asm.RSh.Imm(asm.R2, 4),
			asm.JNE.Imm(asm.R2, 4, "pass"),
			asm.And.Imm(asm.R4, 0x0f),
			asm.JLT.Imm(asm.R4, 5, "pass"),
			asm.LSh.Imm(asm.R4, 2), // header length, 20..60
			asm.LoadMem(asm.R5, l3, 9, asm.Byte),
			asm.Add.Reg(l3, asm.R4), // l3 now points at the transport header
			asm.Ja.Label("l4"),
		)
	}
	if v6 {
		// IPv6: to the node, the next header directly (extension headers go to
		// the kernel).
		insns = append(insns,
			asm.Mov.Reg(asm.R3, l3).WithSymbol("ipv6"),
			asm.Add.Imm(asm.R3, 40),
			asm.JGT.Reg(asm.R3, end, "pass"),
		)
		if local.IsValid() {
			insns = append(insns, dstCheck(l3, 24, local)...)
		}
		insns = append(insns,
			asm.LoadMem(asm.R5, l3, 6, asm.Byte),
			asm.Add.Imm(l3, 40),
		)
	}
	insns = append(insns,
		// Transport: GRE, or UDP to one of the overlay ports.
		asm.JEq.Imm(asm.R5, ProtoGRE, "redirect").WithSymbol("l4"),
		asm.JNE.Imm(asm.R5, ProtoUDP, "pass"),
		asm.Mov.Reg(asm.R3, l3),
		asm.Add.Imm(asm.R3, 8),
		asm.JGT.Reg(asm.R3, end, "pass"),
		asm.LoadMem(asm.R2, l3, 2, asm.Half), // destination port
		asm.JEq.Imm(asm.R2, be16(PortVXLAN), "redirect"),
		asm.JEq.Imm(asm.R2, be16(PortMPLSoUDP), "redirect"),

		asm.Mov.Imm(asm.R0, XDPPass).WithSymbol("pass"),
		asm.Return(),

		asm.LoadMapPtr(asm.R1, xsks.FD()).WithSymbol("redirect"),
		asm.LoadMem(asm.R2, ctx, 16, asm.Word), // xdp_md.rx_queue_index
		asm.Mov.Imm(asm.R3, fallback),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	return &ebpf.ProgramSpec{
		Name:         "dpkit_vr_uplink",
		Type:         ebpf.XDP,
		License:      "Dual MIT/GPL",
		Instructions: insns,
	}
}

// bpfFXDPHasFrags is BPF_F_XDP_HAS_FRAGS (libbpf's "xdp.frags" section).
const bpfFXDPHasFrags = 1 << 5

// Load creates the program for xsks and the node's underlay address local. It is
// loaded frags-aware where the kernel knows the flag (5.18 and later): it reads only
// headers, which lie in a multi-buffer frame's first buffer, so jumbo frames are
// classified like any other and reach a multi-buffer socket whole.
func Load(xsks *ebpf.Map, local netip.Addr) (*ebpf.Program, error) {
	spec := Spec(xsks, XDPPass, local)
	spec.Flags = bpfFXDPHasFrags
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		spec.Flags = 0
		p, err = ebpf.NewProgram(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("xdpfilter: load: %w", err)
	}
	return p, nil
}
