// Package config reads and validates the vRouter's configuration file (YAML), naming
// the bad field in every error, e.g. `interfaces[1].vhost.role: "clinet" is not one of
// server, client`.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/route"
)

// Config is one vRouter node.
type Config struct {
	// Node is this node's identity on the underlay.
	Node Node `yaml:"node"`
	// Uplink is the underlay port, an AF_XDP socket on a kernel interface.
	Uplink Uplink `yaml:"uplink"`
	// CPUs for the forwarding workers and the control thread, in DPDK's formats
	// ("0xf", "1,2,4", "1-4", "0-3,8").
	ForwardingCPUs string `yaml:"forwarding_cpus"`
	ControlCPUs    string `yaml:"control_cpus"`
	// Metrics is the loopback address of the Prometheus endpoint, e.g. 127.0.0.1:9470.
	Metrics string `yaml:"metrics"`
	// LogLevel: debug, info, warn, error.
	LogLevel string `yaml:"log_level"`
	// Exception sends traffic addressed to the host, or unroutable, to the kernel.
	Exception *Exception `yaml:"exception"`
	// VRFs, their encapsulation ids and routes.
	VRFs []VRF `yaml:"vrfs"`
	// Interfaces are the pods' ports.
	Interfaces []Interface `yaml:"interfaces"`
	// Remotes are the other vRouter nodes.
	Remotes []Remote `yaml:"remotes"`

	// Parsed forms, filled by Validate.
	FwdCPUs, CtlCPUs pmd.CPUSet `yaml:"-"`
}

// Node is this node's underlay identity.
type Node struct {
	Name     string `yaml:"name"`
	Underlay string `yaml:"underlay_ip"`

	Addr netip.Addr `yaml:"-"` // parsed Underlay
}

// Uplink is the underlay port.
type Uplink struct {
	// Interface is the underlay interface, opened with AF_XDP; the kernel keeps it
	// and all but the overlay traffic. Exactly one of Interface and PCI is set.
	Interface string `yaml:"interface"`
	// PCI is the address ("0000:00:04.0") of a virtio-net NIC bound to vfio-pci,
	// driven by dpkit's userspace driver: the vRouter owns the whole NIC, and the
	// host's own underlay traffic goes through HostTap.
	PCI string `yaml:"pci"`
	// Queues to open (AF_XDP sockets, or the NIC's queue pairs), 0 means 1.
	Queues int `yaml:"queues"`
	// XDPMode: auto (native, falling back to generic), native, generic (Interface).
	XDPMode string `yaml:"xdp_mode"`
	// HostTap (PCI) names a TAP device the vRouter creates for the host kernel, with
	// the NIC's MAC and MTU, as the Contrail vRouter's vhost0: frames the NIC
	// receives that are not tunnel traffic for this node (ARP, the host's own IP
	// traffic) go to it, and what the host sends through it goes out of the NIC.
	// The host configures its underlay address on it. Empty: such frames are dropped.
	HostTap string `yaml:"host_tap"`
	// MTU (PCI) is the NIC's IP MTU; 0 means 1500. The kernel's interface MTU is used
	// with Interface.
	MTU int `yaml:"mtu"`
	// Packed (PCI) drives the NIC with packed virtqueues (the device must offer them).
	Packed bool `yaml:"packed"`
	// GatewayMAC, when set, is the destination MAC of every underlay frame; otherwise
	// each remote's MAC is used.
	GatewayMAC string `yaml:"gateway_mac"`

	GwMAC net.HardwareAddr `yaml:"-"` // parsed GatewayMAC
}

// Exception is the TAP device to the host kernel.
type Exception struct {
	Tap string `yaml:"tap"`
	// Unknown: what to do with packets that match no route: drop or exception.
	Unknown string `yaml:"unknown"`
}

// VRF is one tenant network.
type VRF struct {
	Name string `yaml:"name"`
	// VNI identifies the VRF in VXLAN; Label in MPLS over UDP and MPLS over GRE. Both
	// are what this node expects on receive and sends to its remotes.
	VNI    uint32  `yaml:"vni"`
	Label  uint32  `yaml:"label"`
	Routes []Route `yaml:"routes"`
}

// Route sends a prefix of a VRF to a remote node, a local interface, the exception
// path, or nowhere.
type Route struct {
	Prefix string `yaml:"prefix"`
	// Exactly one of:
	Remote    string   `yaml:"remote"`    // one remote
	ECMP      []string `yaml:"ecmp"`      // several remotes, by flow hash
	Interface string   `yaml:"interface"` // a local pod interface
	Action    string   `yaml:"action"`    // "discard" or "exception"

	P netip.Prefix `yaml:"-"` // parsed Prefix
}

// Interface is one pod port.
type Interface struct {
	Name string `yaml:"name"`
	// Type: veth (kernel pod, host end attached through AF_XDP) or vhost (DPDK pod).
	Type string `yaml:"type"`
	VRF  string `yaml:"vrf"`
	// The pod's addresses and MAC: the source check admits only these.
	IPs []string `yaml:"ips"`
	MAC string   `yaml:"mac"`
	// Gateway is the address the pod routes through; the vRouter answers ARP/ND for it.
	Gateway []string `yaml:"gateway"`
	Veth    *Veth    `yaml:"veth"`
	Vhost   *Vhost   `yaml:"vhost"`

	// Parsed forms.
	Addrs    []netip.Addr     `yaml:"-"`
	HW       net.HardwareAddr `yaml:"-"`
	Gateways []netip.Addr     `yaml:"-"`
}

// Veth is the host end of a kernel pod's veth pair.
type Veth struct {
	Interface string `yaml:"interface"`
}

// Vhost is a vhost-user socket.
type Vhost struct {
	Socket string `yaml:"socket"`
	// Role: server (dpkit listens) or client (the pod listens, dpkit connects and
	// reconnects, as Contrail does).
	Role   string `yaml:"role"`
	Queues int    `yaml:"queues"`
}

// Remote is another vRouter node.
type Remote struct {
	Name     string `yaml:"name"`
	Underlay string `yaml:"underlay_ip"`
	MAC      string `yaml:"mac"`
	// Encap: vxlan, mplsoudp or mplsogre.
	Encap string `yaml:"encap"`
	// RouterMAC (VXLAN) is the inner destination MAC the remote takes routed frames
	// on: EVPN's Router's MAC (RFC 9135 §8.1), for a remote that is not a dpkit or
	// Contrail vRouter (a Linux vxlan device, an EVPN gateway). Empty: the vRouter's
	// own router MAC, which vRouters share.
	RouterMAC string `yaml:"router_mac"`

	Addr  netip.Addr       `yaml:"-"` // parsed Underlay
	HW    net.HardwareAddr `yaml:"-"` // parsed MAC
	RtMAC net.HardwareAddr `yaml:"-"` // parsed RouterMAC
}

func parseMAC(p *problems, field, v string) net.HardwareAddr {
	hw, err := net.ParseMAC(v)
	if err != nil || len(hw) != 6 {
		p.add(field, "%q is not a MAC address", v)
		return nil
	}
	return hw
}

func parseAddr(p *problems, field, v string) netip.Addr {
	a, err := netip.ParseAddr(v)
	if err != nil || a.Zone() != "" {
		p.add(field, "%q is not an IP address", v)
		return netip.Addr{}
	}
	return a
}

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid config")

// Load reads and validates a config file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly (unknown fields are errors, and so is a second
// document) and validates.
func Parse(b []byte) (*Config, error) {
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%w: empty file", ErrInvalid)
		}
		var te *yaml.TypeError
		if errors.As(err, &te) {
			return nil, fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(fieldsOf(b, te), "\n  "))
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// One document: a second ("---" and more after it) would not be applied. An
	// empty one (a trailing "---") is no harm.
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if err == io.EOF {
			break
		}
		if err == nil && emptyDoc(&next) {
			continue
		}
		if err == nil {
			err = fmt.Errorf("line %d: a second document: the file holds one", next.Line)
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// maxSocketPath is the longest UNIX socket path: sun_path's 108 bytes less the NUL
// that QEMU and DPDK, the pods' side, write after it.
const maxSocketPath = 107

// fieldsOf returns the decoder's errors (a wrong type, an unknown or duplicate key),
// which name a line of the file, each led by the field at that line, as Validate's
// are: `vrfs[0].vni: cannot unmarshal !!str "abc" into uint32 (line 17)`.
func fieldsOf(b []byte, te *yaml.TypeError) []string {
	type entry struct {
		path, key string
		val       *yaml.Node
	}
	at := map[int][]entry{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := k.Value
				if path != "" {
					p = path + "." + p
				}
				at[k.Line] = append(at[k.Line], entry{p, k.Value, v})
				if v.Line != k.Line {
					at[v.Line] = append(at[v.Line], entry{p, k.Value, v})
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, v := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				at[v.Line] = append(at[v.Line], entry{p, "", v})
				walk(v, p)
			}
		}
	}
	var doc yaml.Node
	if yaml.NewDecoder(bytes.NewReader(b)).Decode(&doc) == nil {
		walk(&doc, "")
	}
	out := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		m := decodeErr.FindStringSubmatch(e)
		if m == nil {
			out = append(out, e)
			continue
		}
		line, _ := strconv.Atoi(m[1])
		msg := m[2]
		// The entries of the line the message is about: the key it names, or the
		// value of the tag (and start) it names.
		var match func(entry) bool
		if k := keyErr.FindStringSubmatch(msg); k != nil {
			key := k[1] + k[2]
			if uq, err := strconv.Unquote(k[3]); err == nil {
				key = uq
			}
			match = func(en entry) bool { return en.key == key }
		} else if v := valueErr.FindStringSubmatch(msg); v != nil {
			match = func(en entry) bool {
				return en.val.ShortTag() == v[1] && (v[2] == "" || en.val.Value == v[3] ||
					strings.HasSuffix(v[3], "...") && strings.HasPrefix(en.val.Value, strings.TrimSuffix(v[3], "...")))
			}
		}
		var paths []string
		for _, en := range at[line] {
			if match == nil || match(en) {
				paths = append(paths, en.path)
			}
		}
		if len(paths) == 0 {
			for _, en := range at[line] {
				paths = append(paths, en.path)
			}
		} else {
			// A list and its item both matching (ecmp: [a, [b]]): the item.
			paths = slices.DeleteFunc(slices.Clone(paths), func(p string) bool {
				return slices.ContainsFunc(paths, func(q string) bool {
					return strings.HasPrefix(q, p+".") || strings.HasPrefix(q, p+"[")
				})
			})
		}
		if f := commonField(paths); f != "" {
			out = append(out, fmt.Sprintf("%s: %s (line %d)", f, msg, line))
		} else {
			out = append(out, e)
		}
	}
	return out
}

var (
	decodeErr = regexp.MustCompile(`^line (\d+): (.*)$`)
	keyErr    = regexp.MustCompile(`^(?:field (\S+) not found|field (\S+) already set|mapping key (".*") already defined)`)
	valueErr  = regexp.MustCompile("^cannot unmarshal (\\S+)( `(.*)`)? into")
)

// commonField returns the field that paths (a.b[1].c) share, the whole path when
// all are one.
func commonField(paths []string) string {
	if len(paths) == 0 {
		return ""
	}
	f := paths[0]
	for _, p := range paths[1:] {
		for f != p && !strings.HasPrefix(p, f+".") && !strings.HasPrefix(p, f+"[") {
			i := strings.LastIndexAny(f, ".[")
			if i <= 0 {
				return ""
			}
			f = f[:i]
		}
	}
	return f
}

// maxECMP is the most members an ECMP route may list: the buckets per group of
// the forwarding table, which the dataplane builds with route's defaults.
const maxECMP = route.DefaultECMPBuckets

// emptyDoc reports whether n is a document with nothing in it, or only null.
func emptyDoc(n *yaml.Node) bool {
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	return n.Kind == 0 || n.Kind == yaml.DocumentNode && len(n.Content) == 0 ||
		n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// pciAddr is a PCI address in the domain:bus:device.function form sysfs uses.
var pciAddr = regexp.MustCompile(`^[0-9a-f]{4}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$`)

type problems []string

func (p *problems) add(field, format string, args ...any) {
	*p = append(*p, field+": "+fmt.Sprintf(format, args...))
}

func oneOf(p *problems, field, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	p.add(field, "%q is not one of %s", v, strings.Join(allowed, ", "))
}

// Validate checks every field and cross-reference, fills defaults and parsed forms, and
// returns all problems at once.
func (c *Config) Validate() error {
	var p problems
	if c.Node.Underlay == "" {
		p.add("node.underlay_ip", "required")
	} else {
		// Tunnels take the node's address as their source: a unicast address, IPv4
		// written as IPv4 (an IPv4-mapped one fails the tunnels at start).
		if a := parseAddr(&p, "node.underlay_ip", c.Node.Underlay); a.IsValid() && hostAddr(&p, "node.underlay_ip", a) {
			c.Node.Addr = a
		}
	}
	if c.Uplink.GatewayMAC != "" {
		c.Uplink.GwMAC = parseMAC(&p, "uplink.gateway_mac", c.Uplink.GatewayMAC)
		if len(c.Uplink.GwMAC) == 6 && c.Uplink.GwMAC[0]&1 != 0 {
			p.add("uplink.gateway_mac", "%s is a multicast address", c.Uplink.GwMAC)
		}
	}
	switch ul := &c.Uplink; {
	case ul.Interface == "" && ul.PCI == "":
		p.add("uplink.interface", "required (or uplink.pci)")
	case ul.Interface != "" && ul.PCI != "":
		p.add("uplink.pci", "set only one of uplink.interface and uplink.pci")
	case ul.PCI != "":
		if !pciAddr.MatchString(ul.PCI) {
			p.add("uplink.pci", "%q is not a PCI address like 0000:00:04.0", ul.PCI)
		}
		if ul.MTU == 0 {
			ul.MTU = 1500
		}
		if ul.MTU < 576 || ul.MTU > 9000 {
			p.add("uplink.mtu", "%d out of range 576..9000", ul.MTU)
		}
		if ul.XDPMode != "" {
			p.add("uplink.xdp_mode", "applies to uplink.interface only")
		}
		if ul.HostTap != "" && !newIfName(ul.HostTap) {
			p.add("uplink.host_tap", "%q is not an interface name", ul.HostTap)
		}
	default:
		if !newIfName(ul.Interface) {
			p.add("uplink.interface", "%q is not an interface name", ul.Interface)
		}
		if ul.HostTap != "" || ul.MTU != 0 || ul.Packed {
			p.add("uplink.host_tap", "host_tap, mtu and packed apply to uplink.pci only")
		}
	}
	if c.Uplink.Queues < 0 || c.Uplink.Queues > 64 {
		p.add("uplink.queues", "%d out of range 0..64", c.Uplink.Queues)
	}
	if c.Uplink.Interface != "" {
		if c.Uplink.XDPMode == "" {
			c.Uplink.XDPMode = "auto"
		}
		oneOf(&p, "uplink.xdp_mode", c.Uplink.XDPMode, "auto", "native", "generic")
	}
	var err error
	if c.ForwardingCPUs != "" {
		if c.FwdCPUs, err = pmd.ParseCPUSet(c.ForwardingCPUs); err != nil {
			p.add("forwarding_cpus", "%v", err)
		}
	}
	if c.ControlCPUs != "" {
		if c.CtlCPUs, err = pmd.ParseCPUSet(c.ControlCPUs); err != nil {
			p.add("control_cpus", "%v", err)
		}
	}
	if c.FwdCPUs.Overlaps(c.CtlCPUs) {
		p.add("control_cpus", "overlaps forwarding_cpus (%s)", c.FwdCPUs)
	}
	if c.Metrics != "" {
		// The port as a number: net.Listen would refuse one out of range only when
		// the vRouter starts, and take a service name or an empty port. No zone: the
		// endpoint refuses "[::1%lo]:9470" when it starts.
		host, port, err := net.SplitHostPort(c.Metrics)
		_, nerr := strconv.ParseUint(port, 10, 16)
		if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || nerr != nil || !ip.IsLoopback() || ip.Zone() != "" {
			p.add("metrics", "%q must be a loopback host:port, the port a number up to 65535", c.Metrics)
		}
	}
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	oneOf(&p, "log_level", c.LogLevel, "debug", "info", "warn", "error")
	if e := c.Exception; e != nil {
		if !newIfName(e.Tap) {
			p.add("exception.tap", "%q is not an interface name", e.Tap)
		}
		if e.Unknown == "" {
			e.Unknown = "drop"
		}
		oneOf(&p, "exception.unknown", e.Unknown, "drop", "exception")
	}

	remotes := map[string]bool{}
	for i := range c.Remotes {
		r := &c.Remotes[i]
		f := fmt.Sprintf("remotes[%d]", i)
		if r.Name == "" {
			p.add(f+".name", "required")
		} else if remotes[r.Name] {
			p.add(f+".name", "%q given twice", r.Name)
		}
		remotes[r.Name] = true
		if r.Underlay == "" {
			p.add(f+".underlay_ip", "required")
		} else if r.Addr = parseAddr(&p, f+".underlay_ip", r.Underlay); !r.Addr.IsValid() {
		} else if !hostAddr(&p, f+".underlay_ip", r.Addr) {
		} else if r.Addr == c.Node.Addr {
			p.add(f+".underlay_ip", "%v is this node's own address", r.Addr)
		} else if c.Node.Addr.IsValid() && r.Addr.Is4() != c.Node.Addr.Is4() {
			p.add(f+".underlay_ip", "%v is not of the node's address family", r.Addr)
		}
		if r.MAC != "" {
			r.HW = parseMAC(&p, f+".mac", r.MAC)
		} else if c.Uplink.GatewayMAC == "" {
			p.add(f+".mac", "required unless uplink.gateway_mac is set")
		}
		oneOf(&p, f+".encap", r.Encap, "vxlan", "mplsoudp", "mplsogre")
		if r.RouterMAC != "" {
			if r.Encap != "vxlan" {
				p.add(f+".router_mac", "applies to vxlan only")
			} else if r.RtMAC = parseMAC(&p, f+".router_mac", r.RouterMAC); r.RtMAC != nil && r.RtMAC[0]&1 != 0 {
				p.add(f+".router_mac", "%s is a multicast address", r.RtMAC)
			}
		}
	}

	ifaces := map[string]Interface{}
	for _, in := range c.Interfaces {
		ifaces[in.Name] = in
	}
	if ht := c.Uplink.HostTap; ht != "" {
		if _, ok := ifaces[ht]; ok || ht == "uplink" || ht == "exception" || (c.Exception != nil && c.Exception.Tap == ht) {
			p.add("uplink.host_tap", "%q is already an interface's name", ht)
		}
	}
	vrfs := map[string]bool{}
	vnis, labels := map[uint32]string{}, map[uint32]string{}
	// Routes of one address, checked against the pods' below: the route would take
	// the place of the pod's own.
	type hostRoute struct {
		vrf   string
		p     netip.Prefix
		field string
	}
	var hostRoutes []hostRoute
	for i := range c.VRFs {
		v := &c.VRFs[i]
		f := fmt.Sprintf("vrfs[%d]", i)
		if v.Name == "" {
			p.add(f+".name", "required")
		} else if vrfs[v.Name] {
			p.add(f+".name", "%q given twice", v.Name)
		}
		vrfs[v.Name] = true
		if v.VNI == 0 || v.VNI >= 1<<24 {
			p.add(f+".vni", "%d out of range 1..16777215", v.VNI)
		} else if o, dup := vnis[v.VNI]; dup {
			p.add(f+".vni", "%d already used by VRF %q", v.VNI, o)
		}
		vnis[v.VNI] = v.Name
		// Labels 0-15 are reserved (RFC 3032).
		if v.Label < 16 || v.Label >= 1<<20 {
			p.add(f+".label", "%d out of range 16..1048575", v.Label)
		} else if o, dup := labels[v.Label]; dup {
			p.add(f+".label", "%d already used by VRF %q", v.Label, o)
		}
		labels[v.Label] = v.Name
		prefixes := map[netip.Prefix]string{} // one route per prefix: a later one would replace it
		for j := range v.Routes {
			r := &v.Routes[j]
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			if r.Prefix == "" {
				p.add(rf+".prefix", "required")
			} else if pfx, err := netip.ParsePrefix(r.Prefix); err != nil {
				p.add(rf+".prefix", "%q is not a prefix", r.Prefix)
			} else if pfx != pfx.Masked() {
				p.add(rf+".prefix", "%v has host bits set (did you mean %v?)", pfx, pfx.Masked())
			} else if pfx.Addr().Is4In6() {
				// An IPv6 route that IPv4 lookups would never match.
				p.add(rf+".prefix", "%v is IPv4-mapped IPv6: write the IPv4 prefix", pfx)
			} else {
				r.P = pfx
				if o, dup := prefixes[pfx]; dup {
					p.add(rf+".prefix", "%v is routed by %s already", pfx, o)
				} else {
					prefixes[pfx] = rf
				}
				if pfx.IsSingleIP() {
					hostRoutes = append(hostRoutes, hostRoute{v.Name, pfx, rf + ".prefix"})
				}
			}
			n := 0
			if r.Remote != "" {
				n++
				if !remotes[r.Remote] {
					p.add(rf+".remote", "no remote named %q", r.Remote)
				}
			}
			if len(r.ECMP) > 0 {
				n++
				if len(r.ECMP) > maxECMP {
					p.add(rf+".ecmp", "%d members, at most %d", len(r.ECMP), maxECMP)
				}
				for k, m := range r.ECMP {
					if !remotes[m] {
						p.add(fmt.Sprintf("%s.ecmp[%d]", rf, k), "no remote named %q", m)
					}
				}
			}
			if r.Interface != "" {
				n++
				if in, ok := ifaces[r.Interface]; !ok {
					p.add(rf+".interface", "no interface named %q", r.Interface)
				} else if in.VRF != v.Name {
					p.add(rf+".interface", "%q is in VRF %q, not %q", r.Interface, in.VRF, v.Name)
				}
			}
			if r.Action != "" {
				n++
				oneOf(&p, rf+".action", r.Action, "discard", "exception")
				if r.Action == "exception" && c.Exception == nil {
					p.add(rf+".action", "exception needs the exception section")
				}
			}
			if n != 1 {
				p.add(rf, "needs exactly one of remote, ecmp, interface, action (has %d)", n)
			}
		}
	}

	names := map[string]bool{}
	socks := map[string]bool{}
	veths := map[string]bool{} // AF_XDP binds one socket to a veth's queue
	// A pod address belongs to one pod of its VRF, and is no gateway there: the
	// tables route it to one place, and a gateway's route (to the host) would take
	// the pod's place. Pods may share a gateway.
	type vrfAddr struct {
		vrf string
		a   netip.Addr
	}
	type gwRef struct {
		k     vrfAddr
		field string
	}
	podAddrs := map[vrfAddr]string{}
	var gws []gwRef
	for i := range c.Interfaces {
		in := &c.Interfaces[i]
		f := fmt.Sprintf("interfaces[%d]", i)
		if in.Name == "" {
			p.add(f+".name", "required")
		} else if in.Name == "uplink" || in.Name == "exception" {
			p.add(f+".name", "%q is reserved for the vRouter's own interface", in.Name)
		} else if names[in.Name] {
			p.add(f+".name", "%q given twice", in.Name)
		}
		names[in.Name] = true
		if !vrfs[in.VRF] {
			p.add(f+".vrf", "no VRF named %q", in.VRF)
		}
		if len(in.IPs) == 0 {
			p.add(f+".ips", "at least one pod address is required")
		}
		in.Addrs = in.Addrs[:0]
		for k, s := range in.IPs {
			af := fmt.Sprintf("%s.ips[%d]", f, k)
			if a := parseAddr(&p, af, s); a.IsValid() && hostAddr(&p, af, a) {
				in.Addrs = append(in.Addrs, a)
				key := vrfAddr{in.VRF, a}
				if o, dup := podAddrs[key]; dup {
					p.add(af, "%v is already %s in VRF %q", a, o, in.VRF)
				} else {
					podAddrs[key] = af
				}
			}
		}
		if in.MAC == "" {
			p.add(f+".mac", "required")
		} else if in.HW = parseMAC(&p, f+".mac", in.MAC); in.HW != nil && in.HW[0]&1 != 0 {
			p.add(f+".mac", "%s is a multicast address", in.HW)
		}
		if len(in.Gateway) == 0 {
			p.add(f+".gateway", "at least one gateway address is required")
		}
		in.Gateways = in.Gateways[:0]
		for k, s := range in.Gateway {
			gf := fmt.Sprintf("%s.gateway[%d]", f, k)
			if a := parseAddr(&p, gf, s); a.IsValid() && hostAddr(&p, gf, a) {
				in.Gateways = append(in.Gateways, a)
				gws = append(gws, gwRef{vrfAddr{in.VRF, a}, gf})
			}
		}
		switch in.Type {
		case "veth":
			if in.Veth == nil || in.Veth.Interface == "" {
				p.add(f+".veth.interface", "required for type veth")
			} else if !newIfName(in.Veth.Interface) {
				p.add(f+".veth.interface", "%q is not an interface name", in.Veth.Interface)
			} else if in.Veth.Interface == c.Uplink.Interface {
				p.add(f+".veth.interface", "%q is the uplink", in.Veth.Interface)
			} else if veths[in.Veth.Interface] {
				p.add(f+".veth.interface", "%q used twice", in.Veth.Interface)
			} else {
				veths[in.Veth.Interface] = true
			}
			if in.Vhost != nil {
				p.add(f+".vhost", "not allowed for type veth")
			}
		case "vhost":
			if in.Vhost == nil || in.Vhost.Socket == "" {
				p.add(f+".vhost.socket", "required for type vhost")
			} else {
				if sp := in.Vhost.Socket; !filepath.IsAbs(sp) {
					p.add(f+".vhost.socket", "%q is not an absolute path", sp)
				} else if len(sp) > maxSocketPath || strings.IndexByte(sp, 0) >= 0 {
					p.add(f+".vhost.socket", "%q is no UNIX socket path (at most %d bytes, no NUL)", sp, maxSocketPath)
				}
				// One file, however written ("/run//a.sock", "/run/x/../a.sock").
				if sp := filepath.Clean(in.Vhost.Socket); socks[sp] {
					p.add(f+".vhost.socket", "%q used twice", in.Vhost.Socket)
				} else {
					socks[sp] = true
				}
				if in.Vhost.Role == "" {
					in.Vhost.Role = "server"
				}
				oneOf(&p, f+".vhost.role", in.Vhost.Role, "server", "client")
				if in.Vhost.Queues < 0 || in.Vhost.Queues > 16 {
					p.add(f+".vhost.queues", "%d out of range 0..16", in.Vhost.Queues)
				}
			}
			if in.Veth != nil {
				p.add(f+".veth", "not allowed for type vhost")
			}
		default:
			p.add(f+".type", "%q is not one of veth, vhost", in.Type)
		}
	}
	// The TAPs the vRouter creates take names of the node's kernel interfaces.
	taps := [][2]string{{"uplink.host_tap", c.Uplink.HostTap}}
	if c.Exception != nil {
		taps = append(taps, [2]string{"exception.tap", c.Exception.Tap})
	}
	for _, tap := range taps {
		if n := tap[1]; n != "" && (veths[n] || n == c.Uplink.Interface) {
			p.add(tap[0], "%q is the name of the uplink or of a pod's veth", n)
		}
	}
	for _, g := range gws {
		if o, ok := podAddrs[g.k]; ok {
			p.add(g.field, "%v is a pod's address (%s)", g.k.a, o)
		}
	}
	// A pod's gateway is routed to the host (the exception TAP answers it); a host
	// route for it would take that route's place in the tables.
	gwAddrs := map[vrfAddr]string{}
	for _, g := range gws {
		if _, ok := gwAddrs[g.k]; !ok {
			gwAddrs[g.k] = g.field
		}
	}
	for _, r := range hostRoutes {
		k := vrfAddr{r.vrf, r.p.Addr()}
		if o, ok := podAddrs[k]; ok {
			p.add(r.field, "%v is a pod's address (%s), routed to it", r.p, o)
		} else if o, ok := gwAddrs[k]; ok {
			p.add(r.field, "%v is a pod's gateway (%s), routed to the host", r.p, o)
		}
	}
	if len(p) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrInvalid, strings.Join(p, "\n  "))
	}
	return nil
}

// hostAddr reports whether a, a pod's address or gateway, is one the forwarding
// tables and the ARP/ND responder can own (or an underlay address, one a tunnel can
// start or end at): unicast, and IPv4 written as IPv4 (an
// IPv4-mapped IPv6 address would be answered for in ARP while the pod's IPv4
// packets failed its source check). It adds a problem when not.
func hostAddr(p *problems, field string, a netip.Addr) bool {
	switch {
	case a.Is4In6():
		p.add(field, "%v is an IPv4-mapped IPv6 address: write it as %v", a, a.Unmap())
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		p.add(field, "%v is not a unicast address", a)
	default:
		return true
	}
	return false
}

// ReloadCheck reports why cur cannot replace old on a reload, or nil. A reload
// republishes the VRFs' routes, VNIs and labels and the remote nodes; everything
// else (the node, the uplink, CPUs, the endpoint, logging, the exception path, every
// interface and the VRF it is in) is fixed when the vRouter starts, so a change to it
// needs a restart. VRFs are numbered by their place in the list, so the VRFs of old
// must keep their places in cur; new ones may follow them.
func ReloadCheck(old, cur *Config) error {
	same := []struct {
		name string
		a, b any
	}{
		{"node", old.Node, cur.Node},
		{"uplink", old.Uplink, cur.Uplink},
		{"forwarding_cpus", old.ForwardingCPUs, cur.ForwardingCPUs},
		{"control_cpus", old.ControlCPUs, cur.ControlCPUs},
		{"metrics", old.Metrics, cur.Metrics},
		{"log_level", old.LogLevel, cur.LogLevel},
		{"exception", old.Exception, cur.Exception},
	}
	for _, f := range same {
		if !reflect.DeepEqual(f.a, f.b) {
			return fmt.Errorf("%s changed: restart the vRouter to apply it", f.name)
		}
	}
	if len(cur.Interfaces) != len(old.Interfaces) {
		return fmt.Errorf("interfaces: %d instead of %d: restart the vRouter to apply it", len(cur.Interfaces), len(old.Interfaces))
	}
	for i := range old.Interfaces {
		if !reflect.DeepEqual(old.Interfaces[i], cur.Interfaces[i]) {
			return fmt.Errorf("interfaces[%d] (%s) changed: restart the vRouter to apply it", i, old.Interfaces[i].Name)
		}
	}
	for i, v := range old.VRFs {
		if i >= len(cur.VRFs) {
			return fmt.Errorf("vrfs: %s removed: restart the vRouter to apply it", v.Name)
		}
		if cur.VRFs[i].Name != v.Name {
			return fmt.Errorf("vrfs[%d] is %s instead of %s: VRFs keep their places on a reload (new ones go at the end)", i, cur.VRFs[i].Name, v.Name)
		}
	}
	return nil
}

// newIfName reports whether name can name an interface the vRouter creates or
// opens: what the kernel's dev_valid_name accepts (1..15 bytes, not "." or "..", no
// '/', ':' or white space), and no '%', which the kernel would take as a template for
// a name of its own choosing (so no interface has one).
func newIfName(name string) bool {
	return name != "" && len(name) <= 15 && name != "." && name != ".." &&
		!strings.ContainsAny(name, "/:% \t\n\v\f\r")
}
