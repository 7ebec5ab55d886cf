package uds

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"golang.org/x/sys/unix"
)

// rawSend makes one sendmsg of b with fds attached, as a hostile peer may.
func rawSend(t *testing.T, c *Conn, b []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(b, oob, nil)
	if err != nil || n != len(b) {
		t.Fatalf("sendmsg: %d of %d bytes, %v", n, len(b), err)
	}
}

// TestReadFullHostilePeer: what a hostile or broken peer sends on the socket ends
// in an error or a whole read, with every descriptor that arrived closed (or handed
// to the caller) and none left open in the process.
func TestReadFullHostilePeer(t *testing.T) {
	dir, err := os.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	hdr := make([]byte, 12)
	cases := []struct {
		name    string
		peer    func(t *testing.T, c *Conn, fds []int)
		nfds    int
		wantErr error // nil: the read succeeds, with wantFds descriptors
		wantFds int
	}{
		{"more fds than the buffer holds (MSG_CTRUNC)", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr, fds...)
		}, MaxFds + 3, ErrTooManyFds, 0},
		{"MaxFds split over two reads, then more", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr[:4], fds[:5]...)
			rawSend(t, c, hdr[4:], fds[5:]...)
		}, MaxFds + 2, ErrTooManyFds, 0},
		{"fds with each of two parts of the header", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr[:4], fds[:2]...)
			time.Sleep(10 * time.Millisecond)
			rawSend(t, c, hdr[4:], fds[2:]...)
		}, 4, nil, 4},
		{"a short header, then the rest", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr[:5])
			time.Sleep(10 * time.Millisecond)
			rawSend(t, c, hdr[5:])
		}, 0, nil, 0},
		{"fds with the first bytes, then the peer closes", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr[:4], fds...)
			c.Close()
		}, 3, io.ErrUnexpectedEOF, 0},
		{"a directory and a socket for descriptors", func(t *testing.T, c *Conn, fds []int) {
			rawSend(t, c, hdr, int(dir.Fd()), fds[0])
		}, 1, nil, 2},
		{"the peer closes between messages", func(t *testing.T, c *Conn, fds []int) {
			c.Close()
		}, 0, io.EOF, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b, err := Pair()
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			before := testenv.Fds(t)
			fds := eventfds(t, tc.nfds)
			if tc.name == "a directory and a socket for descriptors" {
				CloseAll(fds)
				fds = []int{int(dupSock(t, a))}
			}
			tc.peer(t, a, fds)
			a.Close()
			CloseAll(fds)
			b.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := b.ReadFull(make([]byte, 12))
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || tc.wantErr != io.EOF && errors.Is(err, io.EOF) {
					// A message cut short is not a clean end of the stream.
					t.Errorf("ReadFull: %v, want %v", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("ReadFull failed and returned %d descriptors", len(got))
				}
			} else if err != nil || len(got) != tc.wantFds {
				t.Errorf("ReadFull: %d descriptors, %v; want %d, nil", len(got), err, tc.wantFds)
			}
			CloseAll(got)
			// a is closed; before counted both ends of the pair.
			if n := testenv.Fds(t); n != before-1 {
				t.Errorf("%d descriptors open after the exchange, %d before (less the peer's)", n, before)
			}
		})
	}
}

func dupSock(t *testing.T, c *Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd int
	var derr error
	rc.Control(func(s uintptr) { fd, derr = Dup(int(s)) })
	if derr != nil {
		t.Fatal(derr)
	}
	return fd
}
