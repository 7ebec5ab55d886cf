package pmd_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

// The host kernel ARPs out of the TAP; the port receives the request and answers it,
// and the kernel learns the neighbour from the answer.
func TestTapARP(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/net/tun", "the TUN/TAP driver")
	testenv.NeedCommand(t, "ip", "ping")
	ns := nettest.NewNS(t)
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pool.Close(); err != nil {
			t.Error(err)
		}
	}()
	var port *pmd.TapPort
	if err := ns.Do(func() (err error) {
		port, err = pmd.NewTap(pmd.TapOptions{Name: "dpktap%d", Pool: pool, PortID: 7})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	ns.MustExec(t, "ip", "link", "set", port.Name(), "up")
	ns.AddAddr(t, port.Name(), netip.MustParsePrefix("10.98.0.1/24"))
	hostMAC := ns.Link(t, port.Name()).Attrs().HardwareAddr
	ns.Exec("ping", "-c", "1", "-W", "1", "10.98.0.2") // fails; it only makes the kernel ARP

	cache := pool.NewCache(16)
	defer cache.Flush()
	var pkts [8]pmd.Pkt
	var req []byte
	deadline := time.Now().Add(3 * time.Second)
	for req == nil && time.Now().Before(deadline) {
		n := port.Rx(pkts[:])
		for _, pk := range pkts[:n] {
			d := pool.Data(&pk)
			if pk.Port == 7 && len(d) >= 42 && binary.BigEndian.Uint16(d[12:]) == 0x0806 &&
				bytes.Equal(d[38:42], []byte{10, 98, 0, 2}) && req == nil {
				req = append([]byte(nil), d...)
			}
		}
		cache.Free(pkts[:n])
		time.Sleep(10 * time.Millisecond)
	}
	if req == nil {
		t.Fatal("no ARP request for 10.98.0.2 came out of the TAP")
	}
	if !bytes.Equal(req[6:12], hostMAC) {
		t.Fatalf("ARP from %x, host MAC %x", req[6:12], hostMAC)
	}

	// Answer as 02:00:00:00:00:02.
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	if cache.Alloc(pkts[:1]) != 1 {
		t.Fatal("alloc")
	}
	pool.Append(&pkts[0], 42)
	r := pool.Data(&pkts[0])
	copy(r[0:6], hostMAC)
	copy(r[6:12], mac)
	binary.BigEndian.PutUint16(r[12:], 0x0806)
	copy(r[14:20], []byte{0, 1, 8, 0, 6, 4})
	binary.BigEndian.PutUint16(r[20:], 2) // reply
	copy(r[22:28], mac)
	copy(r[28:32], []byte{10, 98, 0, 2})
	copy(r[32:38], hostMAC)
	copy(r[38:42], []byte{10, 98, 0, 1})
	if port.Tx(pkts[:1]) != 1 {
		t.Fatal("Tx refused the reply")
	}
	deadline = time.Now().Add(3 * time.Second)
	for {
		out := ns.MustExec(t, "ip", "neigh", "show", "10.98.0.2")
		if strings.Contains(out, mac.String()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel did not learn the neighbour: %q", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st := port.Stats()
	if st.RxPackets == 0 || st.TxPackets != 1 || st.TxBytes != 42 {
		t.Fatalf("stats %+v", st)
	}
}
