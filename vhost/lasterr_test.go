package vhost

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// TestLastErrorSetWhenDetached: once Attached turns false, LastError tells why the
// connection ended. Before, Attached turned false first and the error was stored
// after, so a caller that saw the detach read the previous connection's error.
func TestLastErrorSetWhenDetached(t *testing.T) {
	b, path := testBackend(t, nil)
	for i := range 30 {
		f := newFakeFront(t, path)
		waitFor(t, "attach", b.Attached)
		var hb [hdrSize]byte
		req := ReqSetFeatures
		if i%2 == 1 {
			req = ReqSetOwner // alternate, so that each connection's error differs
		}
		encodeHeader(hb[:], header{req: req, flags: flagVersion, size: sizeU64})
		if err := f.c.Write(hb[:]); err != nil {
			t.Fatal(err)
		}
		f.close()
		waitFor(t, "detach", func() bool { return !b.Attached() })
		err := b.LastError()
		if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), req.String()) {
			t.Fatalf("connection %d: detached with LastError %v; want the cut %v", i, err, req)
		}
	}
}
