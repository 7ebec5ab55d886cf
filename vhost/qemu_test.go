package vhost

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/child"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/internal/vmtest"
	"github.com/dpkit/dpkit/pmd"
)

// guestImage returns the kernel and base initramfs that internal/vmtest builds (and
// caches) for VM tests.
func guestImage(t *testing.T) (vmlinux, base string) {
	vmtest.Need(t)
	vmlinux, base, err := vmtest.Image()
	if err != nil {
		t.Fatalf("VM image: %v", err)
	}
	return vmlinux, base
}

// responder answers ARP for ip and ICMP echo requests to ip on port, as the guest's
// gateway would. It returns how many echo requests it answered.
func responder(ctx context.Context, port pmd.Port, pool *pmd.Pool, ip [4]byte, mac [6]byte) int {
	var pkts [32]pmd.Pkt
	answered := 0
	for ctx.Err() == nil {
		n := port.Rx(pkts[:])
		if n == 0 {
			time.Sleep(time.Millisecond)
			continue
		}
		out := 0
		for i := 0; i < n; i++ {
			// A jumbo frame is a chain: its headers are in the first segment.
			j := i
			for j < n-1 && pkts[j].Flags&pmd.PktMore != 0 {
				j++
			}
			d := pool.Data(&pkts[i])
			if answer(d, ip, mac) {
				out += copy(pkts[out:], pkts[i:j+1])
				if len(d) > 34 && d[23] == 1 {
					answered++
				}
			} else {
				pool.Put(frames(pkts[i : j+1]))
			}
			i = j
		}
		sent := port.Tx(pkts[:out])
		for _, p := range pkts[sent:out] {
			pool.Put([]pmd.Frame{p.Frame})
		}
	}
	return answered
}

// answer turns an ARP request or ICMP echo request for ip into its reply, in place.
func answer(d []byte, ip [4]byte, mac [6]byte) bool {
	if len(d) < 42 {
		return false
	}
	be := binary.BigEndian
	switch be.Uint16(d[12:]) {
	case 0x0806: // ARP (RFC 826)
		if be.Uint16(d[20:]) != 1 || !bytes.Equal(d[38:42], ip[:]) {
			return false
		}
		copy(d[0:6], d[22:28])
		copy(d[6:12], mac[:])
		be.PutUint16(d[20:], 2)
		copy(d[32:42], d[22:32]) // target = requester
		copy(d[22:28], mac[:])
		copy(d[28:32], ip[:])
		return true
	case 0x0800: // IPv4, ICMP echo (RFC 792)
		ihl := int(d[14]&0xf) * 4
		if d[23] != 1 || !bytes.Equal(d[30:34], ip[:]) || len(d) < 14+ihl+8 || d[14+ihl] != 8 {
			return false
		}
		copy(d[0:6], d[6:12])
		copy(d[6:12], mac[:])
		var src [4]byte
		copy(src[:], d[26:30])
		copy(d[26:30], d[30:34])
		copy(d[30:34], src[:])
		icmp := d[14+ihl:]
		icmp[0] = 0
		// Type 8 → 0: add 0x0800 back into the one's-complement checksum (RFC 1624).
		sum := uint32(be.Uint16(icmp[2:])) + 0x0800
		sum = (sum & 0xffff) + sum>>16
		be.PutUint16(icmp[2:], uint16(sum))
		return true
	}
	return false
}

// TestQEMUGuestPing boots a QEMU (TCG) guest whose kernel virtio_net driver attaches
// to the dpkit back-end over vhost-user (memfd guest memory, share=on) and pings the
// back-end's responder through it: five pings, then three of 8028 bytes with the
// guest's MTU at 9000 (a chain of frames in the back-end, mergeable buffers back).
func TestQEMUGuestPing(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedQEMU(t)
	testenv.NeedCommand(t, "cpio")
	testenv.Short(t, "boots a QEMU guest")
	vmlinux, base := guestImage(t)
	for _, packed := range []bool{false, true} {
		name := "split"
		if packed {
			name = "packed"
		}
		t.Run(name, func(t *testing.T) {
			b, path := testBackend(t, nil)
			initrd := pingInitrd(t, base, "-c 5 -W 5 10.99.0.1 && ip link set eth0 mtu 9000 && ping -c 3 -W 5 -s 8000")
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
			defer cancel()
			mac := [6]byte{2, 0, 0, 0, 0, 1}
			answered := make(chan int, 1)
			rctx, rcancel := context.WithCancel(ctx)
			go func() { answered <- responder(rctx, b.Port(0), b.opts.Pool, [4]byte{10, 99, 0, 1}, mac) }()
			dev := "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:56,vectors=0,disable-legacy=on"
			if packed {
				dev += ",packed=on"
			}
			q := exec.CommandContext(ctx, "qemu-system-x86_64", guestArgs(vmlinux, initrd, path, dev)...)
			var outb bytes.Buffer
			q.Stdout, q.Stderr = &outb, &outb
			err := child.Run(q) // no guest outlives a killed test binary
			out := outb.Bytes()
			rcancel()
			n := <-answered
			console := string(out)
			if err != nil || !strings.Contains(console, "DPKIT-VMTEST-EXIT=0") {
				t.Fatalf("guest failed (%v), %d echo requests answered:\n%s", err, n, console)
			}
			if n < 8 {
				t.Fatalf("%d echo requests answered, want 8:\n%s", n, console)
			}
			t.Logf("%d pings answered; backend stats %+v", n, b.Port(0).Stats())
		})
	}
}

// pingInitrd writes an initramfs (the vmtest base plus a script as the guest's "test
// binary") whose guest configures eth0 and pings the back-end's responder with
// pingArgs; it returns its path.
func pingInitrd(t *testing.T, base, pingArgs string) string {
	t.Helper()
	dir := shortTempDir(t)
	script := "#!/bin/sh\nip link set eth0 up && ip addr add 10.99.0.2/24 dev eth0 && ping " + pingArgs + " 10.99.0.1\n"
	if err := os.WriteFile(filepath.Join(dir, "dpkit.test"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "dpkit.args"), nil, 0o644)
	cp := exec.Command("sh", "-c", "printf 'dpkit.test\\ndpkit.args\\n' | cpio -o -H newc --quiet > extra.cpio && cat "+base+" extra.cpio > initrd")
	cp.Dir = dir
	if out, err := cp.CombinedOutput(); err != nil {
		t.Fatalf("initrd: %v %s", err, out)
	}
	return filepath.Join(dir, "initrd")
}

// guestArgs is the QEMU command line of a TCG guest with 256 MiB of shared memfd memory
// and one virtio-net device dev on the vhost-user socket path, plus extra arguments.
func guestArgs(vmlinux, initrd, path, dev string, extra ...string) []string {
	return append([]string{
		"-accel", "tcg", "-nodefaults", "-no-user-config", "-no-reboot", "-machine", "q35",
		"-cpu", "max", "-m", "256", "-display", "none", "-serial", "stdio", "-monitor", "none",
		"-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem",
		"-chardev", "socket,id=c0,path=" + path, "-netdev", "vhost-user,id=n0,chardev=c0",
		"-device", dev,
		"-kernel", vmlinux, "-initrd", initrd,
		"-append", "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init"}, extra...)
}
