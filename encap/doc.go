// Package encap puts packets into overlay tunnels and takes them out again, in place:
// VXLAN (RFC 7348), MPLS over UDP (RFC 7510), MPLS over GRE (RFC 4023) and plain GRE
// (RFC 2784) for IP payloads, under IPv4 or IPv6 outer headers, with MPLS label
// stacks (RFC 3032) and an optional 802.1Q tag on a VXLAN inner frame.
//
// # Packet flow
//
// Encap prepends the outer headers into the frame's headroom; Decap validates them and
// moves the packet start past them. The payload is never copied.
//
//	encap:  [headroom........][inner]                          Tunnel.Encap
//	     →  [headroom][Eth|IP|UDP|VXLAN][inner]                (pmd.Pkt.Prepend)
//
//	decap:  [Eth|VLAN|IP|UDP|MPLS...][inner][pad]              Decapper.Decap
//	     →  [inner]  + Result{Type, VNI or labels, Src, ...}   (pmd.Pkt.Adj, padding trimmed)
//	        or a Reason, counted
//
// A vRouter strings the batch stages into a pipeline over pmd poll loops and rings,
// every stage working on a pmd.Batch in place and handing refused packets to a
// DropFunc:
//
//	uplink Rx ─► ClassifyStage ─► Spread ─► ring per worker
//	             (Hash = inner flow,         │
//	              Meta = Key)                ▼
//	                          DecapStage ─► lookup ─► EncapStage ─► Batch.Tx
//	                          (Meta = Key)  (Meta =   (tunnels[Meta])
//	                                         next hop;
//	                                         Batch.Filter)
//
// # Encapsulation
//
// A Tunnel holds a precomputed header template, so encapsulating is one fixed-size
// copy of the template plus a few field updates: lengths, the IPv4 header checksum
// (the template's constant words are summed once; per packet only the patched words
// are added), the UDP source port (from the inner flow hash, RFC 7510 §3; the IPv6
// flow label too, RFC 6438), TTL, DSCP and ECN copied from or set over the inner
// header (RFC 2983, RFC 6040), and the DF policy; a result longer than the tunnel's
// MTU is refused for the caller's ICMP reply. Under IPv4 the UDP checksum is zero
// (RFC 7348 §5, RFC 7510 §3); under IPv6 it is computed in full, derived from the
// inner packet's own checksums in constant time (Csum6Inner), or zero where the
// receivers allow it (Csum6Zero, RFC 6935/6936). A transport checksum left partial by
// a virtio driver (pmd.PktCsumPartial) is finished first.
//
// # Decapsulation
//
// Decap validates every length, version and checksum it relies on before it moves the
// packet start: Ethernet with up to two VLAN tags, IPv4 (options allowed, fragments
// refused, header checksum verified) or IPv6 (fragment and extension headers refused),
// then UDP to port 4789 or 6635, or GRE (version 0, with optional checksum, key and
// sequence number) carrying MPLS or IP (whose version must match the GRE protocol type). Arbitrary bytes never panic and never cause a
// read outside the packet. Every outcome is counted by Reason; Reason.NotTunnel tells
// traffic for the exception path (ARP, ND, routing protocols) from malformed frames.
// Optionally Decap applies RFC 6040's ECN decapsulation rules to the inner header,
// strips an inner VLAN tag, and sets the inner flow hash for the stages after it.
//
// FlowHash hashes the inner 5-tuple (optionally symmetric, seeded) for the UDP source
// port, Spread, and the route package's ECMP groups.
//
// # Ownership and concurrency
//
// A Tunnel is immutable after NewTunnel and safe for concurrent use; a table of them
// may be shared by all workers. A Decapper belongs to one goroutine: its counts live
// in that goroutine's memory and are published, one atomic store per changed counter,
// by Flush and at the end of every batch call; Stats may be called from any goroutine.
// The batch calls and stages own the packets they are given until they return; a
// DropFunc owns the frames handed to it. Slices returned by pmd.Pool.Data stay valid
// while the caller owns the frame.
//
// Nothing here allocates per packet (TestZeroAlloc).
package encap
