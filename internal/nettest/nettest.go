// Package nettest builds throwaway network topologies for tests: network namespaces,
// veth pairs (with several queues), addresses and static neighbours, configured through
// netlink, and torn down by t.Cleanup even when the test fails.
//
// Every name it creates carries a per-process random prefix, so parallel test binaries
// and leftovers of a crashed run never collide. Tests using it need root; gate them with
// testenv.NeedRoot.
package nettest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var (
	prefix = func() string {
		var b [3]byte
		rand.Read(b[:])
		return "dpk" + hex.EncodeToString(b[:])
	}()
	seq atomic.Uint32
)

// Name returns a fresh name with this process's prefix, at most 15 bytes (IFNAMSIZ-1)
// when tag is at most 5 bytes.
func Name(tag string) string {
	return fmt.Sprintf("%s%s%d", prefix, tag, seq.Add(1))
}

// NS is a network namespace made for one test.
type NS struct {
	Name   string
	handle netns.NsHandle
	nl     *netlink.Handle
}

// NewNS creates a named namespace (visible to `ip netns exec`) with its loopback up,
// deleted when the test ends.
func NewNS(t testing.TB) *NS {
	t.Helper()
	name := Name("n")
	h, err := newNamed(name)
	if err != nil {
		t.Fatalf("nettest: create netns %s: %v", name, err)
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		netns.DeleteNamed(name)
		t.Fatalf("nettest: netlink in %s: %v", name, err)
	}
	ns := &NS{Name: name, handle: h, nl: nl}
	t.Cleanup(func() {
		nl.Close()
		h.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("nettest: delete netns %s: %v", name, err)
		}
	})
	if lo, err := nl.LinkByName("lo"); err == nil {
		nl.LinkSetUp(lo)
	}
	return ns
}

// newNamed creates a namespace without leaving any thread of ours in it.
func newNamed(name string) (netns.NsHandle, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return 0, err
	}
	defer orig.Close()
	// NewNamed unshares this thread first and can fail after: go back either way.
	h, err := netns.NewNamed(name)
	if serr := netns.Set(orig); serr != nil {
		// This thread is stuck in the new namespace: keep it locked so the runtime
		// retires it instead of reusing it.
		runtime.LockOSThread()
		if err == nil {
			h.Close()
		}
		return 0, fmt.Errorf("return to original netns: %w", serr)
	}
	if err != nil {
		return 0, err
	}
	return h, nil
}

// Handle returns the namespace's netlink handle for anything this package lacks.
func (ns *NS) Handle() *netlink.Handle { return ns.nl }

// Do runs fn on an OS thread inside the namespace. Sockets fn opens stay in the
// namespace after it returns; goroutines it starts do not run there.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		} // else: leave the thread locked; the runtime discards it when we exit
		errc <- ferr
	}()
	return <-errc
}

// Exec runs a command inside the namespace (through `ip netns exec`) and returns its
// combined output.
func (ns *NS) Exec(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// MustExec is Exec that fails the test on error.
func (ns *NS) MustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.Exec(args...)
	if err != nil {
		t.Fatalf("nettest: in %s: %v", ns.Name, err)
	}
	return out
}

// VethOptions shape a veth pair. The zero value gives one queue each way and the
// default MTU.
type VethOptions struct {
	Queues int // rx and tx queues on each end
	MTU    int
}

// Veth is a veth pair whose ends may live in different namespaces.
type Veth struct {
	A, B           string // interface names
	NSA, NSB       *NS
	MACA, MACB     net.HardwareAddr
	IndexA, IndexB int
}

// NewVeth creates a veth pair with end A in a and end B in b, both up. The pair goes
// away with its namespaces.
func NewVeth(t testing.TB, a, b *NS, opts VethOptions) *Veth {
	t.Helper()
	an, bn := Name("a"), Name("b")
	la := netlink.LinkAttrs{Name: an, Namespace: netlink.NsFd(a.handle)}
	if opts.Queues > 0 {
		la.NumTxQueues, la.NumRxQueues = opts.Queues, opts.Queues
	}
	if opts.MTU > 0 {
		la.MTU = opts.MTU
	}
	v := &netlink.Veth{LinkAttrs: la, PeerName: bn, PeerNamespace: netlink.NsFd(b.handle)}
	if opts.Queues > 0 {
		v.PeerNumTxQueues, v.PeerNumRxQueues = uint32(opts.Queues), uint32(opts.Queues)
	}
	if opts.MTU > 0 {
		v.PeerMTU = uint32(opts.MTU)
	}
	// Create from end a's namespace so both names are looked up where they live.
	if err := a.nl.LinkAdd(v); err != nil {
		t.Fatalf("nettest: add veth %s/%s: %v", an, bn, err)
	}
	out := &Veth{A: an, B: bn, NSA: a, NSB: b}
	for _, e := range []struct {
		ns   *NS
		name string
		mac  *net.HardwareAddr
		idx  *int
	}{{a, an, &out.MACA, &out.IndexA}, {b, bn, &out.MACB, &out.IndexB}} {
		l, err := e.ns.nl.LinkByName(e.name)
		if err != nil {
			t.Fatalf("nettest: find %s: %v", e.name, err)
		}
		if err := e.ns.nl.LinkSetUp(l); err != nil {
			t.Fatalf("nettest: up %s: %v", e.name, err)
		}
		*e.mac, *e.idx = l.Attrs().HardwareAddr, l.Attrs().Index
	}
	return out
}

// AddAddr assigns prefix (e.g. 10.0.0.1/24) to ifname.
func (ns *NS) AddAddr(t testing.TB, ifname string, prefix netip.Prefix) {
	t.Helper()
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("nettest: %s: %v", ifname, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: prefix.Addr().AsSlice(), Mask: net.CIDRMask(prefix.Bits(), prefix.Addr().BitLen())}}
	if prefix.Addr().Is6() {
		addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate address detection
	}
	if err := ns.nl.AddrAdd(l, addr); err != nil {
		t.Fatalf("nettest: addr %v on %s: %v", prefix, ifname, err)
	}
}

// AddNeigh installs a permanent neighbour entry ip → mac on ifname.
func (ns *NS) AddNeigh(t testing.TB, ifname string, ip netip.Addr, mac net.HardwareAddr) {
	t.Helper()
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("nettest: %s: %v", ifname, err)
	}
	fam := netlink.FAMILY_V4
	if ip.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{LinkIndex: l.Attrs().Index, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: mac}
	if err := ns.nl.NeighSet(n); err != nil {
		t.Fatalf("nettest: neigh %v on %s: %v", ip, ifname, err)
	}
}

// SetTxOffload turns checksum/segmentation offloads of ifname off or on. Turn them off
// on a veth whose peer is read raw, so its packets carry full checksums.
func (ns *NS) SetTxOffload(t testing.TB, ifname string, on bool) {
	t.Helper()
	state := "off"
	if on {
		state = "on"
	}
	ns.MustExec(t, "ethtool", "-K", ifname, "tx", state, "tso", state, "gso", state)
}

// Link returns the link ifname of the namespace.
func (ns *NS) Link(t testing.TB, ifname string) netlink.Link {
	t.Helper()
	l, err := ns.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("nettest: %s: %v", ifname, err)
	}
	return l
}
