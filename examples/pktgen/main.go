// Command pktgen sends fixed-size UDP frames out of an interface through an AF_XDP
// socket as fast as the interface takes them (xdpsock's txonly), for packet-rate
// measurements where the kernel's own sockets would be the bottleneck. It prints the
// number of frames sent and the rate. With -rate it paces itself to that many packets
// per second instead, for finding the highest rate a device under test forwards
// without loss (RFC 2544 §26.1's throughput, or a partial-drop rate).
//
//	pktgen -i eth0 -dst-mac 00:00:5e:00:01:00 -src 10.1.1.2 -dst 10.1.2.2 -size 64 -duration 3s
//	pktgen -i eth0 -dst-mac 00:00:5e:00:01:00 -src 10.1.1.2 -dst 10.1.2.2 -rate 0.5e6
package main

import (
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
)

func main() {
	ifname := flag.String("i", "", "interface to send from")
	dstMAC := flag.String("dst-mac", "", "destination MAC")
	src := flag.String("src", "", "source IPv4 address")
	dst := flag.String("dst", "", "destination IPv4 address")
	size := flag.Int("size", 64, "frame size in bytes (without FCS), 60..1514")
	flows := flag.Int("flows", 16, "distinct UDP source ports, for flow hashing")
	d := flag.Duration("duration", 3*time.Second, "how long to send")
	rate := flag.Float64("rate", 0, "packets per second to offer (0: as fast as the interface takes them)")
	flag.Parse()
	mac, err1 := net.ParseMAC(*dstMAC)
	s, err2 := netip.ParseAddr(*src)
	t, err3 := netip.ParseAddr(*dst)
	if *ifname == "" || err1 != nil || err2 != nil || err3 != nil || len(mac) != 6 || !s.Is4() || !t.Is4() ||
		*size < 60 || *size > 1514 || *flows < 1 || *flows > 4096 || *d <= 0 || !(*rate >= 0 && *rate <= 1e9) ||
		flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: pktgen -i IF -dst-mac MAC -src IPv4 -dst IPv4 [-size 64] [-flows 16] [-duration 3s] [-rate PPS]")
		os.Exit(2)
	}
	ifi, err := net.InterfaceByName(*ifname)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, *d)
	defer cancel2()
	n, skipped, el, err := run(ctx, ifi, mac, s, t, *size, *flows, *rate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pktgen:", err)
		os.Exit(1)
	}
	fmt.Printf("sent %d frames in %v: %.3f Mpps", n, el.Round(time.Millisecond), float64(n)/el.Seconds()/1e6)
	if skipped > 0 {
		// Slots the pacer fell too far behind to use (see pacer): the rate offered
		// was lower than -rate.
		fmt.Printf(" (%d time slots skipped while behind)", skipped)
	}
	fmt.Println()
}

// frame writes an Ethernet, IPv4 and UDP header (UDP checksum 0: none) and a zero
// payload into b, a recycled buffer: every byte is written, none kept from its last
// packet (which may have been a frame the socket received).
func frame(b []byte, src, dst net.HardwareAddr, s, t netip.Addr, sport uint16) {
	clear(b)
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	ip[6], ip[8], ip[9] = 0x40, 64, 17
	copy(ip[12:], s.AsSlice())
	copy(ip[16:], t.AsSlice())
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], 9) // discard
	binary.BigEndian.PutUint16(ip[24:], uint16(len(ip)-20))
}

// pacer spreads packets evenly at rate per second: due says how many may have been
// sent by elapsed time since the start. A pacer of rate 0 does not limit.
//
// It does not make up for more than maxLag packets it fell behind (the process was
// descheduled, a timer woke late, the ring was full): their time slots are skipped,
// and counted. Catching up would send them back to back at the interface's speed, a
// burst that measures the device's queue depth rather than whether it forwards the
// rate (a long stall at 0.3 Mpps made a burst of hundreds of frames, more than a
// veth's 256-frame XDP queue holds). The rate reported is what was sent.
type pacer struct {
	rate    float64
	skipped uint64 // time slots that passed while the pacer lagged, never used
}

// maxLag is how many packets the pacer may send above its schedule to catch up: one
// burst.
const maxLag = pmd.DefaultBurst

func (p *pacer) due(elapsed time.Duration) uint64 {
	if p.rate == 0 {
		return ^uint64(0)
	}
	return uint64(p.rate*elapsed.Seconds()) - p.skipped
}

// allow returns how many of want packets may go now, sent having gone already, and
// how long to wait first when none may.
func (p *pacer) allow(sent uint64, elapsed time.Duration, want int) (int, time.Duration) {
	due := p.due(elapsed)
	if p.rate != 0 && due > sent+maxLag {
		p.skipped += due - sent - maxLag
		due = sent + maxLag
	}
	if due > sent {
		return int(min(due-sent, uint64(want))), 0
	}
	// The next packet is due when rate*t passes sent (and the slots skipped): sleep
	// until then, at least a little, as the runtime's timers do not wake sooner
	// anyway.
	next := time.Duration(float64(sent+p.skipped+1) / p.rate * float64(time.Second))
	return 0, max(next-elapsed, 20*time.Microsecond)
}

// sleep waits d on t, or less if ctx ends first: at a low -rate the next packet may
// be due long after -duration or a Ctrl-C.
func sleep(ctx context.Context, t *time.Timer, d time.Duration) {
	t.Reset(d)
	select {
	case <-ctx.Done():
		t.Stop()
	case <-t.C:
	}
}

func run(ctx context.Context, ifi *net.Interface, dst net.HardwareAddr, s, t netip.Addr, size, flows int, rate float64) (sent, skipped uint64, el time.Duration, err error) {
	p, err := xsk.Open(ifi.Name, 0, xsk.Options{})
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.Close()
	// pktgen only sends. The program stays attached (zero-copy drivers transmit
	// only with one), but queue 0's frames go to the kernel stack, not to this
	// socket: else the host lost every frame arriving there while pktgen ran.
	if err := p.Program().Unregister(0); err != nil {
		return 0, 0, 0, err
	}
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	var b pmd.Batch
	start := time.Now()
	flow := 0
	pace := &pacer{rate: rate}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for ctx.Err() == nil {
		// Frames that the ring did not take wait in b and count against the pace
		// only when they go.
		want := pmd.DefaultBurst - b.Len()
		if rate > 0 {
			n, wait := pace.allow(sent+uint64(b.Len()), time.Since(start), want)
			if wait > 0 && b.Len() == 0 {
				sleep(ctx, timer, wait)
				continue
			}
			want = n
		}
		room := b.Room()[:want]
		k := cache.Alloc(room)
		for i := range room[:k] {
			pk := &room[i]
			pool.Append(pk, size)
			frame(pool.Data(pk), ifi.HardwareAddr, dst, s, t, uint16(40000+flow))
			flow = (flow + 1) % flows
		}
		b.Grow(k)
		sent += uint64(b.Tx(p))
		var rx [pmd.DefaultBurst]pmd.Pkt // nothing is directed to it, but give back what came
		if n := p.Rx(rx[:]); n > 0 {
			cache.Free(rx[:n])
		}
	}
	cache.Free(b.Pkts())
	return sent, pace.skipped, time.Since(start), nil
}
