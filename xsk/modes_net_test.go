package xsk

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func udpRoundTrip(t *testing.T, e *env, p *Port, sport int) {
	t.Helper()
	want := []byte("mode check")
	e.udpSendFromB(t, sport, 5000, want)
	rxUntil(t, p, 3*time.Second, func(b []byte) bool {
		sp, _, pl, err := parseUDP(b)
		return err == nil && sp == sport && bytes.Equal(pl, want)
	})
}

func TestUnalignedUMEM(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{UMEMOptions: UMEMOptions{Unaligned: true}})
	defer p.Close()
	if !p.Socket().UMEM().Unaligned() {
		t.Fatal("UMEM not unaligned")
	}
	udpRoundTrip(t, e, p, 4200)
}

func TestBusyPollOptions(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{BusyPoll: 20 * time.Microsecond, BusyPollBudget: 16, TxBudget: 128}})
	defer p.Close()
	v, err := unix.GetsockoptInt(p.Socket().FD(), unix.SOL_SOCKET, unix.SO_BUSY_POLL)
	if err != nil || v != 20 {
		t.Errorf("SO_BUSY_POLL = %d, %v; want 20", v, err)
	}
	udpRoundTrip(t, e, p, 4201)
}

func TestBindCopyReported(t *testing.T) {
	e := newEnv(t, 1, 0)
	p := e.openA(t, 0, Options{Socket: Config{Bind: BindCopy}, Attach: AttachGeneric})
	defer p.Close()
	if p.Socket().ZeroCopy() {
		t.Error("copy mode asked, zero-copy reported")
	}
	if m := p.Program().Mode(); m != AttachGeneric {
		t.Errorf("attach mode %v, want generic", m)
	}
	udpRoundTrip(t, e, p, 4202)
	// veth has no zero-copy support: requiring it must fail with ErrNotSupported.
	e.inA(t, func() error {
		_, err := Open(e.v.A, 0, Options{Socket: Config{Bind: BindZeroCopy}})
		if err == nil {
			t.Error("zero-copy bind on veth succeeded")
		}
		return nil
	})
}

// TestPinnedMap registers a socket in an XSKMAP pinned by someone else (a CNI plugin,
// xdp-loader), which also owns the program.
func TestPinnedMap(t *testing.T) {
	e := newEnv(t, 1, 0)
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, ""); err != nil {
		testenvUnavailable(t, "bpffs mount: "+err.Error())
	}
	defer unix.Unmount(dir, 0)
	owner, err := NewProgram(ProgramOptions{MaxQueues: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	e.inA(t, func() error { return owner.Attach(e.v.IndexA, AttachAuto) })
	path := filepath.Join(dir, "xsks")
	if err := owner.Map().Pin(path); err != nil {
		t.Fatal(err)
	}
	// An Open that fails after loading the pinned map (here a bad ring size) closes
	// what it loaded.
	// Only BPF objects and sockets are counted: the Go runtime opens and closes
	// files of its own meanwhile (cgroup CPU limits, under the race detector).
	before := countObjFds(t)
	for range 5 {
		e.inA(t, func() error {
			if _, err := Open(e.v.A, 0, Options{PinnedMap: path, Socket: Config{RxSize: 3}}); err == nil {
				t.Error("Open with ring size 3 succeeded")
			}
			return nil
		})
	}
	if after := countObjFds(t); after != before {
		t.Errorf("5 failed Opens left %d fds open", after-before)
	}
	p := e.openA(t, 0, Options{PinnedMap: path})
	udpRoundTrip(t, e, p, 4203)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("closing the port removed the pin: %v", err)
	}
	if x := e.a.Link(t, e.v.A).Attrs().Xdp; x == nil || !x.Attached {
		t.Error("closing the port detached the owner's program")
	}
}
