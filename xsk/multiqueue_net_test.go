package xsk

import (
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
