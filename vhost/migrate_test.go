package vhost

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
)

// TestQEMUMigrationLogging migrates a running QEMU (TCG) guest attached to the
// dpkit back-end while it pings through it. QEMU drives the vhost-user side of live
// migration: LOG_ALL on under running rings, SET_LOG_BASE with its bitmap (whose
// reply it waits for), rings re-addressed with VHOST_VRING_F_LOG, and the rings
// stopped at the end. The migration stream goes to /dev/null; then the source guest
// resumes (`cont`), logging goes off again, and the guest's remaining pings must
// still be answered.
func TestQEMUMigrationLogging(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "cpio")
	testenv.Short(t, "boots a QEMU guest")
	vmlinux, base := guestImage(t)
	b, path := testBackend(t, nil)
	initrd := pingInitrd(t, base, "-c 40 -i 0.25 -W 10")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	answered := make(chan int, 1)
	rctx, rcancel := context.WithCancel(ctx)
	go func() {
		answered <- responder(rctx, b.Port(0), b.opts.Pool, [4]byte{10, 99, 0, 1}, [6]byte{2, 0, 0, 0, 0, 1})
	}()
	qmpPath := filepath.Join(shortTempDir(t), "qmp.sock")
	q := exec.CommandContext(ctx, "qemu-system-x86_64", guestArgs(vmlinux, initrd, path,
		"virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,vectors=0,disable-legacy=on",
		"-qmp", "unix:"+qmpPath+",server=on,wait=off")...)
	var console strings.Builder
	q.Stdout, q.Stderr = &console, &console
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- q.Wait() }()
	fail := func(format string, args ...any) {
		t.Helper()
		q.Process.Kill()
		<-exited
		rcancel()
		<-answered
		t.Fatalf(format+"\nconsole:\n%s", append(args, console.String())...)
	}

	// Wait until pings flow through the back-end.
	for b.Port(0).Stats().RxPackets < 4 {
		select {
		case err := <-exited:
			exited <- err
			fail("guest exited before traffic: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
	mon, err := dialQMP(qmpPath)
	if err != nil {
		fail("qmp: %v", err)
	}
	defer mon.Close()
	if _, err := mon.run(`{"execute":"migrate-set-parameters","arguments":{"max-bandwidth":1073741824}}`); err != nil {
		fail("%v", err)
	}
	if _, err := mon.run(`{"execute":"migrate","arguments":{"uri":"exec:cat > /dev/null"}}`); err != nil {
		fail("%v", err)
	}
	status := ""
	for deadline := time.Now().Add(90 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		r, err := mon.run(`{"execute":"query-migrate"}`)
		if err != nil {
			fail("%v", err)
		}
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(r, &st)
		if status = st.Status; status == "completed" || status == "failed" {
			break
		}
	}
	if status != "completed" {
		fail("migration ended %q", status)
	}
	d := b.curDev.Load()
	if d == nil || d.loggedStarts.Load() == 0 {
		fail("migration completed but no ring ran with dirty logging")
	}
	logged := d.loggedStarts.Load()
	rxAtMigration := b.Port(0).Stats().RxPackets
	// Resume the source guest: the rings restart without logging and the pings go on.
	if _, err := mon.run(`{"execute":"cont"}`); err != nil {
		fail("%v", err)
	}
	select {
	case err = <-exited:
	case <-ctx.Done():
		fail("guest did not finish after cont")
	}
	rcancel()
	n := <-answered
	if err != nil || !strings.Contains(console.String(), "DPKIT-VMTEST-EXIT=0") {
		t.Fatalf("guest failed after migration (%v), %d echo requests answered:\n%s", err, n, console.String())
	}
	if b.Port(0).Stats().RxPackets <= rxAtMigration {
		t.Fatalf("no traffic after the guest resumed")
	}
	t.Logf("migration completed; %d ring starts with logging; %d echo requests answered; backend stats %+v",
		logged, n, b.Port(0).Stats())
}

// qmp is a minimal QEMU Machine Protocol client: one command at a time, events skipped.
type qmp struct {
	c net.Conn
	r *bufio.Reader
}

func dialQMP(path string) (*qmp, error) {
	var c net.Conn
	var err error
	for range 100 {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return nil, err
	}
	m := &qmp{c: c, r: bufio.NewReader(c)}
	if _, err := m.r.ReadBytes('\n'); err != nil { // greeting
		c.Close()
		return nil, err
	}
	if _, err := m.run(`{"execute":"qmp_capabilities"}`); err != nil {
		c.Close()
		return nil, err
	}
	return m, nil
}

// run sends cmd and returns the "return" member of its answer.
func (m *qmp) run(cmd string) (json.RawMessage, error) {
	m.c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := m.c.Write([]byte(cmd + "\n")); err != nil {
		return nil, err
	}
	for {
		line, err := m.r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		var a struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
		}
		if json.Unmarshal(line, &a) != nil {
			continue
		}
		if a.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s", cmd, a.Error.Desc)
		}
		if a.Return != nil {
			return a.Return, nil
		}
		// an event
	}
}

func (m *qmp) Close() error { return m.c.Close() }
