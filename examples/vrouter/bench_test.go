package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpkit/dpkit/examples/vrouter/internal/topo"
	"github.com/dpkit/dpkit/internal/testenv"
)

func rxPackets(b *testing.B, p *topo.Pod) uint64 {
	out, err := topo.Exec(p.NS, "cat", "/sys/class/net/eth0/statistics/rx_packets")
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.ParseUint(strings.TrimSpace(out), 10, 64)
	return n
}

var sentRe = regexp.MustCompile(`sent (\d+) frames in ([\d.]+\w+)`)

// BenchmarkPodToPod measures pod-to-pod traffic across the two nodes, through the dpkit
// vRouters (VXLAN) and, in the same run, through the Linux kernel's own path on the
// same topology (a bridge and a vxlan device per node). tcp: iperf3 throughput
// (Gbit/s). udp64: 64-byte UDP frames from an AF_XDP generator in pod k1; the rate
// counted arriving at pod k2 (Mpps delivered) beside the rate offered. One op is one
// measurement of 3 s; run with -benchtime 1x. Both paths run with the pods' MTU at
// 1500 (underlay 1600) and with jumbo frames (pods 8950, underlay 9000, as a fabric
// with jumbo frames runs an overlay); the vRouters carry jumbo frames as AF_XDP
// multi-buffer chains. VR_ARGS in the environment adds flags to every vRouter, to
// compare settings (VR_ARGS="-idle busy-poll", "-frame-size 2048").
func BenchmarkPodToPod(b *testing.B) {
	testenv.NeedRoot(b)
	testenv.NeedCommand(b, "ip", "iperf3", "curl", "ethtool")
	dir := b.TempDir()
	out, err := exec.Command("go", "build", "-o", dir+"/", "github.com/dpkit/dpkit/examples/vrouter",
		"github.com/dpkit/dpkit/examples/vhostpod", "github.com/dpkit/dpkit/examples/pktgen").CombinedOutput()
	if err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	const d = 3 * time.Second
	for _, cell := range []struct{ mode, mtu string }{{"kernel", "mtu1500"}, {"vrouter", "mtu1500"}, {"kernel", "mtu9000"}, {"vrouter", "mtu9000"}} {
		mode := cell.mode
		opts := topo.Options{Mode: topo.Kernel, PodOffloads: true}
		if mode == "vrouter" {
			opts = topo.Options{Mode: topo.VRouter}
		}
		if cell.mtu == "mtu9000" {
			opts.PodMTU, opts.UnderlayMTU = 8950, 9000
		}
		top, err := topo.Up(opts)
		if err != nil {
			b.Fatal(err)
		}
		var c *topo.Cluster
		if mode == "vrouter" {
			if c, err = topo.StartCluster(top, b.TempDir(), filepath.Join(dir, "vrouter"), filepath.Join(dir, "vhostpod"), "vxlan", strings.Fields(os.Getenv("VR_ARGS"))...); err != nil {
				top.Down()
				b.Fatal(err)
			}
		}
		k1, k2 := top.Pod(0, "kernel"), top.Pod(1, "kernel")
		topo.Ping(k1, k2.Addr, 2, 50*time.Millisecond) // resolve neighbours first
		b.Run(mode+"/"+cell.mtu+"/tcp", func(b *testing.B) {
			var sum float64
			for i := 0; i < b.N; i++ {
				bps, err := topo.IperfTCP(k1, k2, d)
				if err != nil {
					b.Fatal(err)
				}
				sum += bps
			}
			b.ReportMetric(sum/float64(b.N)/1e9, "Gbit/s")
		})
		b.Run(mode+"/"+cell.mtu+"/udp64", func(b *testing.B) {
			dst := k2.MAC
			if mode == "vrouter" {
				dst = "00:00:5e:00:01:00"
			}
			var delivered, offered float64
			for i := 0; i < b.N; i++ {
				before := rxPackets(b, k2)
				out, err := topo.Exec(k1.NS, filepath.Join(dir, "pktgen"), "-i", "eth0", "-dst-mac", dst,
					"-src", k1.Addr, "-dst", k2.Addr, "-size", "64", "-duration", d.String())
				if err != nil {
					b.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond) // let queues drain
				got := rxPackets(b, k2) - before
				m := sentRe.FindStringSubmatch(out)
				if m == nil {
					b.Fatalf("pktgen: %s", out)
				}
				sent, _ := strconv.ParseFloat(m[1], 64)
				el, _ := time.ParseDuration(m[2])
				delivered += float64(got) / el.Seconds() / 1e6
				offered += sent / el.Seconds() / 1e6
			}
			b.ReportMetric(delivered/float64(b.N), "Mpps")
			b.ReportMetric(offered/float64(b.N), "offered-Mpps")
		})
		if c != nil {
			c.Stop()
		}
		top.Down()
	}
}
