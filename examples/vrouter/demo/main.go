// Command demo runs the two-node vRouter demo (make demo): it builds the namespace
// topology, starts a dpkit vRouter per node with a kernel pod (veth, AF_XDP) and a
// DPDK-style pod (vhost-user) on each, and for each encapsulation measures ping and
// iperf3 between pods on different nodes; then, with -jumbo, the same over VXLAN with
// every pod at MTU 8950 on a 9000-byte underlay. It prints a table and cleans up.
//
//	demo -vrouter bin/vrouter -pod bin/vhostpod
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/topo"
)

func main() {
	vr := flag.String("vrouter", "bin/vrouter", "vrouter binary")
	pod := flag.String("pod", "bin/vhostpod", "vhostpod binary")
	secs := flag.Int("seconds", 3, "iperf3 duration per run")
	jumbo := flag.Bool("jumbo", true, "also run VXLAN with jumbo frames (pods at MTU 8950)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "the demo needs root (namespaces, XDP)")
		os.Exit(1)
	}
	unlock, err := cleanLeftovers()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
	defer unlock()
	// Interrupted, the demo finishes the step under way (a few seconds at most), then
	// stops its processes and removes the namespaces on its way out.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	err = run(ctx, *vr, *pod, time.Duration(*secs)*time.Second, *jumbo)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		unlock()
		os.Exit(1)
	}
}

// namePrefix starts the names of the demo's namespaces and temporary directory.
const namePrefix = "vrdemo"

// cleanLeftovers takes the demo's lock, so that one demo runs at a time, and removes
// what an earlier demo killed with SIGKILL left behind: its namespaces (and their
// veths, with any process still in them) and its temporary directory (configs, logs,
// vhost-user sockets). Its processes died with it (internal/child).
func cleanLeftovers() (unlock func(), err error) {
	const lockPath = "/run/dpkit-vrouter-demo.lock"
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("another demo is running (it holds %s): wait for it or stop it", lockPath)
	}
	unlock = func() { f.Close() }
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		unlock()
		return nil, fmt.Errorf("ip netns list: %v", err)
	}
	for _, ns := range leftoverNamespaces(string(out)) {
		fmt.Println("removing namespace", ns, "left by an earlier demo")
		if pids, err := exec.Command("ip", "netns", "pids", ns).Output(); err == nil {
			for _, p := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(p); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			unlock()
			return nil, fmt.Errorf("cannot remove namespace %s, left by an earlier demo (remove it with ip netns del %s): %v: %s",
				ns, ns, err, strings.TrimSpace(string(out)))
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), namePrefix+"*"))
	for _, d := range dirs {
		fmt.Println("removing", d, "left by an earlier demo")
		os.RemoveAll(d)
	}
	return unlock, nil
}

// leftoverNamespaces returns the demo's namespaces in ip netns list's output
// ("name" or "name (id: N)" per line).
func leftoverNamespaces(list string) []string {
	var names []string
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], namePrefix) {
			names = append(names, f[0])
		}
	}
	return names
}

type row struct {
	encap, from, to string
	ping            topo.PingResult
	bps             float64
	err             error
}

func run(ctx context.Context, vr, pod string, d time.Duration, jumbo bool) error {
	dir, err := os.MkdirTemp("", namePrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Println("building the topology: two nodes (namespaces) joined by an underlay veth,")
	fmt.Println("each with a kernel pod (veth, AF_XDP) and a DPDK-style pod (vhost-user)")
	rows, err := measure(ctx, dir, vr, pod, d, topo.Options{Mode: topo.VRouter, DPDKPods: true, NamePrefix: namePrefix}, []string{"vxlan", "mplsoudp", "mplsogre"}, "")
	if err != nil {
		return err
	}
	if jumbo {
		fmt.Println("again with jumbo frames: pods at MTU 8950, underlay at 9000")
		more, err := measure(ctx, dir, vr, pod, d, topo.Options{Mode: topo.VRouter, DPDKPods: true, PodMTU: 8950, UnderlayMTU: 9000, NamePrefix: namePrefix},
			[]string{"vxlan"}, " mtu 8950")
		if err != nil {
			return err
		}
		rows = append(rows, more...)
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
		fmt.Fprintf(w, "%s\t%s\t%s\t%.0f%%\t%s\t%s\n", r.encap, r.from, r.to, r.ping.Loss(), rttCell(r.ping), tp)
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

// rttCell is the table's average round trip: "-" when no reply came (ping then
// reports none, and 0s would read as an instant answer).
func rttCell(p topo.PingResult) string {
	if p.Received == 0 {
		return "-"
	}
	return p.AvgRTT.Round(10 * time.Microsecond).String()
}

// measure builds a topology with opts and, for each encapsulation, runs the vRouters
// and measures the pod pairs; label is appended to the encapsulation's name.
func measure(ctx context.Context, dir, vr, pod string, d time.Duration, opts topo.Options, encaps []string, label string) ([]row, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("interrupted")
	}
	t, err := topo.Up(opts)
	if err != nil {
		return nil, err
	}
	defer t.Down()
	k1, k2, d1, d2 := t.Pod(0, "kernel"), t.Pod(1, "kernel"), t.Pod(0, "dpdk"), t.Pod(1, "dpdk")
	var rows []row
	for _, enc := range encaps {
		fmt.Printf("starting the vRouters with %s ...\n", enc)
		c, err := topo.StartCluster(t, dir, vr, pod, enc)
		if err != nil {
			return nil, err
		}
		for _, pr := range [][2]*topo.Pod{{k1, k2}, {d1, d2}, {k1, d2}} {
			if ctx.Err() != nil {
				break
			}
			r := row{encap: enc + label, from: name(t, pr[0]), to: name(t, pr[1])}
			r.ping, r.err = topo.Ping(pr[0], pr[1].Addr, 20, 20*time.Millisecond)
			if r.err == nil && r.ping.Received > 0 {
				r.bps, r.err = topo.IperfTCP(pr[0], pr[1], d)
			}
			rows = append(rows, r)
		}
		if err := c.Stop(); err != nil && ctx.Err() == nil {
			fmt.Println("warning:", err)
		}
		if ctx.Err() != nil {
			fmt.Println("interrupted: cleaning up")
			return nil, fmt.Errorf("interrupted")
		}
	}
	return rows, nil
}

func name(t *topo.Topology, p *topo.Pod) string {
	return fmt.Sprintf("%s pod %s on node%d", p.Kind, p.Addr, p.Node+1)
}
