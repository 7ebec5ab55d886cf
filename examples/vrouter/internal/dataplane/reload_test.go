package dataplane

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/pmd"
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

// TestReloadSwitchesTunnelAtomically reloads, in a loop, between two configurations
// that differ in the VRF's VNI and in the remote's underlay address while two
// workers forward a pod's packets to that remote: every encapsulated packet carries
// the VNI and the remote of one configuration, never the new VNI towards the old
// remote; none is lost (but to the test's full uplink ring, counted); and the
// interface counters run on across the reloads.
func TestReloadSwitchesTunnelAtomically(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul := uplinkRings(t, pool, 2)
	n := newMQNode(t, pool, 1, "vxlan", ul[0], 2, 2, -1)
	y := fmt.Sprintf(nodeYAML, 1, 2, "vxlan")
	yb := strings.NewReplacer("vni: 100", "vni: 200", "underlay_ip: 192.168.50.2", "underlay_ip: 192.168.50.7").Replace(y)
	var cfgs [2]*config.Config
	for i, s := range []string{y, yb} {
		if cfgs[i], err = config.Parse([]byte(s)); err != nil {
			t.Fatal(err)
		}
		if err := config.ReloadCheck(n.cfg, cfgs[i]); err != nil {
			t.Fatal(err)
		}
	}
	want := map[[2]uint32]bool{{100, IP4(netip.MustParseAddr("192.168.50.2"))}: true,
		{200, IP4(netip.MustParseAddr("192.168.50.7"))}: true}
	c := pool.NewCache(64)
	stop := runWorkers(n.eng)
	var reloads atomic.Int64
	done := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-quit:
				return
			default:
			}
			tabs, err := Build(cfgs[i%2], map[string]int{"pod": 1}, [6]byte{2, 0, 0, 0, 0x50, 1}, routerMAC, 0)
			if err != nil {
				panic(err)
			}
			n.eng.Publish(tabs)
			reloads.Add(1)
		}
	}()
	p := n.cfg.Interfaces[0]
	const total = 3000
	got, bad := 0, 0
	seen := map[[2]uint32]int{}
	check := func() {
		for _, q := range ul[1] {
			for _, f := range recv(pool, c, q) {
				if len(f) < 14+20+8+8 {
					bad++
					continue
				}
				k := [2]uint32{binary.BigEndian.Uint32(f[14+28+4:]) >> 8, binary.BigEndian.Uint32(f[14+16:])}
				seen[k]++
				got++
				if !want[k] {
					if bad++; bad <= 3 {
						t.Errorf("packet with VNI %d to %#x", k[0], k[1])
					}
				}
			}
		}
	}
	frame := udp4([6]byte(p.HW), routerMAC, p.Addrs[0], netip.MustParseAddr("10.1.2.9"), 64, "r")
	var pk [1]pmd.Pkt
	for i := 0; i < total; i++ {
		if c.Alloc(pk[:]) != 1 {
			t.Fatal("alloc")
		}
		pool.Append(&pk[0], len(frame))
		copy(pool.Data(&pk[0]), frame)
		for n.pod[i%2].Tx(pk[:]) != 1 { // the pod's ring is full: let the workers drain it
			check()
			runtime.Gosched()
		}
		if i%8 == 7 {
			check()
		}
	}
	close(quit)
	<-done
	full := func() int { return int(n.eng.ifaces[0].Stats().Drops[DropTxFull]) }
	for deadline := time.Now().Add(2 * time.Second); got+full() < total && time.Now().Before(deadline); {
		check()
		runtime.Gosched()
	}
	stop()
	check()
	t.Logf("%d reloads, encapsulations seen %v", reloads.Load(), seen)
	if bad > 0 {
		t.Fatalf("%d bad packets", bad)
	}
	// Every packet reaches the uplink or is counted as refused by its ring (the test
	// drains it no faster than the machine lets it): none is lost to a reload.
	if got+full() != total {
		for _, in := range n.eng.ifaces {
			s := in.Stats()
			t.Logf("%s: rx %d tx %d drops %v", in.Name, s.RxPackets, s.TxPackets, s.Drops)
		}
		t.Errorf("%d of %d packets reached the uplink, %d refused by a full ring", got, total, full())
	}
	if s := n.eng.ifaces[1].Stats(); s.RxPackets != total {
		t.Errorf("pod counted %d received across the reloads, want %d", s.RxPackets, total)
	}
	if s := n.eng.ifaces[0].Stats(); s.TxPackets != uint64(got) {
		t.Errorf("uplink counted %d sent across the reloads, want %d", s.TxPackets, got)
	}
	allFramesBack(t, pool, c, []*Engine{n.eng}, append(append([]pmd.Port{}, n.pod...), ul[1]...)...)
}
