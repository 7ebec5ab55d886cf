package nettest

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Raw is an AF_PACKET socket bound to one interface: it sends whole Ethernet frames and
// receives every frame the interface sees, for tests that inject or inspect traffic
// below the IP stack.
type Raw struct{ fd int }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// OpenRaw opens a raw socket on ifname inside the namespace, closed with the test.
func (ns *NS) OpenRaw(t testing.TB, ifname string) *Raw {
	t.Helper()
	var r *Raw
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Protocol 0 receives nothing until bind names the protocol and the
		// interface; ETH_P_ALL here would queue every interface's frames meanwhile.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		r = &Raw{fd: fd}
		return nil
	})
	if err != nil {
		t.Fatalf("nettest: raw socket on %s: %v", ifname, err)
	}
	t.Cleanup(func() { unix.Close(r.fd) })
	return r
}

// Send transmits one frame.
func (r *Raw) Send(frame []byte) error {
	_, err := unix.Write(r.fd, frame)
	return err
}

// ErrTimeout is returned by Recv when nothing matched in time.
var ErrTimeout = errors.New("nettest: timeout")

// Recv returns the next frame for which match returns true (nil matches all), waiting
// up to timeout. Frames the interface sent itself are seen too.
func (r *Raw) Recv(buf []byte, timeout time.Duration, match func([]byte) bool) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return 0, ErrTimeout
		}
		tv := unix.NsecToTimeval(left.Nanoseconds())
		if err := unix.SetsockoptTimeval(r.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return 0, err
		}
		n, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if match == nil || match(buf[:n]) {
			return n, nil
		}
	}
}
