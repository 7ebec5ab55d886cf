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

// TestTxChainPastKernelLimit: in copy mode the kernel builds one skb per packet and
// refuses a chain past MAX_SKB_FRAGS (17) fragments as invalid; on a device that
// takes no linear part (virtio_net) every descriptor is a fragment. Before, the port
// counted a chain the kernel dropped as sent (TxInvalidDescs); now the port drops one
// of more than 17 segments itself (DropTooLong), and a 17-segment chain goes.
func TestTxChainPastKernelLimit(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{MultiBuffer: true, Bind: BindCopy}})
	defer p.Close()
	c := e.udpListen(t, 5300)
	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	chain := func(segs int, payload []byte) []pmd.Pkt {
		frame := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 5301, 5300, payload)
		per := (len(frame) + segs - 1) / segs
		pkts := make([]pmd.Pkt, segs)
		if cache.Alloc(pkts) != segs {
			t.Fatal("pool empty")
		}
		for i := range pkts {
			part := frame[min(i*per, len(frame)):min((i+1)*per, len(frame))]
			pkts[i].Len = uint16(copy(pool.Bytes(pkts[i].Frame)[pkts[i].Off:], part))
			if i < segs-1 {
				pkts[i].Flags = pmd.PktMore
			}
		}
		return pkts
	}
	long := chain(18, bytes.Repeat([]byte("L"), 18*40))
	ok := chain(17, bytes.Repeat([]byte("K"), 17*40))
	if n := p.Tx(append(long, ok...)); n != len(long)+len(ok) {
		t.Fatalf("Tx took %d of %d", n, len(long)+len(ok))
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := c.ReadFromUDP(buf)
	if err != nil {
		st, _ := p.Socket().Stats()
		t.Fatalf("the 17-segment chain did not reach B: %v (socket %+v)", err, st)
	}
	if n != 17*40 || buf[0] != 'K' {
		t.Errorf("B got %d bytes starting %q, want the 17-segment chain's %d", n, buf[0], 17*40)
	}
	st := p.Stats()
	if st.Drops[pmd.DropTooLong] != 1 || st.TxPackets != 1 {
		t.Errorf("port: %d too long, %d sent; want 1 and 1", st.Drops[pmd.DropTooLong], st.TxPackets)
	}
	if ks, err := p.Socket().Stats(); err != nil || ks.TxInvalidDescs != 0 {
		t.Errorf("kernel refused %d descriptors (%v), want 0", ks.TxInvalidDescs, err)
	}
}
