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

// TestTapJumbo: a 8000-byte UDP datagram from the host comes out of a 9000-MTU TAP as
// a chain of frames; echoed back as a chain (addresses and ports swapped, which keeps
// every checksum right) it reaches the host's socket whole.
func TestTapJumbo(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/net/tun", "the TUN/TAP driver")
	ns := nettest.NewNS(t)
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var port *pmd.TapPort
	var conn *net.UDPConn
	if err := ns.Do(func() (err error) {
		if port, err = pmd.NewTap(pmd.TapOptions{Name: "dpktap%d", Pool: pool}); err != nil {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	defer port.Close()
	if !pmd.TxChains(port) {
		t.Fatal("TAP port takes no chains")
	}
	ns.MustExec(t, "ip", "link", "set", port.Name(), "mtu", "9000", "up")
	ns.AddAddr(t, port.Name(), netip.MustParsePrefix("10.98.0.1/24"))
	ns.AddNeigh(t, port.Name(), netip.MustParseAddr("10.98.0.2"), net.HardwareAddr{2, 0, 0, 0, 0, 2})
	if err := ns.Do(func() (err error) {
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 98, 0, 1), Port: 4000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	payload := make([]byte, 8000)
	for i := range payload {
		payload[i] = byte(i * 13)
	}
	if _, err := conn.WriteToUDP(payload, &net.UDPAddr{IP: net.IPv4(10, 98, 0, 2), Port: 5000}); err != nil {
		t.Fatal(err)
	}
	cache := pool.NewCache(0)
	defer cache.Flush()
	var pkts [16]pmd.Pkt
	var segs []pmd.Pkt
	deadline := time.Now().Add(3 * time.Second)
	for segs == nil && time.Now().Before(deadline) {
		n := port.Rx(pkts[:])
		for i := 0; i < n; i++ {
			j := i
			for pkts[j].Flags&pmd.PktMore != 0 {
				j++
			}
			if segs == nil && pmd.Bytes(pkts[i:j+1]) == 14+20+8+8000 {
				segs = append(segs, pkts[i:j+1]...)
			} else {
				cache.Free(pkts[i : j+1])
			}
			i = j
		}
		time.Sleep(5 * time.Millisecond)
	}
	if len(segs) < 2 {
		t.Fatalf("no chained 8042-byte frame came out of the TAP (%d segments)", len(segs))
	}
	var joined []byte
	for i := range segs {
		joined = append(joined, pool.Data(&segs[i])...)
	}
	if !bytes.Equal(joined[42:], payload) {
		t.Fatal("the chain's payload differs from what the host sent")
	}
	h := pool.Data(&segs[0])
	var mac [6]byte
	copy(mac[:], h[0:6])
	copy(h[0:6], h[6:12])
	copy(h[6:12], mac[:])
	var ip [4]byte
	copy(ip[:], h[26:30])
	copy(h[26:30], h[30:34])
	copy(h[30:34], ip[:])
	sp := binary.BigEndian.Uint16(h[34:])
	binary.BigEndian.PutUint16(h[34:], binary.BigEndian.Uint16(h[36:]))
	binary.BigEndian.PutUint16(h[36:], sp)
	if n := port.Tx(segs); n != len(segs) {
		t.Fatalf("Tx took %d of %d segments", n, len(segs))
	}
	conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9000)
	n, from, err := conn.ReadFromUDP(buf)
	if err != nil || n != len(payload) || !bytes.Equal(buf[:n], payload) || from.Port != 5000 {
		t.Fatalf("echo: %d bytes from %v, %v", n, from, err)
	}

	// A backlog of jumbo frames read in bursts too small for two of them: each burst
	// ends early or holds the last frame over, and none is lost.
	const backlog = 20
	for i := 0; i < backlog; i++ {
		if _, err := conn.WriteToUDP(payload, &net.UDPAddr{IP: net.IPv4(10, 98, 0, 2), Port: 5000}); err != nil {
			t.Fatal(err)
		}
	}
	got, small := 0, make([]pmd.Pkt, 8)
	deadline = time.Now().Add(3 * time.Second)
	for got < backlog && time.Now().Before(deadline) {
		n := port.Rx(small)
		if n > 0 && small[n-1].Flags&pmd.PktMore != 0 {
			t.Fatal("Rx returned an unfinished chain")
		}
		for i := 0; i < n; i++ {
			j := i
			for small[j].Flags&pmd.PktMore != 0 {
				j++
			}
			if pmd.Bytes(small[i:j+1]) == 14+20+8+8000 {
				got++
			}
			i = j
		}
		cache.Free(small[:n])
	}
	if st := port.Stats(); got != backlog || st.Drops[pmd.DropTooLong] != 0 {
		t.Fatalf("%d of %d jumbo frames read (drops %v)", got, backlog, st.Drops)
	}

	// Writing a chain of many segments allocates nothing (x/sys/unix's Writev would
	// for more than eight).
	if !pmd.RaceEnabled {
		chain := make([]pmd.Pkt, 12)
		allocs := testing.AllocsPerRun(50, func() {
			cache.Alloc(chain)
			for i := range chain {
				chain[i].Flags = pmd.PktMore
				pool.Append(&chain[i], 700)
				copy(pool.Data(&chain[i]), h[:14]) // the host's MAC, then filler
			}
			chain[len(chain)-1].Flags = 0
			if port.Tx(chain) != len(chain) {
				t.Fatal("Tx")
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per 12-segment write", allocs)
		}
	}
}
