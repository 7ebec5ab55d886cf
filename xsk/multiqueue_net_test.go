package xsk

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// sendFrames copies frames into p's pool and transmits them, waiting for completions.
func sendFrames(t *testing.T, p *Port, frames ...[]byte) {
	t.Helper()
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	var pk [1]pmd.Pkt
	for _, f := range frames {
		if cache.Alloc(pk[:]) != 1 {
			t.Fatal("sender pool exhausted")
		}
		pk[0].Len = uint16(copy(pool.Bytes(pk[0].Frame)[pk[0].Off:], f))
		deadline := time.Now().Add(time.Second)
		for p.Tx(pk[:]) == 0 {
			if time.Now().After(deadline) {
				t.Fatal("tx ring stuck")
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
}

// newSenderB opens tx-only sockets on every given queue of end B, sharing one UMEM.
func (e *env) sendersB(t *testing.T, queues int) []*Port {
	t.Helper()
	var ports []*Port
	var u *UMEM
	if err := e.b.Do(func() (err error) {
		if u, err = NewUMEM(UMEMOptions{}); err != nil {
			return err
		}
		for q := range queues {
			p, err := NewPort(u, e.v.IndexB, Config{Queue: q, RxSize: -1}, 0)
			if err != nil {
				return err
			}
			ports = append(ports, p)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		CloseAll(ports)
		u.Close()
	})
	return ports
}

// TestEveryQueueSharedUMEM opens all four queues of a veth end with one shared UMEM,
// and sends to each from an XSK on the same queue of the peer (veth delivers on the rx
// queue numbered like the sender's tx queue).
func TestEveryQueueSharedUMEM(t *testing.T) {
	const queues = 4
	e := newEnv(t, queues, 0)
	var ports []*Port
	e.inA(t, func() (err error) {
		ports, err = OpenAll(e.v.A, Options{})
		return err
	})
	defer CloseAll(ports)
	if len(ports) != queues {
		t.Fatalf("OpenAll opened %d queues, want %d", len(ports), queues)
	}
	for i, p := range ports[1:] {
		if p.UMEMPool() != ports[0].UMEMPool() {
			t.Fatalf("port %d has its own UMEM", i+1)
		}
	}
	senders := e.sendersB(t, queues)
	for q, s := range senders {
		for k := range 3 {
			sendFrames(t, s, udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 7000+q, 8000, fmt.Appendf(nil, "queue %d #%d", q, k)))
		}
	}
	for q, p := range ports {
		got := 0
		rxUntil(t, p, 3*time.Second, func(b []byte) bool {
			sp, _, pl, err := parseUDP(b)
			if err != nil {
				return false // IPv6 neighbour discovery and the like
			}
			if sp != 7000+q {
				t.Errorf("queue %d got a packet sent on queue %d (%q)", q, sp-7000, pl)
				return false
			}
			got++
			return got == 3
		})
		if d := ports[q].Stats().TotalDrops(); d != 0 {
			t.Errorf("queue %d dropped %d", q, d)
		}
	}
}

// TestOpenAllActiveQueues: a device with 4 rx queues allocated and 2 in use (ethtool
// -L) opens 2 ports. Before, OpenAll counted the allocated queues and failed binding
// queue 2 with EINVAL, reported as ErrNotSupported; Open of a queue past those in use
// now says so (ErrOptions).
func TestOpenAllActiveQueues(t *testing.T) {
	e := newEnv(t, 4, 0)
	e.a.MustExec(t, "ethtool", "-L", e.v.A, "rx", "2", "tx", "2")
	var ports []*Port
	e.inA(t, func() (err error) {
		ports, err = OpenAll(e.v.A, Options{})
		return err
	})
	defer CloseAll(ports)
	if len(ports) != 2 {
		t.Fatalf("OpenAll opened %d queues, want the 2 in use", len(ports))
	}
	e.inA(t, func() error {
		p, err := Open(e.v.A, 2, Options{})
		if !errors.Is(err, ErrOptions) || p != nil {
			t.Errorf("Open of queue 2 of 2: %v, %v; want ErrOptions", p, err)
		}
		return nil
	})
}

// TestOpenFailureReturnsNoPorts: when open fails after some ports were made (here the
// caller's XSKMAP has room for one queue of four), it closes them and returns none;
// before, it returned the closed ports with the error.
func TestOpenFailureReturnsNoPorts(t *testing.T) {
	e := newEnv(t, 4, 0)
	prog, err := NewProgram(ProgramOptions{MaxQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	e.inA(t, func() error { return prog.Attach(e.v.IndexA, AttachAuto) })
	e.inA(t, func() error {
		ports, err := OpenAll(e.v.A, Options{Program: prog})
		if err == nil || ports != nil {
			t.Errorf("OpenAll with a 1-entry XSKMAP: %d ports, %v; want none and an error", len(ports), err)
			CloseAll(ports)
		}
		return nil
	})
}

// TestOpenQueuesSeparately: two Opens of different queues of one device share the
// built-in program, and both queues receive. Before, the second Open attached a program
// of its own and failed (the device already had one); the program is detached only
// when the last port closes.
func TestOpenQueuesSeparately(t *testing.T) {
	const queues = 2
	e := newEnv(t, queues, 0)
	ports := []*Port{e.openA(t, 0, Options{}), e.openA(t, 1, Options{})}
	defer CloseAll(ports)
	if ports[0].Program() != ports[1].Program() {
		t.Fatal("the two Opens attached a program each")
	}
	senders := e.sendersB(t, queues)
	for q, s := range senders {
		sendFrames(t, s, udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 7100+q, 8100, []byte("separate open")))
	}
	for q, p := range ports {
		rxUntil(t, p, 3*time.Second, func(b []byte) bool {
			sp, _, _, err := parseUDP(b)
			return err == nil && sp == 7100+q
		})
	}
	attached := func() bool { x := e.a.Link(t, e.v.A).Attrs().Xdp; return x != nil && x.Attached }
	if err := ports[0].Close(); err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Fatal("closing one port detached the program the other uses")
	}
	sendFrames(t, senders[1], udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 7201, 8100, []byte("after close")))
	rxUntil(t, ports[1], 3*time.Second, func(b []byte) bool {
		sp, _, _, err := parseUDP(b)
		return err == nil && sp == 7201
	})
	if err := ports[1].Close(); err != nil {
		t.Fatal(err)
	}
	if attached() {
		t.Error("the program stayed attached after the last port closed")
	}
}

// TestOpenPassingSharedProgram: an Open given the device's built-in program
// (Options.Program = an earlier port's Program(), as examples/xdpfwd does) holds it
// like an Open without one. Before, it took no reference, so closing the port whose
// Open attached the program detached it from under the later port, whose queue then
// went to the kernel stack.
func TestOpenPassingSharedProgram(t *testing.T) {
	const queues = 2
	e := newEnv(t, queues, 0)
	p0 := e.openA(t, 0, Options{})
	p1 := e.openA(t, 1, Options{Program: p0.Program()})
	defer p1.Close()
	attached := func() bool { x := e.a.Link(t, e.v.A).Attrs().Xdp; return x != nil && x.Attached }
	if err := p0.Close(); err != nil {
		t.Fatal(err)
	}
	if !attached() {
		t.Fatal("closing the first port detached the program the second was opened with")
	}
	senders := e.sendersB(t, queues)
	sendFrames(t, senders[1], udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 7301, 8100, []byte("after close")))
	rxUntil(t, p1, 3*time.Second, func(b []byte) bool {
		sp, _, _, err := parseUDP(b)
		return err == nil && sp == 7301
	})
	if err := p1.Close(); err != nil {
		t.Fatal(err)
	}
	if attached() {
		t.Error("the program stayed attached after the last port closed")
	}
}

// TestOpenPassingOpenedUMEM: an Open given the UMEM an earlier Open made
// (Options.UMEM = an earlier port's Socket().UMEM()) shares it, and the last port of
// either closes it. Before, the earlier port's Close tried to close the UMEM under the
// later port's socket and failed ("UMEM closed with 1 sockets open"), and nothing
// closed it after: its pool's region stayed mapped.
func TestOpenPassingOpenedUMEM(t *testing.T) {
	const queues = 2
	e := newEnv(t, queues, 0)
	senders := e.sendersB(t, queues)
	e.openA(t, 0, Options{}).Close() // warm up the runtime's own descriptors
	fds, maps := countFds(t), countMaps(t)
	p0 := e.openA(t, 0, Options{})
	p1 := e.openA(t, 1, Options{UMEM: p0.Socket().UMEM()})
	if err := p0.Close(); err != nil {
		t.Error(err)
	}
	sendFrames(t, senders[1], udpFrame(e.v.MACA, e.v.MACB, ipB, ipA, 7401, 8100, []byte("shared umem")))
	rxUntil(t, p1, 3*time.Second, func(b []byte) bool {
		sp, _, _, err := parseUDP(b)
		return err == nil && sp == 7401
	})
	if err := p1.Close(); err != nil {
		t.Error(err)
	}
	if n := countMaps(t); n != maps {
		t.Errorf("%d mappings before, %d after", maps, n)
	}
	if n := countFds(t); n > fds {
		t.Errorf("%d descriptors before, %d after", fds, n)
	}
}
