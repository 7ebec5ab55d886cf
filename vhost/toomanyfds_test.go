package vhost

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
	"golang.org/x/sys/unix"
)

// TestBackendTooManyFdsIsProtocolError: a message carrying more descriptors than any
// message may (all with its header, or spread over its header and payload) is a
// malformed message: the connection ends with an error that matches ErrProtocol, as
// errors.go documents for a bad descriptor count, and uds.ErrTooManyFds; every
// descriptor sent is closed. The bare uds.ErrTooManyFds did not match ErrProtocol.
func TestBackendTooManyFdsIsProtocolError(t *testing.T) {
	table := make([]byte, sizeMemTable+MaxMemRegions*regionSize)
	le.PutUint32(table, MaxMemRegions)
	var hb [hdrSize]byte
	encodeHeader(hb[:], header{req: ReqSetMemTable, flags: flagVersion, size: uint32(len(table))})
	for _, tc := range []struct {
		name             string
		withHdr, withPay int
	}{
		{"all with the header", uds.MaxFds + 1, 0},
		{"header and payload", uds.MaxFds, 1},
		{"all with the payload", 0, uds.MaxFds + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, path := testBackend(t, nil)
			f := newFakeFront(t, path)
			waitFor(t, "attach", b.Attached)
			before := openFds(t)
			fds := evfds(t, tc.withHdr+tc.withPay)
			send := func(p []byte, fds []int) error {
				var oob []byte
				if len(fds) > 0 {
					oob = unix.UnixRights(fds...)
				}
				_, _, err := f.c.WriteMsgUnix(p, oob, nil)
				return err
			}
			if err := send(hb[:], fds[:tc.withHdr]); err != nil {
				t.Fatal(err)
			}
			send(table, fds[tc.withHdr:]) // the back-end may have hung up already
			uds.CloseAll(fds)
			waitFor(t, "the connection to end", func() bool { return !b.Attached() })
			err := b.LastError()
			if !errors.Is(err, ErrProtocol) || !errors.Is(err, uds.ErrTooManyFds) {
				t.Errorf("connection ended with %v; want ErrProtocol and uds.ErrTooManyFds", err)
			}
			// before counted the back-end's end of the connection, closed since.
			if n := openFds(t); n != before-1 {
				t.Errorf("%d descriptors open, %d before (less the connection)", n, before)
			}
		})
	}
}
