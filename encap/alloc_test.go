package encap

import (
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// The hot paths allocate nothing per packet: single and batch encap and decap, the
// stage functions, Spread and FlowHash, for every variant.
func TestZeroAlloc(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(64)
	defer c.Flush()
	for _, v := range variants() {
		tun := mustTunnel(t, v.opts)
		d := NewDecapper(DecapOptions{VerifyUDPChecksum: true, MPLSPayloadEthernet: v.opts.InnerEthernet, StripInnerVLAN: true,
			ECN: true, InnerFlowHash: true})
		pk := load(t, pool, c, v.inner)
		var r Result
		allocs := testing.AllocsPerRun(100, func() {
			pk.Flags = 0 // hash it every time
			if err := tun.Encap(pool, &pk); err != nil {
				t.Fatal(err)
			}
			if d.Decap(pool, &pk, &r) != OK {
				t.Fatal("decap")
			}
			FlowHash(pool.Data(&pk), v.opts.Type == VXLAN, HashOptions{Symmetric: true})
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per encap+decap", v.name, allocs)
		}
		c.Free([]pmd.Pkt{pk})
	}

	// The batch calls and stages over a burst.
	v := findVariant(t, "vxlan/outer6")
	tun := mustTunnel(t, v.opts)
	tunnels := []*Tunnel{tun}
	d := NewDecapper(DecapOptions{})
	var b, w0, w1 pmd.Batch
	for i := 0; i < 32; i++ {
		b.Push(load(t, pool, c, v.inner))
	}
	off, n := b.Pkts()[0].Off, b.Pkts()[0].Len
	var res [32]Result
	drop := func(pk *pmd.Pkt, why Reason) { t.Fatalf("drop %v", why) }
	workers := []*pmd.Batch{&w0, &w1}
	allocs := testing.AllocsPerRun(100, func() {
		pkts := b.Pkts()
		for i := range pkts {
			pkts[i].Off, pkts[i].Len, pkts[i].Meta, pkts[i].Flags = off, n, 0, 0
		}
		if k, err := tun.EncapBatch(pool, pkts); k != len(pkts) || err != nil {
			t.Fatal(err)
		}
		if d.DecapBatch(pool, pkts, res[:], drop) != len(pkts) {
			t.Fatal("decap batch")
		}
		for i := range pkts {
			pkts[i].Meta = 0
		}
		EncapStage(pool, &b, tunnels, drop)
		d.ClassifyStage(pool, &b, HashOptions{}, drop)
		Spread(&b, workers)
		for _, w := range workers {
			d.DecapStage(pool, w, drop)
			for _, pk := range w.Pkts() {
				b.Push(pk)
			}
			w.Reset()
		}
		d.Flush()
		_ = d.Stats()
	})
	if allocs != 0 {
		t.Errorf("%v allocs per burst through the batch calls and stages", allocs)
	}
	c.Free(b.Pkts())
}
