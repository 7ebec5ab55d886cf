package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
)

// TestPingAcrossForwarder runs xdpfwd as a wire between two namespaces and pings
// across it.
func TestPingAcrossForwarder(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ping", "ethtool")
	n1, f, n2 := nettest.NewNS(t), nettest.NewNS(t), nettest.NewNS(t)
	x := nettest.NewVeth(t, n1, f, nettest.VethOptions{Queues: 2})
	y := nettest.NewVeth(t, n2, f, nettest.VethOptions{Queues: 2})
	n1.AddAddr(t, x.A, netip.MustParsePrefix("10.88.0.1/24"))
	n2.AddAddr(t, y.A, netip.MustParsePrefix("10.88.0.2/24"))
	// Kernel-made skbs (ARP) reach veth's native XDP only with TSO off on the sender.
	n1.SetTxOffload(t, x.A, false)
	n2.SetTxOffload(t, y.A, false)

	done := make(chan error, 1)
	go func() {
		done <- f.Do(func() error {
			return run(config{a: x.B, b: y.B, ring: 512, burst: 32, duration: 4 * time.Second})
		})
	}()
	// Let it attach to both ends (its sockets are bound by then), however long a
	// loaded machine takes.
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		xa, xb := f.Link(t, x.B).Attrs().Xdp, f.Link(t, y.B).Attrs().Xdp
		if xa != nil && xa.Attached && xb != nil && xb.Attached {
			break
		}
	}
	out, err := n1.Exec("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.88.0.2")
	if err != nil {
		t.Errorf("ping across xdpfwd: %v\n%s", err, out)
	}
	if err := <-done; err != nil {
		t.Fatalf("xdpfwd: %v", err)
	}
	if x := f.Link(t, x.B).Attrs().Xdp; x != nil && x.Attached {
		t.Error("XDP program left attached after exit")
	}
}

// TestValidateFlags: flag values that would misconfigure the forwarder are refused.
func TestValidateFlags(t *testing.T) {
	good := config{a: "x", ring: 512, burst: 32}
	if err := good.validate(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []config{
		{ring: 512, burst: 32},                     // no -a
		{a: "x", ring: 0, burst: 32},               // ring 0: UMEM sized for empty rings
		{a: "x", ring: 512, burst: 0},              // burst
		{a: "x", ring: 512, burst: 32, queues: -1}, // queues
		{a: "x", ring: 512, burst: 32, copyMode: true, zeroCopy: true},
		{a: "x", ring: 512, burst: 32, duration: -time.Second}, // ran until interrupted
		{a: "x", ring: 512, burst: 32, interval: -time.Second}, // turned statistics off
	} {
		if err := c.validate(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}
