// Package topo builds the two-node test topology of the vRouter example in network
// namespaces, for the demo, the end-to-end tests and the benchmarks alike:
//
//	 pod k1 (kernel)   pod d1 (DPDK-style)          pod k2 (kernel)   pod d2 (DPDK-style)
//	 10.1.1.2          10.1.1.3                     10.1.2.2          10.1.2.3
//	   │ veth            │ vhost-user                 │ veth            │ vhost-user
//	┌──┴─────────────────┴──┐   underlay veth    ┌──┴─────────────────┴──┐
//	│ node n1  192.168.50.1 ├────────────────────┤ node n2  192.168.50.2 │
//	└───────────────────────┘                    └───────────────────────┘
//
// In Kernel mode the nodes forward with the Linux kernel instead: a bridge and a vxlan
// device per node, all pods in one 10.1.0.0/16 layer-2 overlay (the default-network
// path of a CNI such as flannel). In VRouter mode each node runs the dpkit vRouter.
//
// Names carry a random prefix so several topologies can coexist; Down removes
// everything Up made, also after a partial Up.
package topo

import (
	"bytes"
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"syscall"

	"github.com/dpkit/dpkit/internal/child"
)

// Mode selects who forwards.
type Mode int

const (
	// Kernel: bridge + vxlan per node.
	Kernel Mode = iota
	// VRouter: the dpkit vRouter per node; the caller starts it (see Node.Config).
	VRouter
)

// Pod is a pod namespace.
type Pod struct {
	NS      string // namespace name
	Node    int    // 0 or 1
	Kind    string // "kernel" or "dpdk"
	Addr    string // pod address without prefix length
	Prefix  int    // prefix length of its subnet
	Gateway string // its default gateway ("" in Kernel mode: one L2 subnet)
	// Addr6 and Gateway6 are its IPv6 address (a /64) and gateway with
	// Options.IPv6, "" otherwise.
	Addr6, Gateway6 string
	MAC             string // the MAC of its interface eth0
	HostIf          string // the host end of its veth in the node namespace (kernel pods)
}

// Node is a node namespace.
type Node struct {
	NS       string
	Underlay string // underlay address
	UlMAC    string // MAC of its underlay interface "ul"
	Index    int
}

// Topology is what Up built.
type Topology struct {
	Mode   Mode
	PodMTU int
	Queues int // Options.Queues, at least 1
	IPv6   bool
	Prefix string
	// Options.ForwardingCPUs and Options.ControlCPUs.
	ForwardingCPUs, ControlCPUs string
	Nodes                       [2]*Node
	Pods                        []*Pod
	made                        []string // namespaces created, for Down
}

// Options shape the topology.
type Options struct {
	Mode Mode
	// DPDKPods adds a DPDK-style pod namespace per node (its interface is made by
	// whatever attaches it over vhost-user, not by topo).
	DPDKPods bool
	// PodMTU and UnderlayMTU default to 1500 and 1600 (room for the encapsulation).
	PodMTU, UnderlayMTU int
	// PodOffloads keeps the kernel pods' TX checksum/segmentation offloads on. An
	// AF_XDP host end needs them off (frames must carry full checksums).
	PodOffloads bool
	// IPv6 gives every pod an IPv6 address and gateway too (VRouter mode).
	IPv6 bool
	// Queues above 1 make the topology multi-queue: the underlay veth gets that many
	// queues each way (a vRouter transmitting on its uplink's queue q reaches the
	// peer's queue q), and in VRouter mode each vRouter opens them all and runs that
	// many forwarding workers, and DPDK-style pods attach with that many queue pairs.
	Queues int
	// ForwardingCPUs and ControlCPUs, when set, are every vRouter's forwarding_cpus
	// and control_cpus (VRouter mode).
	ForwardingCPUs, ControlCPUs string
	// NamePrefix starts every namespace name, before 6 random hex digits and the
	// namespace's own name; "" is "vr". The demo uses its own, so that it can find
	// what an earlier run killed with SIGKILL left behind.
	NamePrefix string
}

// command is exec.Command for every process topo starts. Each gets a process group
// of its own: the SIGINT a terminal's Ctrl-C sends to its foreground group (make demo
// and everything under it) reaches the demo, which finishes the step under way and
// tears down in order, and not its vRouters, pods, ip and iperf3 commands, which
// would die mid-step (the demo then reported that a vRouter "did not come up") or,
// at a second Ctrl-C, in the middle of the teardown.
func command(args ...string) *exec.Cmd {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs a command and returns its combined output. Like every process topo
// starts, the command dies with this process (child.Run): a killed demo or test
// binary leaves no ping or iperf3 behind.
func run(args ...string) (string, error) {
	var out bytes.Buffer
	cmd := command(args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := child.Run(cmd); err != nil {
		return out.String(), fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Exec runs a command in namespace ns.
func Exec(ns string, args ...string) (string, error) {
	return run(append([]string{"ip", "netns", "exec", ns}, args...)...)
}

func (t *Topology) sh(ns string, cmds ...string) error {
	for _, c := range cmds {
		if _, err := Exec(ns, strings.Fields(c)...); err != nil {
			return err
		}
	}
	return nil
}

func mac(ns, ifname string) (string, error) {
	out, err := Exec(ns, "cat", "/sys/class/net/"+ifname+"/address")
	return strings.TrimSpace(out), err
}

// Up builds the topology.
func Up(opts Options) (t *Topology, err error) {
	if opts.PodMTU == 0 {
		opts.PodMTU = 1500
	}
	if opts.UnderlayMTU == 0 {
		opts.UnderlayMTU = 1600
	}
	var b [3]byte
	rand.Read(b[:])
	t = &Topology{Mode: opts.Mode, PodMTU: opts.PodMTU, IPv6: opts.IPv6 && opts.Mode == VRouter, Queues: max(opts.Queues, 1), Prefix: cmp.Or(opts.NamePrefix, "vr") + hex.EncodeToString(b[:]),
		ForwardingCPUs: opts.ForwardingCPUs, ControlCPUs: opts.ControlCPUs}
	defer func() {
		if err != nil {
			t.Down()
		}
	}()
	newNS := func(name string) (string, error) {
		ns := t.Prefix + "-" + name
		if _, err := run("ip", "netns", "add", ns); err != nil {
			return "", err
		}
		t.made = append(t.made, ns)
		return ns, t.sh(ns, "ip link set lo up")
	}
	for i := range t.Nodes {
		ns, err := newNS(fmt.Sprintf("n%d", i+1))
		if err != nil {
			return t, err
		}
		t.Nodes[i] = &Node{NS: ns, Underlay: fmt.Sprintf("192.168.50.%d", i+1), Index: i}
		// Forwarding in the node namespace is the kernel's only in Kernel mode; the
		// vRouter forwards in userspace.
	}
	n1, n2 := t.Nodes[0], t.Nodes[1]
	uq := fmt.Sprint(max(opts.Queues, 1))
	if _, err := run("ip", "link", "add", "ul", "netns", n1.NS, "mtu", fmt.Sprint(opts.UnderlayMTU),
		"numtxqueues", uq, "numrxqueues", uq, "type", "veth", "peer", "name", "ul", "netns", n2.NS,
		"mtu", fmt.Sprint(opts.UnderlayMTU), "numtxqueues", uq, "numrxqueues", uq); err != nil {
		return t, err
	}
	for _, n := range t.Nodes {
		if err := t.sh(n.NS, "ip addr add "+n.Underlay+"/24 dev ul", "ip link set ul up"); err != nil {
			return t, err
		}
		if n.UlMAC, err = mac(n.NS, "ul"); err != nil {
			return t, err
		}
	}

	kinds := []string{"kernel"}
	if opts.DPDKPods {
		kinds = append(kinds, "dpdk")
	}
	for i, n := range t.Nodes {
		for j, kind := range kinds {
			name := fmt.Sprintf("%c%d", kind[0], i+1) // k1, d1, k2, d2
			ns, err := newNS(name)
			if err != nil {
				return t, err
			}
			p := &Pod{NS: ns, Node: i, Kind: kind, Addr: fmt.Sprintf("10.1.%d.%d", i+1, j+2),
				MAC: fmt.Sprintf("02:00:0a:01:%02x:%02x", i+1, j+2)}
			if opts.Mode == Kernel {
				p.Prefix = 16
			} else {
				p.Prefix, p.Gateway = 24, fmt.Sprintf("10.1.%d.1", i+1)
			}
			if t.IPv6 {
				p.Addr6, p.Gateway6 = fmt.Sprintf("fd00:1:%d::%d", i+1, j+2), fmt.Sprintf("fd00:1:%d::1", i+1)
			}
			t.Pods = append(t.Pods, p)
			if kind != "kernel" {
				continue
			}
			p.HostIf = "v" + name
			if _, err := run("ip", "link", "add", "eth0", "netns", ns, "address", p.MAC, "mtu", fmt.Sprint(opts.PodMTU),
				"type", "veth", "peer", "name", p.HostIf, "netns", n.NS, "mtu", fmt.Sprint(opts.PodMTU)); err != nil {
				return t, err
			}
			if err := t.sh(ns, fmt.Sprintf("ip addr add %s/%d dev eth0", p.Addr, p.Prefix), "ip link set eth0 up"); err != nil {
				return t, err
			}
			if p.Gateway != "" {
				if err := t.sh(ns, "ip route add default via "+p.Gateway+" dev eth0"); err != nil {
					return t, err
				}
			}
			if p.Addr6 != "" {
				if err := t.sh(ns, "ip -6 addr add "+p.Addr6+"/64 dev eth0 nodad",
					"ip -6 route add default via "+p.Gateway6+" dev eth0"); err != nil {
					return t, err
				}
			}
			if !opts.PodOffloads {
				if err := t.sh(ns, "ethtool -K eth0 tx off tso off gso off"); err != nil {
					return t, err
				}
			}
			if err := t.sh(n.NS, "ip link set "+p.HostIf+" up"); err != nil {
				return t, err
			}
		}
	}
	if opts.Mode == Kernel {
		for i, n := range t.Nodes {
			peer := t.Nodes[1-i]
			cmds := []string{
				"ip link add br0 type bridge",
				fmt.Sprintf("ip link add vxlan0 type vxlan id 100 local %s remote %s dstport 4789 dev ul", n.Underlay, peer.Underlay),
				"ip link set vxlan0 master br0",
				"ip link set vxlan0 up",
				"ip link set br0 up",
			}
			for _, p := range t.Pods {
				if p.Node == i && p.HostIf != "" {
					cmds = append(cmds, "ip link set "+p.HostIf+" master br0")
				}
			}
			if err := t.sh(n.NS, cmds...); err != nil {
				return t, err
			}
		}
	}
	return t, nil
}

// Pod returns the pod of kind on node (0 or 1).
func (t *Topology) Pod(node int, kind string) *Pod {
	for _, p := range t.Pods {
		if p.Node == node && p.Kind == kind {
			return p
		}
	}
	return nil
}

// Down deletes every namespace Up made (and with them their interfaces).
func (t *Topology) Down() error {
	var first error
	for i := len(t.made) - 1; i >= 0; i-- {
		if _, err := run("ip", "netns", "del", t.made[i]); err != nil && first == nil {
			first = err
		}
	}
	t.made = nil
	return first
}
