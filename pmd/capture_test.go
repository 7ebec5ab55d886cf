package pmd_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/gopacket/pcapgo"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
)

func TestCapture(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	ca, cb := pmd.NewCapturePort(a, pool), pmd.NewCapturePort(b, pool)
	defer ca.Close()
	defer cb.Close()
	cache := pool.NewCache(32)
	defer cache.Flush()

	var file bytes.Buffer
	if err := ca.Start(&file, pmd.CaptureOptions{Snaplen: 100}); err != nil {
		t.Fatal(err)
	}
	if err := ca.Start(&file, pmd.CaptureOptions{}); !errors.Is(err, pmd.ErrCaptureActive) {
		t.Fatalf("second Start: %v", err)
	}
	var pkts [16]pmd.Pkt
	sent := 0
	for round := 0; round < 10; round++ {
		n := cache.Alloc(pkts[:])
		for i := range pkts[:n] {
			pool.Append(&pkts[i], 60+round*20)
			d := pool.Data(&pkts[i])
			for j := range d {
				d[j] = byte(round)
			}
		}
		sent += ca.Tx(pkts[:n])
		got := cb.Rx(pkts[:])
		cache.Free(pkts[:got])
	}
	st, err := ca.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if st.Captured != uint64(sent) || st.Dropped != 0 {
		t.Fatalf("captured %+v, sent %d", st, sent)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			break
		}
		round := count / 16
		want := 60 + round*20
		if ci.Length != want || len(data) != min(want, 100) || data[0] != byte(round) {
			t.Fatalf("record %d: len %d caplen %d first %d, want len %d", count, ci.Length, len(data), data[0], want)
		}
		count++
	}
	if count != sent {
		t.Fatalf("%d records, sent %d", count, sent)
	}

	// tshark reads the file as Ethernet without complaint.
	if _, err := exec.LookPath("tshark"); err == nil || testenv.InCI() {
		testenv.NeedCommand(t, "tshark")
		path := filepath.Join(t.TempDir(), "c.pcap")
		os.WriteFile(path, file.Bytes(), 0o644)
		out, err := exec.Command("tshark", "-r", path, "-T", "fields", "-e", "frame.len").Output()
		if err != nil || strings.Count(string(out), "\n") != sent {
			t.Fatalf("tshark: %v\n%s", err, out)
		}
	}
}

// captureRing returns a pool, a capturing port over one end of a 512-slot ring pair,
// the pair's other end, and a cache; all are closed when the test ends.
func captureRing(t *testing.T) (*pmd.Pool, *pmd.CapturePort, *pmd.RingPort, *pmd.Cache) {
	t.Helper()
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	a, b, err := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool, Size: 512})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ca := pmd.NewCapturePort(a, pool)
	t.Cleanup(func() { ca.Close() })
	cache := pool.NewCache(32)
	t.Cleanup(cache.Flush)
	return pool, ca, b, cache
}

func TestCaptureDropsWhenFull(t *testing.T) {
	_, ca, b, cache := captureRing(t)
	if err := ca.Start(blockingWriter{}, pmd.CaptureOptions{Slots: 8, Tx: true}); err != nil {
		t.Fatal(err)
	}
	var pkts [64]pmd.Pkt
	n := cache.Alloc(pkts[:])
	if ca.Tx(pkts[:n]) != n {
		t.Fatal("tx")
	}
	got := b.Rx(pkts[:])
	cache.Free(pkts[:got])
	st, _ := ca.Stop()
	if st.Dropped < uint64(n-8) || st.Dropped+st.Captured != uint64(n) {
		t.Fatalf("stats %+v for %d packets through 8 slots", st, n)
	}
}

// TestCaptureWriterFails: after the file stops taking writes, what reaches the
// capture is counted as dropped, so that captured + dropped is still every packet
// that passed and Stop reports the error. Before, those packets were counted
// nowhere (found in review).
func TestCaptureWriterFails(t *testing.T) {
	pool, ca, b, cache := captureRing(t)
	w := &failingWriter{left: 100} // the pcap file header and part of a record
	if err := ca.Start(w, pmd.CaptureOptions{Tx: true}); err != nil {
		t.Fatal(err)
	}
	var pkts [32]pmd.Pkt
	sent := 0
	for range 20 {
		n := cache.Alloc(pkts[:])
		for i := range pkts[:n] {
			pool.Append(&pkts[i], 1000)
		}
		sent += ca.Tx(pkts[:n])
		cache.Free(pkts[:b.Rx(pkts[:])])
	}
	st, err := ca.Stop()
	if err == nil {
		t.Error("Stop after the writer failed: no error")
	}
	if st.Captured+st.Dropped != uint64(sent) {
		t.Errorf("captured %d + dropped %d of %d packets sent", st.Captured, st.Dropped, sent)
	}
}

// failingWriter takes left bytes, then fails every write.
type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("disk full")
	}
	w.left -= len(p)
	return len(p), nil
}

type blockingWriter struct{}

func (blockingWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestCaptureZeroAlloc(t *testing.T) {
	pool, _ := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	ca := pmd.NewCapturePort(a, pool)
	defer b.Close()
	defer ca.Close()
	cache := pool.NewCache(64)
	defer cache.Flush()
	ca.Start(blockingWriter{}, pmd.CaptureOptions{})
	defer ca.Stop()
	var pkts [32]pmd.Pkt
	allocs := testing.AllocsPerRun(500, func() {
		n := cache.Alloc(pkts[:])
		n = ca.Tx(pkts[:n])
		n = b.Rx(pkts[:n])
		cache.Free(pkts[:n])
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per burst while capturing", allocs)
	}
}

// TestCaptureGroup: the queues of one interface, polled by two goroutines, record
// into one capture, started on one queue and stopped on the other.
func TestCaptureGroup(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var near, far []pmd.Port
	for q := 0; q < 2; q++ {
		a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
		defer a.Close()
		defer b.Close()
		near, far = append(near, a), append(far, b)
	}
	g := pmd.NewCaptureGroup(pool, near...)
	var file bytes.Buffer
	if err := g[1].Start(&file, pmd.CaptureOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := g[0].Start(&file, pmd.CaptureOptions{}); !errors.Is(err, pmd.ErrCaptureActive) {
		t.Fatalf("Start on another queue of a capturing group: %v", err)
	}
	const rounds = 50
	done := make(chan int, 2)
	for q := 0; q < 2; q++ {
		go func() {
			cache := pool.NewCache(32)
			defer cache.Flush()
			var pkts [8]pmd.Pkt
			sent := 0
			for r := 0; r < rounds; r++ {
				n := cache.Alloc(pkts[:])
				for i := range pkts[:n] {
					pool.Append(&pkts[i], 64)
					pool.Data(&pkts[i])[0] = byte(q)
				}
				k := g[q].Tx(pkts[:n]) // captured on the way out
				cache.Free(pkts[k:n])
				sent += k
				cache.Free(pkts[:far[q].Rx(pkts[:])])
			}
			done <- sent
		}()
	}
	sent := <-done + <-done
	st, err := g[0].Stop()
	if err != nil {
		t.Fatal(err)
	}
	if st.Captured != uint64(sent) || st.Dropped != 0 || sent == 0 {
		t.Fatalf("captured %+v of %d sent", st, sent)
	}
	r, err := pcapgo.NewReader(bytes.NewReader(file.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var perQueue [2]int
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		perQueue[data[0]]++
	}
	if perQueue[0] == 0 || perQueue[1] == 0 || perQueue[0]+perQueue[1] != sent {
		t.Fatalf("records per queue %v, sent %d", perQueue, sent)
	}
}

// TestCaptureTooLarge: a capture whose slot buffer would be absurd is refused with an
// error rather than an allocation the process cannot survive.
func TestCaptureTooLarge(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool, Size: 8})
	ca := pmd.NewCapturePort(a, pool)
	defer b.Close()
	defer ca.Close()
	var file bytes.Buffer
	for _, o := range []pmd.CaptureOptions{
		{Snaplen: pmd.MaxSnaplen + 1},
		{Snaplen: 65535, Slots: 1 << 20},
		{Slots: -4},
	} {
		if err := ca.Start(&file, o); err == nil {
			ca.Stop()
			t.Errorf("Start(%+v) accepted", o)
		}
	}
	if err := ca.Start(&file, pmd.CaptureOptions{Snaplen: pmd.MaxSnaplen, Slots: 1024}); err != nil {
		t.Fatal(err)
	}
	ca.Stop()
}

// TestCaptureClose: closing a port with a capture running ends the capture as Stop
// does: what was captured is written out and the writer goroutine ends.
func TestCaptureClose(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 512, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	a, b, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer b.Close()
	ca := pmd.NewCapturePort(a, pool)
	cache := pool.NewCache(32)
	defer cache.Flush()
	before := runtime.NumGoroutine()
	var file bytes.Buffer
	if err := ca.Start(&file, pmd.CaptureOptions{}); err != nil {
		t.Fatal(err)
	}
	var pkts [8]pmd.Pkt
	n := cache.Alloc(pkts[:])
	for i := range pkts[:n] {
		pool.Append(&pkts[i], 60)
	}
	sent := ca.Tx(pkts[:n])
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	cache.Free(pkts[:b.Rx(pkts[:])])
	if got := runtime.NumGoroutine(); got > before {
		t.Fatalf("%d goroutines after Close, %d before Start", got, before)
	}
	if want := 24 + sent*(16+60); file.Len() != want {
		t.Fatalf("pcap of %d bytes after Close, want %d (%d packets)", file.Len(), want, sent)
	}
	if st, err := ca.Stop(); err != nil || st != (pmd.CaptureStats{}) {
		t.Fatalf("Stop after Close: %+v, %v", st, err)
	}
}
