package dataplane

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"weak"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/route"
)

// TestReloadReleasesTables: once a reload has published new tables and every
// worker has polled, nothing of the engine keeps the old ones, so the routes of a
// VRF a reload removed are freed. An ARP request and a neighbour solicitation are
// answered (through the proxy, which needs the tables) under the old tables first.
func TestReloadReleasesTables(t *testing.T) {
	pool, c, e, pod, _, cfg := v6Node(t)
	publishV6(t, e, "{prefix: 'fd00:1::100/120', remote: peer}")
	old := weak.Make(e.tables.Load())
	in := cfg.Interfaces[0]
	mac := [6]byte(in.HW)
	send(t, pool, c, pod, arpRequest(mac, in.Addrs[0], netip.MustParseAddr("10.1.2.7")))
	send(t, pool, c, pod, nsSolicited(mac, in.Addrs[1], netip.MustParseAddr("fd00:1::105"), true))
	e.Poll()
	if got := recv(pool, c, pod); len(got) != 2 {
		t.Fatalf("%d answers to an ARP request and a neighbour solicitation, want 2", len(got))
	}
	publishV6(t, e)
	for range 4 {
		e.Poll()
	}
	for range 3 {
		runtime.GC()
	}
	if old.Value() != nil {
		t.Fatal("the tables a reload replaced are still reachable from the engine")
	}
}

// TestBuildManyVRFs: the next-hop table Build sizes grows with the VRFs, not with
// their square: a reload (or start) with 3000 VRFs, each with a tunnel to one
// remote, builds, with room for every next hop it adds.
func TestBuildManyVRFs(t *testing.T) {
	c, err := config.Parse([]byte(fmt.Sprintf(nodeYAML, 1, 2, "vxlan")))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		c.VRFs = append(c.VRFs, config.VRF{Name: fmt.Sprintf("v%d", i), VNI: uint32(1000 + i), Label: uint32(1000 + i),
			Routes: []config.Route{{Prefix: "10.7.0.0/16", Remote: "peer", P: netip.MustParsePrefix("10.7.0.0/16")},
				{Prefix: "10.8.0.0/16", ECMP: []string{"peer", "peer"}, P: netip.MustParsePrefix("10.8.0.0/16")}}})
	}
	tabs, err := Build(c, map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := VRFID(len(c.VRFs) - 1)
	if id := tabs.Routes.Lookup(last, netip.MustParseAddr("10.8.1.1")); tabs.Routes.NextHop(id) == nil ||
		tabs.Routes.NextHop(id).Kind != route.KindECMP {
		t.Fatalf("last VRF's ECMP route: next hop %d", id)
	}
	if n := len(tabs.Tunnels); n > 4*3001+64 {
		t.Fatalf("%d tunnel slots for %d next hops", n, tabs.Routes.Stats().NextHops)
	}
}
