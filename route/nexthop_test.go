package route

import (
	"errors"
	"net/netip"
	"testing"
)

func TestECMPResilient(t *testing.T) {
	tb, ids := newTestTable(t, 6)
	g, err := tb.AddNextHop(NextHop{Kind: KindECMP, Members: ids[:4]})
	if err != nil {
		t.Fatal(err)
	}
	before := tb.NextHop(g).Buckets()
	count := map[NextHopID]int{}
	for _, m := range before {
		count[m]++
	}
	for _, m := range ids[:4] {
		if count[m] != 64 {
			t.Fatalf("unbalanced %v", count)
		}
	}
	// remove member 1: only its buckets move
	if err := tb.SetNextHop(g, NextHop{Kind: KindECMP, Members: []NextHopID{ids[0], ids[2], ids[3]}}); err != nil {
		t.Fatal(err)
	}
	after := tb.NextHop(g).Buckets()
	for i := range before {
		if before[i] != ids[1] && after[i] != before[i] {
			t.Fatalf("bucket %d of a staying member moved", i)
		}
		if after[i] == ids[1] {
			t.Fatal("removed member still selected")
		}
	}
	// add two members: at most their fair share of buckets move
	if err := tb.SetNextHop(g, NextHop{Kind: KindECMP, Members: []NextHopID{ids[0], ids[2], ids[3], ids[4], ids[5]}}); err != nil {
		t.Fatal(err)
	}
	moved := 0
	final := tb.NextHop(g).Buckets()
	for i := range after {
		if after[i] != final[i] {
			moved++
		}
	}
	if moved > 2*256/5+2 {
		t.Fatalf("%d buckets moved when adding 2 of 5 members", moved)
	}
	if tb.NextHop(g).Select(7) != final[7] || tb.NextHop(ids[0]).Select(1) != NoRoute {
		t.Fatal("Select")
	}
	if tb.RefCount(ids[0]) != 1 || tb.RefCount(ids[1]) != 0 {
		t.Fatalf("refcounts %d %d", tb.RefCount(ids[0]), tb.RefCount(ids[1]))
	}
	if err := tb.DeleteNextHop(ids[0]); !errors.Is(err, ErrNextHopInUse) {
		t.Fatal(err)
	}
	// nesting is refused both ways
	if _, err := tb.AddNextHop(NextHop{Kind: KindECMP, Members: []NextHopID{g}}); !errors.Is(err, ErrBadNextHop) {
		t.Fatalf("nested group: %v", err)
	}
	if err := tb.SetNextHop(ids[0], NextHop{Kind: KindECMP, Members: []NextHopID{ids[1]}}); !errors.Is(err, ErrBadNextHop) {
		t.Fatalf("member turned group: %v", err)
	}
	// route follows an in-place next-hop change
	if err := tb.Insert(0, netip.MustParsePrefix("0.0.0.0/0"), g); err != nil {
		t.Fatal(err)
	}
	if err := tb.SetNextHop(g, NextHop{Kind: KindDiscard}); err != nil {
		t.Fatal(err)
	}
	if nh := tb.NextHop(tb.Lookup(0, netip.MustParseAddr("1.2.3.4"))); nh.Kind != KindDiscard {
		t.Fatalf("route sees %v", nh.Kind)
	}
	if tb.RefCount(ids[2]) != 0 {
		t.Fatal("members of a replaced group keep references")
	}
}

func TestNextHopValidate(t *testing.T) {
	a4, b4, a6 := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::1")
	for _, c := range []struct {
		nh NextHop
		ok bool
	}{
		{NextHop{Kind: KindTunnel, Encap: EncapVXLAN, Remote: a4, Source: b4, Label: 1<<24 - 1}, true},
		{NextHop{Kind: KindTunnel, Encap: EncapVXLAN, Remote: a4, Source: b4, Label: 1 << 24}, false},
		{NextHop{Kind: KindTunnel, Encap: EncapMPLSoGRE, Remote: a4, Source: b4, Label: 1 << 20}, false},
		{NextHop{Kind: KindTunnel, Encap: EncapMPLSoUDP, Remote: a4, Source: a6}, false},
		{NextHop{Kind: KindTunnel, Remote: a4, Source: b4}, false},
		{NextHop{Kind: KindECMP}, false},
		{NextHop{}, false},
		{NextHop{Kind: KindReceive}, true},
	} {
		if err := c.nh.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.nh, err)
		}
	}
	if _, err := New(Options{ECMPBuckets: 100}); !errors.Is(err, ErrBadOptions) {
		t.Fatal("bad options accepted")
	}
}

// TestECMPMemberOrder re-sets a group with the same members in another
// order (as a controller that keeps them in a map would): Members' doc says
// order does not matter, so no bucket may move.
func TestECMPMemberOrder(t *testing.T) {
	tb, ids := newTestTable(t, 3)
	g, err := tb.AddNextHop(NextHop{Kind: KindECMP, Members: []NextHopID{ids[0], ids[1], ids[2]}})
	if err != nil {
		t.Fatal(err)
	}
	for _, ms := range [][]NextHopID{
		{ids[2], ids[1], ids[0]},
		{ids[1], ids[0], ids[2]},
		{ids[0], ids[2], ids[1]},
	} {
		before := tb.NextHop(g).Buckets()
		if err := tb.SetNextHop(g, NextHop{Kind: KindECMP, Members: ms}); err != nil {
			t.Fatal(err)
		}
		after := tb.NextHop(g).Buckets()
		for i := range before {
			if before[i] != after[i] {
				t.Fatalf("members %v: bucket %d moved from %d to %d", ms, i, before[i], after[i])
			}
		}
	}
	// a fresh group's buckets do not depend on member order either
	h, err := tb.AddNextHop(NextHop{Kind: KindECMP, Members: []NextHopID{ids[2], ids[0], ids[1]}})
	if err != nil {
		t.Fatal(err)
	}
	count := map[NextHopID]int{}
	for _, m := range tb.NextHop(h).Buckets() {
		count[m]++
	}
	if count[ids[0]] != 86 || count[ids[1]] != 85 || count[ids[2]] != 85 {
		t.Fatalf("fresh group shares %v depend on member order", count)
	}
}

// TestNextHopIDReuseDelayed: a reader may hold an id it looked up just before the
// last route using it went and the id was freed; it then reads NextHop(id). The id
// must not name another next hop yet: AddNextHop hands out ids never used before
// while there are any, and freed ones oldest first, so a freed id comes back only
// after every other free id has.
func TestNextHopIDReuseDelayed(t *testing.T) {
	tb, err := New(Options{MaxVRFs: 1, MaxNextHops: 8})
	if err != nil {
		t.Fatal(err)
	}
	tenantA, err := tb.AddNextHop(NextHop{Kind: KindLocal, Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("10.0.0.0/8")
	if err := tb.Insert(0, p, tenantA); err != nil {
		t.Fatal(err)
	}
	held := tb.Lookup(0, netip.MustParseAddr("10.1.2.3")) // a worker's lookup
	if err := tb.Delete(0, p); err != nil {
		t.Fatal(err)
	}
	if err := tb.DeleteNextHop(tenantA); err != nil {
		t.Fatal(err)
	}
	tenantB, err := tb.AddNextHop(NextHop{Kind: KindLocal, Port: 2})
	if err != nil {
		t.Fatal(err)
	}
	if nh := tb.NextHop(held); tenantB == held || nh != nil {
		t.Fatalf("id %d, freed while a reader held it, was handed out again at once: now %+v", held, nh)
	}
	// use up the fresh ids (3..7): only then does the freed one come back; free
	// two more: they come back oldest first
	var ids []NextHopID
	for {
		id, err := tb.AddNextHop(NextHop{Kind: KindDiscard})
		if errors.Is(err, ErrTableFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if len(ids) != 6 || ids[5] != held {
		t.Fatalf("ids %v after %d and %d, want 3..7 then %d, the freed one, last", ids, held, tenantB, held)
	}
	for _, id := range []NextHopID{ids[3], ids[1]} {
		if err := tb.DeleteNextHop(id); err != nil {
			t.Fatal(err)
		}
	}
	for _, want := range []NextHopID{ids[3], ids[1]} {
		if id, err := tb.AddNextHop(NextHop{Kind: KindDiscard}); err != nil || id != want {
			t.Fatalf("AddNextHop = %d, %v; want %d (the oldest freed)", id, err, want)
		}
	}
	if _, err := tb.AddNextHop(NextHop{Kind: KindDiscard}); !errors.Is(err, ErrTableFull) {
		t.Fatalf("AddNextHop on a full table: %v", err)
	}
}
