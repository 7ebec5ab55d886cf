package vhost

import (
	"errors"
	"io"
	"testing"
)

// TestBackendCutMessageNotHangup: a front-end that closes after a header promising
// a payload cut a message short; the connection ends with io.ErrUnexpectedEOF, not
// the io.EOF of a front-end hanging up between messages (which goes unlogged).
func TestBackendCutMessageNotHangup(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	waitFor(t, "attach", b.Attached)
	var hb [hdrSize]byte
	encodeHeader(hb[:], header{req: ReqSetFeatures, flags: flagVersion, size: sizeU64})
	if err := f.c.Write(hb[:]); err != nil {
		t.Fatal(err)
	}
	f.close()
	waitFor(t, "the connection to end", func() bool { return b.LastError() != nil })
	err := b.LastError()
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		t.Fatalf("connection ended with %v; want io.ErrUnexpectedEOF", err)
	}
}
