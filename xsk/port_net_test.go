package xsk

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

func TestKernelUDPReachesXSK(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{})
	defer p.Close()
	t.Logf("attach %v, zero-copy %v", p.Program().Mode(), p.Socket().ZeroCopy())

	want := []byte("hello from the kernel stack")
	e.udpSendFromB(t, 4000, 5000, want)
	data, _ := rxUntil(t, p, 3*time.Second, func(b []byte) bool {
		sp, dp, pl, err := parseUDP(b)
		if err != nil {
			return false
		}
		return sp == 4000 && dp == 5000 && bytes.Equal(pl, want)
	})
	if !bytes.Equal(data[0:6], e.v.MACA) || !bytes.Equal(data[6:12], e.v.MACB) {
		t.Errorf("MACs %x -> %x, want %s -> %s", data[6:12], data[0:6], e.v.MACB, e.v.MACA)
	}
	st := p.Stats()
	if st.RxPackets == 0 || st.TotalDrops() != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestPingReachesXSK(t *testing.T) {
	e := newEnv(t, 1, 0)
	testenv.NeedCommand(t, "ping")
	p := e.openA(t, 0, Options{})
	defer p.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// No reply comes (the XSK takes the request); ping's failure is expected.
		e.b.Exec("ping", "-c", "2", "-i", "0.2", "-W", "1", ipA.String())
	}()
	defer func() { <-done }()
	rxUntil(t, p, 5*time.Second, func(b []byte) bool {
		return len(b) >= 34+8 && binary.BigEndian.Uint16(b[12:]) == 0x0800 && b[23] == 1 && b[34] == 8 // ICMP echo request
	})
}

func TestXSKFramesReachKernelWithGoodChecksums(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{})
	defer p.Close()
	c := e.udpListen(t, 6000)

	pool := p.UMEMPool()
	cache := pool.NewCache(0)
	defer cache.Flush()
	payload := []byte("sent through AF_XDP")
	var pk [1]pmd.Pkt
	for i := 0; i < 3; i++ { // the first may race the listener's readiness; send a few
		if cache.Alloc(pk[:]) != 1 {
			t.Fatal("no frame")
		}
		f := udpFrame(e.v.MACB, e.v.MACA, ipA, ipB, 6001, 6000, payload)
		pk[0].Len = uint16(copy(pool.Bytes(pk[0].Frame)[pk[0].Off:], f))
		for p.Tx(pk[:]) == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 2048)
	n, from, err := c.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("B's stack got nothing (a bad checksum is dropped silently): %v", err)
	}
	if !bytes.Equal(buf[:n], payload) || from.Port != 6001 {
		t.Errorf("got %q from %v", buf[:n], from)
	}
	// Completions come back on the next Tx call.
	deadline := time.Now().Add(2 * time.Second)
	for p.InKernelTx() > 0 && time.Now().Before(deadline) {
		p.Tx(nil)
		time.Sleep(time.Millisecond)
	}
	if n := p.InKernelTx(); n != 0 {
		t.Errorf("%d tx frames never completed", n)
	}
	if st := p.Stats(); st.TxPackets != 3 {
		t.Errorf("TxPackets %d, want 3", st.TxPackets)
	}
}
