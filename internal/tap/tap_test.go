package tap

import (
	"testing"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
)

// TestWritevEmptyFrame: Writev of a frame with no bytes is refused by the device, as
// Write's is; before, Writev skipped the write and reported the frame written, so the
// TAP port counted an empty packet sent (found in review).
func TestWritevEmptyFrame(t *testing.T) {
	testenv.NeedRoot(t)
	testenv.NeedFile(t, "/dev/net/tun", "TUN/TAP")
	ns := nettest.NewNS(t)
	var fd int
	if err := ns.Do(func() error {
		var err error
		fd, _, err = Open(nettest.Name("t"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer Close(fd)
	if ok, err := Write(fd, nil); ok || err == nil {
		t.Fatalf("Write of an empty frame: %v, %v; want an error", ok, err)
	}
	for _, iov := range [][][]byte{nil, {{}}, {{}, {}}} {
		if ok, err := Writev(fd, iov); ok || err == nil {
			t.Errorf("Writev of an empty frame (%d empty buffers): %v, %v; want an error like Write's", len(iov), ok, err)
		}
	}
}
