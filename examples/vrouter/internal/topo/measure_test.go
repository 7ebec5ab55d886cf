package topo

import (
	"errors"
	"testing"
	"time"
)

// iperf3 3.12 -J exits 0 when it cannot connect, and reports the failure in the JSON.
const iperfRefused = `{
	"start":	{
		"connected":	[],
		"version":	"iperf 3.12",
		"system_info":	"Linux vm 6.18.44 #1 SMP PREEMPT_DYNAMIC @0 x86_64"
	},
	"intervals":	[],
	"end":	{
	},
	"error":	"unable to connect to server: Connection refused"
}
`

// TestParseIperf: a run iperf3 reports as failed (in its JSON, whatever its exit
// status) is an error, not a throughput of 0; a refused connection is told apart
// (the server is not listening yet: try again).
func TestParseIperf(t *testing.T) {
	bps, err := parseIperf(iperfRefused)
	if err == nil {
		t.Fatalf("refused connection parsed as %v bit/s, no error", bps)
	}
	if !errors.Is(err, errIperfRefused) {
		t.Errorf("refused connection: %v, not errIperfRefused", err)
	}
	if _, err := parseIperf(`{"start": {}, "end": {}, "error": "the server has terminated"}`); err == nil || errors.Is(err, errIperfRefused) {
		t.Errorf("server terminated: %v", err)
	}
	if bps, err := parseIperf(`{"end": {}}`); err == nil {
		t.Errorf("no sum_received parsed as %v bit/s", bps)
	}
	if _, err := parseIperf(""); err == nil {
		t.Error("empty output parsed")
	}
	bps, err = parseIperf(`{"end": {"sum_sent": {"bits_per_second": 2e9}, "sum_received": {"bits_per_second": 1.5e9}}}`)
	if err != nil || bps != 1.5e9 {
		t.Errorf("good run: %v bit/s, %v", bps, err)
	}
}

// TestIperfClientDuration: iperf3 -t 0 runs until killed, so no duration may become
// one; below a second is a second (the demo's -seconds 0, a test's 500 ms).
func TestIperfClientDuration(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string
	}{{0, "1"}, {-time.Second, "1"}, {500 * time.Millisecond, "1"}, {time.Second, "1"}, {3 * time.Second, "3"}} {
		args := iperfClient("10.1.2.2", c.d, 1)
		got := ""
		for i, a := range args {
			if a == "-t" && i+1 < len(args) {
				got = args[i+1]
			}
		}
		if got != c.want {
			t.Errorf("%v: -t %q, want %q (%v)", c.d, got, c.want, args)
		}
	}
}
