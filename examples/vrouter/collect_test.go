package main

import (
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/dataplane"
	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
)

// TestXSKDropsMetric: frames the kernel drops at an interface's AF_XDP socket, before
// the vRouter sees them, are counted in vrouter_xsk_drops_total. Found by the pod-to-pod
// benchmark: at a paced rate below what the vRouters forward, a sixth of the frames
// n1 sent out of its uplink never reached n2's (n2's socket had no room while its
// worker was off the CPU), and no metric of either vRouter showed them. Here nobody
// polls the socket, so frames sent into its interface overflow its rings.
func TestXSKDropsMetric(t *testing.T) {
	testenv.NeedRoot(t)
	a, b := nettest.NewNS(t), nettest.NewNS(t)
	v := nettest.NewVeth(t, a, b, nettest.VethOptions{})
	var p *xsk.Port
	if err := a.Do(func() (err error) {
		p, err = xsk.Open(v.A, 0, xsk.Options{UMEMOptions: xsk.UMEMOptions{Frames: 256},
			Socket: xsk.Config{RxSize: 64, FillSize: 64, TxSize: 64, CompSize: 64}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pool := p.UMEMPool()
	cp := pmd.NewCaptureGroup(pool, p)[0] // as main wraps every queue
	eng := dataplane.New(dataplane.Config{Pool: pool, Ifaces: []*dataplane.Iface{
		{Name: "uplink", Kind: dataplane.Uplink, Queues: []pmd.Port{cp}}}})
	defer eng.Close()
	r := &router{pool: pool, eng: eng}

	raw := b.OpenRaw(t, v.B)
	frame := make([]byte, 60)
	copy(frame, v.MACA)
	copy(frame[6:], v.MACB)
	frame[12], frame[13] = 0x08, 0x00
	const sent = 500
	for range sent {
		if err := raw.Send(frame); err != nil {
			t.Fatal(err)
		}
	}
	want := uint64(sent - 64) // at least what the 64-entry RX ring could not hold
	var got float64
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		got = 0
		for _, f := range r.collect(nil) {
			if f.Name != "vrouter_xsk_drops_total" {
				continue
			}
			for _, s := range f.Samples {
				if strings.Join(s.Labels, ",") == "interface,uplink,reason,rx_ring_full" ||
					strings.Join(s.Labels, ",") == "interface,uplink,reason,rx_dropped" {
					got += s.Value
				}
			}
		}
		if got >= float64(want) || time.Now().After(deadline) {
			break
		}
	}
	st, err := p.Socket().Stats()
	if err != nil {
		t.Fatal(err)
	}
	if got < float64(want) || got != float64(st.RxRingFull+st.RxDropped) {
		t.Fatalf("vrouter_xsk_drops_total rx_ring_full+rx_dropped = %v after %d frames into a socket nobody polls; want at least %d, and the socket's own %d+%d",
			got, sent, want, st.RxRingFull, st.RxDropped)
	}
}
