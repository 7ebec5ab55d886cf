package route_test

import (
	"fmt"
	"net/netip"

	"github.com/dpkit/dpkit/route"
)

func Example() {
	t, _ := route.New(route.Options{})
	pod, _ := t.AddNextHop(route.NextHop{Kind: route.KindLocal, Port: 3, MAC: route.MAC{2, 0, 0, 0, 0, 7}})
	remote, _ := t.AddNextHop(route.NextHop{Kind: route.KindTunnel, Encap: route.EncapMPLSoUDP,
		Remote: netip.MustParseAddr("192.0.2.2"), Source: netip.MustParseAddr("192.0.2.1"), Label: 17})
	var b route.Batch // applied atomically
	b.Insert(1, netip.MustParsePrefix("10.1.0.5/32"), pod)
	b.Insert(1, netip.MustParsePrefix("10.1.0.0/16"), remote)
	if err := t.Apply(&b); err != nil {
		panic(err)
	}
	dst := []uint32{0x0a010005, 0x0a010106, 0x0b000001}
	out := make([]route.NextHopID, len(dst))
	t.LookupBatch4(1, dst, out)
	for i, id := range out {
		if nh := t.NextHop(id); nh != nil {
			fmt.Println(i, nh.Kind)
		} else {
			fmt.Println(i, "no route")
		}
	}
	// Output:
	// 0 local
	// 1 tunnel
	// 2 no route
}
