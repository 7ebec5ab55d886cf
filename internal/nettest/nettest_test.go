package nettest_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
)

func TestTwoNamespacesPing(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "ping")
	a, b := nettest.NewNS(t), nettest.NewNS(t)
	v := nettest.NewVeth(t, a, b, nettest.VethOptions{Queues: 4, MTU: 9000})
	a.AddAddr(t, v.A, netip.MustParsePrefix("10.99.0.1/24"))
	b.AddAddr(t, v.B, netip.MustParsePrefix("10.99.0.2/24"))
	a.AddNeigh(t, v.A, netip.MustParseAddr("10.99.0.2"), v.MACB)
	a.MustExec(t, "ping", "-c", "1", "-W", "2", "10.99.0.2")

	out := a.MustExec(t, "ip", "-d", "link", "show", v.A)
	if !strings.Contains(out, "numtxqueues 4") || !strings.Contains(out, "mtu 9000") {
		t.Errorf("veth shape wrong:\n%s", out)
	}
	if err := a.Do(func() error {
		_, err := net.InterfaceByName(v.A)
		return err
	}); err != nil {
		t.Errorf("Do did not run inside the namespace: %v", err)
	}
}
