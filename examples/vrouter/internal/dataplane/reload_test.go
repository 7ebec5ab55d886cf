package dataplane

import (
	"net/netip"
	"runtime"
	"testing"
	"weak"
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
