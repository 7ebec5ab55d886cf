package route

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// NextHopID is a small index into a Table's next-hop table. It is what a
// lookup returns. NoRoute (0) means "no matching route"; valid ids are
// 1..MaxNextHops-1 and never exceed MaxNextHopID.
type NextHopID uint32

// NoRoute is returned by lookups when no prefix matches.
const NoRoute NextHopID = 0

// MaxNextHopID is the largest id that fits in a table entry (23 bits).
const MaxNextHopID = 1<<23 - 1

// NextHopKind says what the dataplane does with a packet.
type NextHopKind uint8

const (
	// KindDiscard drops the packet (a blackhole route).
	KindDiscard NextHopKind = iota + 1
	// KindReceive sends the packet to the host (exception path).
	KindReceive
	// KindLocal sends the packet out of a local port to MAC.
	KindLocal
	// KindTunnel encapsulates the packet towards a remote vRouter.
	KindTunnel
	// KindECMP spreads flows over member next hops by flow hash.
	KindECMP
)

func (k NextHopKind) String() string {
	switch k {
	case KindDiscard:
		return "discard"
	case KindReceive:
		return "receive"
	case KindLocal:
		return "local"
	case KindTunnel:
		return "tunnel"
	case KindECMP:
		return "ecmp"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// EncapType is the overlay encapsulation of a tunnel next hop.
type EncapType uint8

const (
	// EncapVXLAN is VXLAN (RFC 7348, UDP 4789); Label is the 24-bit VNI.
	EncapVXLAN EncapType = iota + 1
	// EncapMPLSoUDP is MPLS over UDP (RFC 7510, UDP 6635); Label is the 20-bit label.
	EncapMPLSoUDP
	// EncapMPLSoGRE is MPLS over GRE (RFC 4023, protocol 0x8847); Label is the 20-bit label.
	EncapMPLSoGRE
)

// MAC is an Ethernet address.
type MAC [6]byte

func (m MAC) String() string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// NextHop describes a forwarding action. Values handed out by Table.NextHop
// are immutable snapshots and safe for concurrent use; never modify them.
type NextHop struct {
	Kind NextHopKind

	// KindLocal: output port and the destination MAC written into the frame.
	Port uint32
	MAC  MAC

	// KindTunnel: encapsulation, outer addresses (same family) and the MPLS
	// label (20 bits) or VXLAN VNI (24 bits).
	Encap  EncapType
	Remote netip.Addr
	Source netip.Addr
	Label  uint32

	// KindECMP: member next hops (not themselves ECMP). Order does not
	// matter; duplicates give a member more weight.
	Members []NextHopID

	buckets []NextHopID // resilient bucket table, filled by the Table
}

// Validate checks the fields that matter for Kind.
func (nh *NextHop) Validate() error {
	switch nh.Kind {
	case KindDiscard, KindReceive, KindLocal:
		return nil
	case KindTunnel:
		if !nh.Remote.IsValid() || !nh.Source.IsValid() || nh.Remote.Is4() != nh.Source.Is4() {
			return fmt.Errorf("%w: tunnel needs remote and source of one family", ErrBadNextHop)
		}
		switch nh.Encap {
		case EncapVXLAN:
			if nh.Label >= 1<<24 {
				return fmt.Errorf("%w: VNI %d exceeds 24 bits", ErrBadNextHop, nh.Label)
			}
		case EncapMPLSoUDP, EncapMPLSoGRE:
			if nh.Label >= 1<<20 {
				return fmt.Errorf("%w: MPLS label %d exceeds 20 bits", ErrBadNextHop, nh.Label)
			}
		default:
			return fmt.Errorf("%w: unknown encapsulation %d", ErrBadNextHop, nh.Encap)
		}
		return nil
	case KindECMP:
		if len(nh.Members) == 0 {
			return fmt.Errorf("%w: ECMP group without members", ErrBadNextHop)
		}
		return nil
	}
	return fmt.Errorf("%w: unknown kind %d", ErrBadNextHop, nh.Kind)
}

// Select returns the member chosen for a flow hash. For other kinds it
// returns NoRoute. It never allocates. Flows keep their member as long as
// that member stays in the group (resilient hashing, see SetNextHop).
func (nh *NextHop) Select(hash uint32) NextHopID {
	b := nh.buckets
	if len(b) == 0 {
		return NoRoute
	}
	return b[hash&uint32(len(b)-1)]
}

// Buckets returns a copy of the ECMP bucket table (for inspection and tests).
func (nh *NextHop) Buckets() []NextHopID { return append([]NextHopID(nil), nh.buckets...) }

// resilientBuckets computes a bucket table of n entries for members,
// starting from old (may be nil). Buckets of members that stay keep their
// member unless the member holds more than its fair share; only buckets of
// removed members and the excess of over-full members move.
func resilientBuckets(old []NextHopID, members []NextHopID, n int) []NextHopID {
	// weight per member (duplicates add weight), in first-seen order
	type mw struct {
		id     NextHopID
		target int
		have   int
	}
	var ms []mw
	idx := map[NextHopID]int{}
	for _, m := range members {
		if i, ok := idx[m]; ok {
			ms[i].target++
			continue
		}
		idx[m] = len(ms)
		ms = append(ms, mw{id: m, target: 1})
	}
	total := len(members)
	if len(old) != n {
		old = nil
	}
	// scale weights to n buckets: floor shares, then one more bucket each
	// to the members holding the most buckets now (ties: lower id), so the
	// shares depend neither on member order nor move a flow when the set is
	// unchanged
	held := make([]int, len(ms))
	for _, m := range old {
		if i, ok := idx[m]; ok {
			held[i]++
		}
	}
	assigned := 0
	for i := range ms {
		w := ms[i].target
		ms[i].target = w * n / total
		assigned += ms[i].target
	}
	order := make([]int, len(ms))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int {
		if held[a] != held[b] {
			return held[b] - held[a]
		}
		return cmp.Compare(ms[a].id, ms[b].id)
	})
	for _, i := range order[:n-assigned] {
		ms[i].target++
	}
	out := make([]NextHopID, n)
	free := make([]int, 0, n)
	for b := 0; b < n; b++ {
		if old != nil {
			if i, ok := idx[old[b]]; ok && ms[i].have < ms[i].target {
				out[b] = old[b]
				ms[i].have++
				continue
			}
		}
		free = append(free, b)
	}
	k := 0
	for i := range ms {
		for ms[i].have < ms[i].target {
			out[free[k]] = ms[i].id
			k++
			ms[i].have++
		}
	}
	return out
}
