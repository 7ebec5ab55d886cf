package xsk

import (
	"bytes"
	"testing"
	"time"

	"github.com/dpkit/dpkit/pmd"
)

// TestJumboMultiBuffer receives an MTU-9000 frame as a descriptor chain and sends one
// back the same way.
func TestJumboMultiBuffer(t *testing.T) {
	e := newEnv(t, 1, 9000)
	p := e.openA(t, 0, Options{Socket: Config{MultiBuffer: true}})
	defer p.Close()
	if !p.Program().Frags() {
		t.Fatal("built-in program not frags-aware")
	}

	payload := make([]byte, 8000)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	e.udpSendFromB(t, 4100, 5100, payload)
	_, segs := rxUntil(t, p, 3*time.Second, func(b []byte) bool {
		sp, _, pl, err := parseUDP(b)
		return err == nil && sp == 4100 && bytes.Equal(pl, payload)
	})
	if segs < 2 {
		t.Errorf("jumbo frame arrived in %d descriptor(s), want a chain", segs)
	}
	t.Logf("8042-byte frame arrived in %d segments", segs)

	// Send one back as a chain of frames.
	c := e.udpListen(t, 5200)
	frame := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 5201, 5200, payload)
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	room := pool.FrameSize() - pool.Headroom()
	var chain []pmd.Pkt
	for off := 0; off < len(frame); off += room {
		var pk [1]pmd.Pkt
		if cache.Alloc(pk[:]) != 1 {
			t.Fatal("no frame")
		}
		end := min(off+room, len(frame))
		pk[0].Len = uint16(copy(pool.Bytes(pk[0].Frame)[pk[0].Off:], frame[off:end]))
		if end < len(frame) {
			pk[0].Flags |= pmd.PktMore
		}
		chain = append(chain, pk[0])
	}
	if n := p.Tx(chain); n != len(chain) {
		t.Fatalf("Tx took %d of a %d-segment chain", n, len(chain))
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 9000)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		st, _ := p.Socket().Stats()
		t.Fatalf("jumbo chain not received by B's stack: %v (socket %+v)", err, st)
	}
	if !bytes.Equal(buf[:n], payload) {
		t.Errorf("B got %d bytes, want the %d sent", n, len(payload))
	}
}
