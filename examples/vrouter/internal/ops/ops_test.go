package ops

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/gopacket/pcapgo"

	"github.com/dpkit/dpkit/examples/vrouter/internal/metrics"
	"github.com/dpkit/dpkit/pmd"
)

func TestCaptureEndpoint(t *testing.T) {
	pool, ca, b, s := captureServer(t)
	if err := (&Server{}).Start("0.0.0.0:0"); err == nil {
		t.Fatal("non-loopback address accepted")
	}

	// Send traffic through pod1 while the capture runs.
	stop := traffic(pool, ca, b, 4, 5*time.Millisecond)
	resp, err := http.Get("http://" + s.Addr() + "/debug/capture?interface=pod1&duration=1s&snaplen=128")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	stop()
	r, err := pcapgo.NewReader(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("not a pcap: %v (%q)", err, body)
	}
	n := 0
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
		n++
	}
	if n == 0 {
		t.Fatal("capture is empty")
	}
	for _, bad := range []string{"interface=nope", "interface=pod1&duration=-1s", "interface=pod1&snaplen=1", "interface=pod1&dir=up"} {
		resp, err := http.Get("http://" + s.Addr() + "/debug/capture?" + bad)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("%s: status %d", bad, resp.StatusCode)
		}
	}
}

// TestCaptureEndpointLive: a client following a capture gets packets while it runs,
// not only at its end (before, they came in 64 KiB pieces or when it stopped).
func TestCaptureEndpointLive(t *testing.T) {
	pool, ca, b, s := captureServer(t)
	defer traffic(pool, ca, b, 1, 10*time.Millisecond)()
	start := time.Now()
	resp, err := http.Get("http://" + s.Addr() + "/debug/capture?interface=pod1&duration=5s")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r, err := pcapgo.NewReader(resp.Body) // reads the file header
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.ReadPacketData(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("the first packet came after %v, at the capture's end", el)
	}
}

// traffic sends n 60-byte packets through ca to b every interval until the returned
// function is called; it returns once the sender has stopped.
func traffic(pool *pmd.Pool, ca *pmd.CapturePort, b pmd.Port, n int, interval time.Duration) func() {
	return trafficOf(pool, ca, b, n, 60, interval)
}

// trafficOf is traffic with packets of size bytes.
func trafficOf(pool *pmd.Pool, ca *pmd.CapturePort, b pmd.Port, n, size int, interval time.Duration) func() {
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		cache := pool.NewCache(32)
		defer cache.Flush()
		pkts := make([]pmd.Pkt, n)
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			k := cache.Alloc(pkts)
			for i := range pkts[:k] {
				pool.Append(&pkts[i], size)
			}
			k = ca.Tx(pkts[:k])
			k = b.Rx(pkts[:k])
			cache.Free(pkts[:k])
		}
	}()
	return func() { close(stop); wg.Wait() }
}

// captureServer starts a Server whose interface "pod1" is a capture port over one end
// of a ring pair (b, the other end); everything is closed when the test ends.
func captureServer(t *testing.T) (*pmd.Pool, *pmd.CapturePort, pmd.Port, *Server) {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 256, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	ca := pmd.NewCapturePort(a, pool)
	t.Cleanup(func() { ca.Close(); b.Close() })
	s := &Server{Metrics: &metrics.Registry{}, Capture: func(n string) (*pmd.CapturePort, bool) { return ca, n == "pod1" }}
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return pool, ca, b, s
}

// TestCloseEndsCapture: Close ends a capture in progress and returns at once. Before,
// Shutdown waited for the capture handler, which waited out its duration: Close gave
// up after 2 s with "context deadline exceeded" (holding the vRouter's SIGTERM
// shutdown that long) and left the capture running on ports about to be closed.
func TestCloseEndsCapture(t *testing.T) {
	pool, ca, b, s := captureServer(t)
	defer traffic(pool, ca, b, 1, 10*time.Millisecond)()
	resp, err := http.Get("http://" + s.Addr() + "/debug/capture?interface=pod1&duration=1m")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := pcapgo.NewReader(resp.Body); err != nil { // the capture runs
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("Close took %v", el)
	}
	// The capture was stopped: a new one may start.
	if err := ca.Start(io.Discard, pmd.CaptureOptions{}); err != nil {
		t.Errorf("capture still running after Close: %v", err)
	} else {
		ca.Stop()
	}
}

// TestCaptureStalledClient: a client that stops reading a capture (a paused tshark)
// holds it only until its duration ends, with a moment for the tail to go out. Before,
// the capture's writer stayed blocked on the connection and Stop waited for it for
// ever, holding the interface's capture lock: every later capture of the interface,
// and the port's Close, hung with it.
func TestCaptureStalledClient(t *testing.T) {
	pool, ca, b, s := captureServer(t)
	defer trafficOf(pool, ca, b, 32, 1400, time.Millisecond)()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	// Sent, never read: the server's socket buffer fills within the capture.
	fmt.Fprint(c, "GET /debug/capture?interface=pod1&duration=200ms HTTP/1.1\r\nHost: x\r\n\r\n")
	time.Sleep(250 * time.Millisecond)
	started := make(chan error, 1)
	go func() { started <- ca.Start(io.Discard, pmd.CaptureOptions{}) }()
	select {
	case err := <-started:
		if err != nil {
			t.Errorf("a capture after the stalled one's end: %v", err)
		} else {
			ca.Stop()
		}
	case <-time.After(1500 * time.Millisecond):
		t.Error("the stalled capture still holds the interface")
		c.Close() // lets the writer, and Start, go on
		if err := <-started; err == nil {
			ca.Stop()
		}
	}
}
