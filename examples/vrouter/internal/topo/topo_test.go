package topo

import (
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
)

// The kernel path works end to end: ping across the vxlan overlay, both ways.
func TestKernelPath(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "ping", "ethtool")
	top, err := Up(Options{Mode: Kernel, PodOffloads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := top.Down(); err != nil {
			t.Error(err)
		}
	}()
	k1, k2 := top.Pod(0, "kernel"), top.Pod(1, "kernel")
	if out, err := Exec(k1.NS, "ping", "-c", "2", "-i", "0.2", "-W", "2", k2.Addr); err != nil {
		t.Fatalf("k1 -> k2: %v\n%s", err, out)
	}
	out, err := Exec(k2.NS, "ping", "-c", "1", "-W", "2", k1.Addr)
	if err != nil || !strings.Contains(out, "1 received") {
		t.Fatalf("k2 -> k1: %v\n%s", err, out)
	}
}

func TestKernelPathMeasure(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "ping", "iperf3")
	top, err := Up(Options{Mode: Kernel, PodOffloads: true})
	if err != nil {
		t.Fatal(err)
	}
	defer top.Down()
	k1, k2 := top.Pod(0, "kernel"), top.Pod(1, "kernel")
	r, err := Ping(k1, k2.Addr, 3, 100*time.Millisecond)
	if err != nil || r.Received != 3 || r.AvgRTT <= 0 {
		t.Fatalf("ping %+v %v", r, err)
	}
	bps, err := IperfTCP(k1, k2, time.Second)
	if err != nil || bps < 1e6 {
		t.Fatalf("iperf3 %.0f bit/s %v", bps, err)
	}
	t.Logf("kernel path: rtt %v, TCP %.2f Gbit/s", r.AvgRTT, bps/1e9)
}
