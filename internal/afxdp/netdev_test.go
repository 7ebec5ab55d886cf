package afxdp

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/internal/testenv"
	"golang.org/x/sys/unix"
)

// TestZeroCopyMaxSegsQuery: the netdev family answers dev-get for loopback (which has no
// zero-copy, so no limit) and refuses a missing device with ENODEV; an EINVAL here
// means the request itself is malformed (a genlmsghdr with reserved bytes set).
func TestZeroCopyMaxSegsQuery(t *testing.T) {
	if _, ok, err := ZeroCopyMaxSegs(1); err != nil || ok {
		if errors.Is(err, unix.ENOENT) {
			testenv.Unavailable(t, "netdev netlink family (kernel 6.6+)")
		}
		t.Fatalf("lo: ok %v, %v; want no limit and no error", ok, err)
	}
	if _, _, err := ZeroCopyMaxSegs(1 << 30); !errors.Is(err, unix.ENODEV) {
		t.Fatalf("missing device: %v, want ENODEV", err)
	}
}
