package xsk

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/vishvananda/netlink"
)

// vethAt creates a veth pair with both ends in ns, end A with interface index index,
// and returns A's name. The pair goes away with ns.
func vethAt(t *testing.T, ns *nettest.NS, index int) string {
	t.Helper()
	a, b := nettest.Name("a"), nettest.Name("b")
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a, Index: index}, PeerName: b}
	if err := ns.Handle().LinkAdd(v); err != nil {
		t.Fatalf("add veth %s/%s index %d in %s: %v", a, b, index, ns.Name, err)
	}
	for _, n := range []string{a, b} {
		if err := ns.Handle().LinkSetUp(ns.Link(t, n)); err != nil {
			t.Fatalf("up %s: %v", n, err)
		}
	}
	if got := ns.Link(t, a).Attrs().Index; got != index {
		t.Fatalf("%s got index %d, want %d", a, got, index)
	}
	return a
}

// TestSharedUMEMAcrossNamespaces: one UMEM shared by sockets on two devices that have
// the same interface index in two network namespaces. They are different devices, and
// the kernel shares the UMEM between them (each socket has its own fill and completion
// rings); before, NewSocket compared only the index and refused the second as "a
// second socket on the same queue". The same queue of the same device is still
// refused.
func TestSharedUMEMAcrossNamespaces(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFeature(t, "AF_XDP sockets", func() error {
		fd, err := afxdpProbe()
		if err == nil {
			closeFd(fd)
		}
		return err
	})
	const index = 4242 // free in a fresh namespace: its devices count up from 1
	ns1, ns2 := nettest.NewNS(t), nettest.NewNS(t)
	vethAt(t, ns1, index)
	vethAt(t, ns2, index)

	u, err := NewUMEM(UMEMOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	var socks []*Socket
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	// newSock opens a copy-mode socket on queue 0 of the index in ns.
	newSock := func(ns *nettest.NS) (*Socket, error) {
		var s *Socket
		err := ns.Do(func() (err error) {
			s, err = NewSocket(u, index, Config{Bind: BindCopy})
			return err
		})
		if err == nil {
			socks = append(socks, s)
		}
		return s, err
	}
	if _, err := newSock(ns1); err != nil {
		t.Fatalf("first socket, in %s: %v", ns1.Name, err)
	}
	if _, err := newSock(ns2); err != nil {
		t.Fatalf("socket on ifindex %d queue 0 of another namespace, sharing the UMEM: %v", index, err)
	}
	_, err = newSock(ns1)
	if err == nil {
		t.Fatalf("a second socket on ifindex %d queue 0 of %s was allowed", index, ns1.Name)
	}
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("second socket on the same queue: %v, want ErrNotSupported", err)
	}
}
