// Command demo runs the two-node vRouter demo (make demo): it builds the namespace
// topology, starts a dpkit vRouter per node with a kernel pod (veth, AF_XDP) and a
// DPDK-style pod (vhost-user) on each, and for each encapsulation measures ping and
// iperf3 between pods on different nodes; then it prints a table and cleans up.
//
//	demo -vrouter bin/vrouter -pod bin/vhostpod
package main

import (
	"flag"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/topo"
)

func main() {
	vr := flag.String("vrouter", "bin/vrouter", "vrouter binary")
	pod := flag.String("pod", "bin/vhostpod", "vhostpod binary")
	secs := flag.Int("seconds", 3, "iperf3 duration per run")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the demo needs root (namespaces, XDP)")
		os.Exit(1)
	}
	if err := run(*vr, *pod, time.Duration(*secs)*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type row struct {
	encap, from, to string
	ping            topo.PingResult
	bps             float64
	err             error
}

func run(vr, pod string, d time.Duration) error {
	dir, err := os.MkdirTemp("", "vrdemo")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the topology: two nodes (namespaces) joined by an underlay veth,")
	fmt.Println("each with a kernel pod (veth, AF_XDP) and a DPDK-style pod (vhost-user)")
	t, err := topo.Up(topo.Options{Mode: topo.VRouter, DPDKPods: true})
	if err != nil {
		return err
	}
	defer t.Down()
	k1, k2, d1, d2 := t.Pod(0, "kernel"), t.Pod(1, "kernel"), t.Pod(0, "dpdk"), t.Pod(1, "dpdk")
	var rows []row
	for _, enc := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		fmt.Printf("starting the vRouters with %s ...\n", enc)
		c, err := topo.StartCluster(t, dir, vr, pod, enc)
		if err != nil {
			return err
		}
		for _, pr := range [][2]*topo.Pod{{k1, k2}, {d1, d2}, {k1, d2}} {
			r := row{encap: enc, from: name(t, pr[0]), to: name(t, pr[1])}
			r.ping, r.err = topo.Ping(pr[0], pr[1].Addr, 20, 20*time.Millisecond)
			if r.err == nil && r.ping.Received > 0 {
				r.bps, r.err = topo.IperfTCP(pr[0], pr[1], d)
			}
			rows = append(rows, r)
		}
		if err := c.Stop(); err != nil {
			fmt.Println("warning:", err)
		}
	}
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "encap\tfrom\tto\tping loss\tavg rtt\tTCP throughput")
	failed := false
	for _, r := range rows {
		tp := fmt.Sprintf("%.2f Gbit/s", r.bps/1e9)
		if r.err != nil {
			tp, failed = "error: "+r.err.Error(), true
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%.0f%%\t%v\t%s\n", r.encap, r.from, r.to, r.ping.Loss(), r.ping.AvgRTT.Round(10*time.Microsecond), tp)
		if r.ping.Loss() > 10 {
			failed = true
		}
	}
	w.Flush()
	if failed {
		return fmt.Errorf("some pod pairs could not talk")
	}
	return nil
}

func name(t *topo.Topology, p *topo.Pod) string {
	return fmt.Sprintf("%s pod %s on node%d", p.Kind, p.Addr, p.Node+1)
}
