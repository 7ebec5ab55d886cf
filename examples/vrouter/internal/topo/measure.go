package topo

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// PingResult is what ping reported.
type PingResult struct {
	Sent, Received int
	AvgRTT         time.Duration
}

// Loss returns the lost fraction in percent.
func (r PingResult) Loss() float64 {
	if r.Sent == 0 {
		return 100
	}
	return 100 * float64(r.Sent-r.Received) / float64(r.Sent)
}

// errIperfRefused: iperf3 could not connect (its server is not listening yet).
var errIperfRefused = errors.New("iperf3: connection refused")

var (
	pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)
	pingRTT    = regexp.MustCompile(`rtt min/avg/max/mdev = [\d.]+/([\d.]+)/`)
)

// Ping pings addr from pod count times at interval.
func Ping(from *Pod, addr string, count int, interval time.Duration) (PingResult, error) {
	return ping(from, addr, count, interval)
}

// PingArgs is Ping at 100 ms intervals with extra ping arguments (-s SIZE, -M dont).
func PingArgs(from *Pod, addr string, count int, args ...string) (PingResult, error) {
	return ping(from, addr, count, 100*time.Millisecond, args...)
}

func ping(from *Pod, addr string, count int, interval time.Duration, args ...string) (PingResult, error) {
	cmd := append([]string{"ping", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1"}, args...)
	out, _ := Exec(from.NS, append(cmd, addr)...)
	var r PingResult
	m := pingCounts.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("ping: unexpected output: %s", out)
	}
	r.Sent, _ = strconv.Atoi(m[1])
	r.Received, _ = strconv.Atoi(m[2])
	if m := pingRTT.FindStringSubmatch(out); m != nil {
		ms, _ := strconv.ParseFloat(m[1], 64)
		r.AvgRTT = time.Duration(ms * float64(time.Millisecond))
	}
	return r, nil
}

// IperfTCP runs an iperf3 TCP test from one pod to another for the given time and
// returns the receiver's throughput in bit/s.
func IperfTCP(from, to *Pod, d time.Duration) (float64, error) {
	return IperfTCPTo(from, to, to.Addr, d)
}

// IperfTCPTo is IperfTCP to one of to's addresses (its IPv6 one, say).
func IperfTCPTo(from, to *Pod, addr string, d time.Duration) (float64, error) {
	return iperfTCP(from, to, addr, d, 1)
}

// IperfTCPStreams is IperfTCP with that many parallel connections (iperf3 -P); it
// returns their sum.
func IperfTCPStreams(from, to *Pod, d time.Duration, streams int) (float64, error) {
	return iperfTCP(from, to, to.Addr, d, streams)
}

func iperfTCP(from, to *Pod, addr string, d time.Duration, streams int) (float64, error) {
	srv, err := startProc(command("ip", "netns", "exec", to.NS, "iperf3", "-s", "-1", "-p", "5299"))
	if err != nil {
		return 0, err
	}
	defer srv.stop(syscall.SIGKILL, time.Minute)
	// Wait for the server to listen. iperf3 -J reports a refused connection in its
	// JSON and exits 0 (3.12), so the JSON, not the exit status, says whether to retry.
	var bps float64
	for try := 0; try < 20; try++ {
		time.Sleep(100 * time.Millisecond)
		out, xerr := Exec(from.NS, iperfClient(addr, d, streams)...)
		bps, err = parseIperf(out)
		if xerr != nil && !json.Valid([]byte(out)) {
			err = xerr // iperf3 did not run (not installed, no namespace)
		}
		if !errors.Is(err, errIperfRefused) {
			break
		}
	}
	return bps, err
}

// iperfClient returns the iperf3 client's command line for a run of d, in whole
// seconds and at least one: iperf3 -t 0 runs until killed.
func iperfClient(addr string, d time.Duration, streams int) []string {
	return []string{"iperf3", "-c", addr, "-p", "5299", "-J", "-t", strconv.Itoa(max(1, int(d.Seconds()))),
		"-P", strconv.Itoa(streams)}
}

// parseIperf returns the receiver's throughput from iperf3 -J output.
func parseIperf(out string) (float64, error) {
	var res struct {
		End struct {
			SumReceived *struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return 0, fmt.Errorf("iperf3 output: %v: %q", err, firstLine(out))
	}
	switch {
	case strings.Contains(res.Error, "Connection refused"):
		return 0, errIperfRefused
	case res.Error != "":
		return 0, fmt.Errorf("iperf3: %s", res.Error)
	case res.End.SumReceived == nil:
		return 0, fmt.Errorf("iperf3: no receiver summary in its output")
	}
	return res.End.SumReceived.BitsPerSecond, nil
}

// firstLine returns s up to its first line break.
func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
