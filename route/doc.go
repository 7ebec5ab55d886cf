// Package route holds the forwarding tables of a vRouter: per-VRF IPv4 and
// IPv6 longest-prefix-match tables, the next hops they resolve to (local
// ports, overlay tunnels, ECMP groups, discard, receive), a neighbour table
// (ARP/ND results) and a Responder that answers ARP requests and neighbour
// solicitations for the addresses the vRouter owns, and, through a Proxy, for
// addresses it routes (proxy ARP).
//
// # Packet flow
//
//	RX burst ──► parse dst (IPv4: uint32 from the header, IPv6: [16]byte)
//	         ──► Table.LookupBatch4/6(vrf, dsts, ids)     lock-free, 0 allocs
//	         ──► Table.NextHop(id) ──┬─ KindLocal  : NeighbourTable / MAC ─► TX port
//	                                 ├─ KindTunnel : encap (VXLAN / MPLSoUDP / MPLSoGRE) ─► uplink
//	                                 ├─ KindECMP   : NextHop.Select(flowHash) ─► member
//	                                 ├─ KindReceive: exception path to the host
//	                                 └─ KindDiscard / NoRoute: counted drop
//	ARP request / NS ──► Responder.AnswerARP / AnswerNS (reply built in place) ─► TX same port
//
// # Lookup structures
//
// IPv4 is DIR-24-8 (the layout of DPDK's rte_lpm): a directly indexed entry
// per /24 and 256-entry groups for longer prefixes, so a lookup reads one or
// two table entries. The /24 table is cut into 4096 chunks of 16 KiB behind
// a 4096-slot directory (32 KiB, cache resident), which costs one extra
// cached load per lookup and is what makes updates copy-on-write at chunk
// granularity. IPv6 is a multibit trie with 8-bit strides (rte_fib6's trie
// below its first level): root on byte 0, mid on byte 1, chunk table on
// byte 2, then 256-entry groups per further byte. Entries are uint32: a
// next-hop id (23 bits) and the length of the prefix that set it, or a group
// index. Prefix expansion with stored depths follows rte_lpm's algorithm.
// Chunks and mids that hold a single value (no routes, or only a covering
// short prefix) are shared. An empty VRF costs a 16-byte slot. A VRF with
// at most 16 IPv4 routes keeps them as a list scanned longest-first (12
// bytes a route); above 16 it switches to the directory (32 KiB plus 16 KiB
// per touched /12) and back at 8 or fewer. An IPv6 VRF with one /64 costs
// about 13 KiB (root, mid, chunk and the groups down to the /64).
//
// # Concurrency and reclamation
//
// One writer at a time (control-plane methods take a mutex); any number of
// lock-free readers. Everything a reader can reach from a published root
// is immutable. A batch (Apply) copies each chunk it changes once, appends
// new groups to the chunk's pool (never writing a group an older version
// can reach), then publishes with a single atomic pointer store: into the
// directory slot when the batch changed one slot, else a new root into the
// VRF slot. So for every address, a lookup returns the longest-prefix
// match of a state between batches: never a torn entry, never half a
// batch. Different addresses of one LookupBatch may straddle a concurrent
// publication (each is still valid for some state).
//
// Replaced chunks, roots and pools are reclaimed by the Go garbage
// collector once no reader holds a pointer to them; readers hold pointers
// only for the duration of a lookup call. Group slots are never reused
// inside a pool that a published chunk can reach; a chunk's garbage groups
// are dropped by compaction into a fresh pool (when garbage exceeds live
// groups and reaches 64 groups: a chunk may so carry up to 63 dead groups of
// 1 KiB, whatever its size, which Stats counts). This is the epoch scheme: the collector's reachability is the
// grace period, and no reader registration or quiescent-state reports are
// needed.
//
// Next hops are immutable values in a slot array: SetNextHop stores a new
// value atomically, so every route using the id follows at once. Ids are
// reference counted by routes and ECMP groups; DeleteNextHop refuses while
// referenced.
//
// # Ownership
//
// Values returned by NextHop are shared and must not be modified. Lookup
// output slices are written only within the returned count. AnswerNS
// returns a reslice of the caller's frame.
package route
