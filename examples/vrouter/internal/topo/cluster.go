package topo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/internal/child"
)

// Cluster runs the dpkit vRouter on each node of a VRouter-mode topology, and the
// DPDK-style pods (vhostpod: a vhost-user front-end bridged to a TAP in the pod's
// namespace) on the vhost-user side.
type Cluster struct {
	T       *Topology
	Dir     string // configs, sockets, logs
	Encap   string
	VRouter string // binary paths
	// PodBin is vhostpod; "" leaves the DPDK-style pods to the caller, who attaches
	// them to Socket (as a server: the vRouters connect, and reconnect until one
	// listens), e.g. with dpdk-testpmd's virtio-user.
	PodBin string
	// VRouterArgs are extra flags for every vRouter (e.g. -idle busy-poll).
	VRouterArgs []string
	vr          [2]*proc
	pods        map[string]*proc
}

// proc is a child process whose exit one goroutine collects, so that any caller can
// see it has ended. A child dies with the process that started it (Pdeathsig), so a
// killed test or demo leaves none running.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := child.Start(cmd); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig and waits up to d for the process to end, then kills it; it
// reports whether sig was enough, and how the process ended.
func (p *proc) stop(sig syscall.Signal, d time.Duration) (bool, error) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-p.done
		return false, p.err
	}
}

// ConfigPath returns node i's config file.
func (c *Cluster) ConfigPath(i int) string { return filepath.Join(c.Dir, fmt.Sprintf("n%d.yaml", i+1)) }

// Socket returns the vhost-user socket of a DPDK pod.
func (c *Cluster) Socket(p *Pod) string { return filepath.Join(c.Dir, filepath.Base(p.NS)+".sock") }

// Config renders node i's configuration; extra is appended to the VRF's routes.
func (c *Cluster) Config(i int, encap string, extraRoutes ...string) string {
	n, peer := c.T.Nodes[i], c.T.Nodes[1-i]
	var b strings.Builder
	fmt.Fprintf(&b, "node: {name: n%d, underlay_ip: %s}\n", i+1, n.Underlay)
	fmt.Fprintf(&b, "uplink: {interface: ul, xdp_mode: auto, queues: %d}\n", c.T.Queues)
	switch {
	case c.T.ForwardingCPUs != "":
		fmt.Fprintf(&b, "forwarding_cpus: %q\n", c.T.ForwardingCPUs)
	case c.T.Queues > 1:
		// One forwarding worker per queue; with more workers than CPUs they share.
		fmt.Fprintf(&b, "forwarding_cpus: \"0-%d\"\n", c.T.Queues-1)
	}
	if c.T.ControlCPUs != "" {
		fmt.Fprintf(&b, "control_cpus: %q\n", c.T.ControlCPUs)
	}
	fmt.Fprintf(&b, "metrics: 127.0.0.1:9470\nlog_level: info\n")
	fmt.Fprintf(&b, "exception: {tap: vrhost, unknown: drop}\n")
	fmt.Fprintf(&b, "vrfs:\n  - name: red\n    vni: 100\n    label: 100\n    routes:\n")
	fmt.Fprintf(&b, "      - {prefix: 10.1.%d.0/24, remote: peer}\n", peer.Index+1)
	if c.T.IPv6 {
		fmt.Fprintf(&b, "      - {prefix: \"fd00:1:%d::/64\", remote: peer}\n", peer.Index+1)
	}
	for _, r := range extraRoutes {
		fmt.Fprintf(&b, "      - %s\n", r)
	}
	fmt.Fprintf(&b, "interfaces:\n")
	for _, p := range c.T.Pods {
		if p.Node != i {
			continue
		}
		ips, gws := p.Addr, p.Gateway
		if p.Addr6 != "" {
			ips, gws = ips+", \""+p.Addr6+"\"", gws+", \""+p.Gateway6+"\""
		}
		fmt.Fprintf(&b, "  - name: %s\n    vrf: red\n    ips: [%s]\n    mac: %s\n    gateway: [%s]\n",
			filepath.Base(p.NS)[len(c.T.Prefix)+1:], ips, p.MAC, gws)
		if p.Kind == "kernel" {
			fmt.Fprintf(&b, "    type: veth\n    veth: {interface: %s}\n", p.HostIf)
		} else {
			fmt.Fprintf(&b, "    type: vhost\n    vhost: {socket: %s, role: client, queues: %d}\n", c.Socket(p), c.T.Queues)
		}
	}
	fmt.Fprintf(&b, "remotes:\n  - {name: peer, underlay_ip: %s, mac: \"%s\", encap: %s}\n", peer.Underlay, peer.UlMAC, encap)
	return b.String()
}

// StartCluster writes the configs and starts pods and vRouters, then waits until
// every pod has its interface and the vRouters answer their metrics endpoint.
func StartCluster(t *Topology, dir, vrouterBin, podBin, encap string, vrouterArgs ...string) (*Cluster, error) {
	c := &Cluster{T: t, Dir: dir, Encap: encap, VRouter: vrouterBin, PodBin: podBin, VRouterArgs: vrouterArgs,
		pods: map[string]*proc{}}
	for _, p := range t.Pods {
		if p.Kind == "dpdk" && podBin != "" {
			if err := c.StartPod(p); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	for i := range t.Nodes {
		if err := os.WriteFile(c.ConfigPath(i), []byte(c.Config(i, encap)), 0o644); err != nil {
			c.Stop()
			return nil, err
		}
		if err := c.StartVRouter(i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, p := range t.Pods {
		if p.Kind == "dpdk" && podBin != "" {
			if err := c.configurePod(p); err != nil {
				c.Stop()
				return nil, err
			}
		}
	}
	return c, nil
}

func (c *Cluster) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(c.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// Log returns what a process logged.
func (c *Cluster) Log(name string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, name+".log"))
	return string(b)
}

// StartVRouter starts (or restarts) node i's vRouter and configures the host side of
// its exception TAP.
func (c *Cluster) StartVRouter(i int) error {
	n := c.T.Nodes[i]
	lf, err := c.logFile(fmt.Sprintf("vrouter-n%d", i+1))
	if err != nil {
		return err
	}
	args := append([]string{"ip", "netns", "exec", n.NS, c.VRouter, "-config", c.ConfigPath(i)}, c.VRouterArgs...)
	cmd := command(args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	pr, err := startProc(cmd)
	lf.Close() // the child has its own descriptor
	if err != nil {
		return err
	}
	c.vr[i] = pr
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := Exec(n.NS, "curl", "-sf", "http://127.0.0.1:9470/healthz"); err == nil {
			break
		}
		if time.Now().After(deadline) || pr.exited() {
			return fmt.Errorf("vrouter on %s did not come up:\n%s", n.NS, c.Log(fmt.Sprintf("vrouter-n%d", i+1)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The host answers its pods' gateway address on the exception TAP.
	gw := fmt.Sprintf("10.1.%d.1", i+1)
	Exec(n.NS, "ip", "link", "set", "vrhost", "up")
	Exec(n.NS, "ip", "addr", "add", gw+"/32", "dev", "vrhost")
	Exec(n.NS, "ip", "route", "add", fmt.Sprintf("10.1.%d.0/24", i+1), "dev", "vrhost", "src", gw)
	return nil
}

// Pid returns the process id of node i's vRouter (0 if it is not running).
func (c *Cluster) Pid(i int) int {
	if c.vr[i] == nil {
		return 0
	}
	return c.vr[i].cmd.Process.Pid
}

// Reload rewrites node i's config and sends SIGHUP.
func (c *Cluster) Reload(i int, config string) error {
	if err := os.WriteFile(c.ConfigPath(i), []byte(config), 0o644); err != nil {
		return err
	}
	// ip netns exec execs the vRouter in place: the process is ours.
	return c.vr[i].cmd.Process.Signal(syscall.SIGHUP)
}

// StopVRouter stops node i's vRouter (SIGTERM) and waits for it.
func (c *Cluster) StopVRouter(i int) error {
	pr := c.vr[i]
	if pr == nil {
		return nil
	}
	c.vr[i] = nil
	ok, err := pr.stop(syscall.SIGTERM, 10*time.Second)
	if !ok {
		return fmt.Errorf("vrouter n%d did not stop on SIGTERM", i+1)
	}
	return err
}

// StartPod starts a DPDK-style pod: it owns its socket (server), the vRouter connects.
// It returns once the pod listens, or has already been attached: the pod stops
// listening (and its socket file goes) as soon as the vRouter connects, which a
// reconnecting vRouter can do between two looks at the file.
func (c *Cluster) StartPod(p *Pod) error {
	name := filepath.Base(p.NS)
	attached := strings.Count(c.Log(name), "msg=attached")
	lf, err := c.logFile(name)
	if err != nil {
		return err
	}
	os.Remove(c.Socket(p))
	cmd := command("ip", "netns", "exec", p.NS, c.PodBin, "-socket", c.Socket(p), "-listen", "-tap", "eth0",
		"-queues", fmt.Sprint(c.T.Queues))
	cmd.Stdout, cmd.Stderr = lf, lf
	pr, err := startProc(cmd)
	lf.Close()
	if err != nil {
		return err
	}
	c.pods[p.NS] = pr
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(c.Socket(p)); err == nil {
			return nil
		}
		if strings.Count(c.Log(name), "msg=attached") > attached {
			return nil
		}
		if time.Now().After(deadline) || pr.exited() {
			return fmt.Errorf("pod %s did not listen:\n%s", name, c.Log(name))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// KillPod kills a DPDK-style pod abruptly (SIGKILL), as a crashing pod would die.
func (c *Cluster) KillPod(p *Pod) {
	if pr := c.pods[p.NS]; pr != nil {
		pr.stop(syscall.SIGKILL, time.Minute)
		delete(c.pods, p.NS)
	}
}

// RestartPod starts a killed pod again and configures its interface.
func (c *Cluster) RestartPod(p *Pod) error {
	if err := c.StartPod(p); err != nil {
		return err
	}
	return c.configurePod(p)
}

// configurePod addresses the pod's TAP once the front-end created it.
func (c *Cluster) configurePod(p *Pod) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := Exec(p.NS, "ip", "link", "show", "eth0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pod %s has no eth0:\n%s", p.NS, c.Log(filepath.Base(p.NS)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	err := c.T.sh(p.NS,
		"ip link set eth0 address "+p.MAC,
		fmt.Sprintf("ip link set eth0 mtu %d", c.T.PodMTU),
		"ip link set eth0 up",
		fmt.Sprintf("ip addr add %s/%d dev eth0", p.Addr, p.Prefix),
		"ip route add default via "+p.Gateway+" dev eth0")
	if err != nil || p.Addr6 == "" {
		return err
	}
	return c.T.sh(p.NS, "ip -6 addr add "+p.Addr6+"/64 dev eth0 nodad",
		"ip -6 route add default via "+p.Gateway6+" dev eth0")
}

// Metrics returns node i's Prometheus exposition.
func (c *Cluster) Metrics(i int) (string, error) {
	return Exec(c.T.Nodes[i].NS, "curl", "-sf", "http://127.0.0.1:9470/metrics")
}

// Stop stops every process the cluster started.
func (c *Cluster) Stop() error {
	var first error
	for i := range c.vr {
		if err := c.StopVRouter(i); err != nil && first == nil {
			first = err
		}
	}
	for _, pr := range c.pods {
		pr.stop(syscall.SIGTERM, 5*time.Second)
	}
	c.pods = map[string]*proc{}
	return first
}
