package xsk

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

var (
	ipA = netip.MustParseAddr("10.77.0.1") // the XSK side
	ipB = netip.MustParseAddr("10.77.0.2") // the kernel side
)

// env is a veth pair: end A in namespace a is driven through AF_XDP, end B in namespace
// b by the kernel stack.
type env struct {
	a, b *nettest.NS
	v    *nettest.Veth
}

func newEnv(t *testing.T, queues, mtu int) *env {
	t.Helper()
	testenv.NeedRoot(t)
	testenv.NeedFeature(t, "AF_XDP sockets", func() error {
		fd, err := afxdpProbe()
		if err == nil {
			closeFd(fd)
		}
		return err
	})
	a, b := nettest.NewNS(t), nettest.NewNS(t)
	v := nettest.NewVeth(t, a, b, nettest.VethOptions{Queues: queues, MTU: mtu})
	a.AddAddr(t, v.A, netip.PrefixFrom(ipA, 24))
	b.AddAddr(t, v.B, netip.PrefixFrom(ipB, 24))
	// A's kernel never sees ARP (the XSK takes everything), so B needs A statically.
	b.AddNeigh(t, v.B, ipA, v.MACA)
	a.AddNeigh(t, v.A, ipB, v.MACB)
	// veth runs a native XDP program only for skbs it can pass through its NAPI, and
	// with TSO on it takes that path only for socket-owned skbs, not for frames sent
	// through an XSK. Offloads off also gives full checksums from B's stack.
	testenv.NeedCommand(t, "ethtool")
	b.SetTxOffload(t, v.B, false)
	return &env{a: a, b: b, v: v}
}

// inA runs fn in namespace a and fails the test on error.
func (e *env) inA(t *testing.T, fn func() error) {
	t.Helper()
	if err := e.a.Do(fn); err != nil {
		t.Fatal(err)
	}
}

// openA opens queue q of end A.
func (e *env) openA(t *testing.T, q int, opts Options) *Port {
	t.Helper()
	var p *Port
	e.inA(t, func() (err error) {
		p, err = Open(e.v.A, q, opts)
		return err
	})
	return p
}

// udpListen opens a UDP socket on B.
func (e *env) udpListen(t *testing.T, port int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	if err := e.b.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ipB.AsSlice(), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// udpSendFromB sends payload from B's kernel stack to A.
func (e *env) udpSendFromB(t *testing.T, sport, dport int, payload []byte) {
	t.Helper()
	if err := e.b.Do(func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: ipB.AsSlice(), Port: sport}, &net.UDPAddr{IP: ipA.AsSlice(), Port: dport})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(payload)
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// rxUntil polls p until match accepts a packet (its frames are freed) or timeout.
// It returns the matched packet's bytes (chains concatenated).
func rxUntil(t *testing.T, p *Port, timeout time.Duration, match func([]byte) bool) ([]byte, int) {
	t.Helper()
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	var pkts [64]pmd.Pkt
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n := p.Rx(pkts[:])
		if n == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		for i := 0; i < n; {
			var data []byte
			segs := 0
			j := i
			for ; j < n; j++ {
				data = append(data, pool.Data(&pkts[j])...)
				segs++
				if pkts[j].Flags&pmd.PktMore == 0 {
					break
				}
			}
			cache.Free(pkts[i : j+1])
			if match(data) {
				cache.Free(pkts[j+1 : n])
				return data, segs
			}
			i = j + 1
		}
	}
	t.Fatalf("no matching packet within %v", timeout)
	return nil, 0
}

func csumAdd(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// udpFrame builds an Ethernet/IPv4/UDP frame with correct checksums.
func udpFrame(dst, src net.HardwareAddr, sip, dip netip.Addr, sport, dport int, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], dst)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = 17
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:], uint16(sport))
	binary.BigEndian.PutUint16(u[2:], uint16(dport))
	binary.BigEndian.PutUint16(u[4:], uint16(8+len(payload)))
	copy(u[8:], payload)
	binary.BigEndian.PutUint16(u[6:], udpCsum(ip, u))
	return f
}

func udpCsum(ip, u []byte) uint16 {
	var ph [12]byte
	copy(ph[0:8], ip[12:20])
	ph[9] = 17
	binary.BigEndian.PutUint16(ph[10:], uint16(len(u)))
	c := csumFold(csumAdd(csumAdd(0, ph[:]), u))
	if c == 0 {
		c = 0xffff
	}
	return c
}

// parseUDP checks an Ethernet/IPv4/UDP frame's checksums and returns its ports and
// payload.
func parseUDP(f []byte) (sport, dport int, payload []byte, err error) {
	if len(f) < 42 || binary.BigEndian.Uint16(f[12:]) != 0x0800 || f[14] != 0x45 || f[23] != 17 {
		return 0, 0, nil, errors.New("not IPv4/UDP")
	}
	ip := f[14:34]
	if csumFold(csumAdd(0, ip)) != 0 {
		return 0, 0, nil, errors.New("bad IPv4 header checksum")
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot > len(f)-14 || tot < 28 {
		return 0, 0, nil, errors.New("bad IPv4 length")
	}
	u := f[34 : 14+tot]
	if binary.BigEndian.Uint16(u[6:]) != 0 {
		var ph [12]byte
		copy(ph[0:8], ip[12:20])
		ph[9] = 17
		binary.BigEndian.PutUint16(ph[10:], uint16(len(u)))
		if csumFold(csumAdd(csumAdd(0, ph[:]), u)) != 0 {
			return 0, 0, nil, errors.New("bad UDP checksum")
		}
	}
	return int(binary.BigEndian.Uint16(u[0:])), int(binary.BigEndian.Uint16(u[2:])), u[8:], nil
}
