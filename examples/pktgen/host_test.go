package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/vishvananda/netns"
)

// ip runs the ip command and fails the test on error.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNS runs fn on an OS thread inside the named namespace.
func inNS(name string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		h, err := netns.GetFromName(name)
		if err != nil {
			errc <- err
			return
		}
		defer h.Close()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}

// TestHostTrafficPasses: pktgen only sends, so what arrives on the interface while
// it runs goes to the kernel stack as before. Its socket was in the XDP program's
// map for queue 0, so every frame arriving there (ARP, the host's ssh session on
// eth0, as the doc's example runs it) went to pktgen, which dropped it: the host
// was cut off on that queue for the whole run.
func TestHostTrafficPasses(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedCommand(t, "ip", "ping", "ethtool")
	tag := fmt.Sprintf("expg%d", os.Getpid()%100000)
	na, nb := tag+"a", tag+"b"
	ip(t, "netns", "add", na)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", na).Run() })
	ip(t, "netns", "add", nb)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", nb).Run() })
	va, vb := tag+"x", tag+"y"
	ip(t, "link", "add", va, "netns", na, "type", "veth", "peer", vb, "netns", nb)
	ip(t, "-n", na, "addr", "add", "10.99.0.1/24", "dev", va)
	ip(t, "-n", nb, "addr", "add", "10.99.0.2/24", "dev", vb)
	ip(t, "-n", na, "link", "set", va, "up")
	ip(t, "-n", nb, "link", "set", vb, "up")
	// Kernel-made skbs reach veth's native XDP only with TSO off on the sender.
	ip(t, "netns", "exec", nb, "ethtool", "-K", vb, "tx", "off", "tso", "off", "gso", "off")

	var peer net.HardwareAddr
	if err := inNS(nb, func() error {
		ifi, err := net.InterfaceByName(vb)
		if err == nil {
			peer = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type result struct {
		n   uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.err = inNS(na, func() error {
			ifi, err := net.InterfaceByName(va)
			if err != nil {
				return err
			}
			r.n, _, _, err = run(ctx, ifi, peer, netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2"), 64, 1, 1000)
			return err
		})
		done <- r
	}()
	// Wait until pktgen's program is on the interface.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if strings.Contains(ip(t, "-n", na, "link", "show", va), "xdp") {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("pktgen never attached: %v", (<-done).err)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", nb, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.99.0.1").CombinedOutput()
	cancel()
	r := <-done
	if err != nil {
		t.Errorf("ping to the interface pktgen sends from failed while it ran: %v\n%s", err, out)
	}
	if r.err != nil {
		t.Fatalf("pktgen: %v", r.err)
	}
	if r.n == 0 {
		t.Error("pktgen sent nothing")
	}
	if strings.Contains(ip(t, "-n", na, "link", "show", va), "xdp") {
		t.Error("XDP program left attached after pktgen returned")
	}
}
