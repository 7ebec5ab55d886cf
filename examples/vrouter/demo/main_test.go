package main

import (
	"slices"
	"testing"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/topo"
)

// TestLeftoverNamespaces: the demo's namespaces are found in ip netns list's output,
// with or without an id, and no one else's (a test's vr..., another tool's).
func TestLeftoverNamespaces(t *testing.T) {
	list := "vrdemoa1b2c3-n1 (id: 0)\nvr0a1b2c-n1 (id: 1)\nvrdemoa1b2c3-k1\nrde1\n\n"
	got := leftoverNamespaces(list)
	if want := []string{"vrdemoa1b2c3-n1", "vrdemoa1b2c3-k1"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestRTTCell: a pair whose pings all went unanswered shows no round trip, not 0s.
func TestRTTCell(t *testing.T) {
	for _, c := range []struct {
		p    topo.PingResult
		want string
	}{
		{topo.PingResult{Sent: 5}, "-"},
		{topo.PingResult{Sent: 5, Received: 4, AvgRTT: 1812345 * time.Nanosecond}, "1.81ms"},
	} {
		if got := rttCell(c.p); got != c.want {
			t.Errorf("rttCell(%+v) = %q, want %q", c.p, got, c.want)
		}
	}
}
