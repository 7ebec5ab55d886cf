// Command vhostpod is a DPDK-style pod built on dpkit's vhost-user front-end: it
// attaches to a vhost-user back-end (a vRouter, OVS-DPDK, DPDK's net_vhost) as
// virtio-user does, and bridges that port to a TAP device in its own network
// namespace, so the pod's kernel stack (ping, iperf3) talks through vhost-user.
//
//	vhostpod -socket /run/vrouter/pod.sock [-listen] -tap eth0
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

func main() {
	sock := flag.String("socket", "", "vhost-user socket path")
	listen := flag.Bool("listen", false, "own the socket and wait for the back-end (server role, as virtio-user server=1)")
	tapName := flag.String("tap", "eth0", "TAP device to create in this namespace")
	split := flag.Bool("split", false, "use split rings instead of packed")
	flag.Parse()
	if *sock == "" {
		fmt.Fprintln(os.Stderr, "usage: vhostpod -socket PATH [-listen] [-tap NAME] [-split]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pod", *tapName)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, log, *sock, *listen, *tapName, *split); err != nil {
		log.Error("vhostpod", "err", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, sock string, listen bool, tapName string, split bool) error {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 4096, Shared: true, Name: "vhostpod", Logger: log})
	if err != nil {
		return err
	}
	defer pool.Close()
	tap, err := pmd.NewTap(pmd.TapOptions{Name: tapName, Pool: pool})
	if err != nil {
		return err
	}
	defer tap.Close()
	var disable uint64
	if split {
		disable = vhost.FeatureRingPacked
	}
	dctx, dcancel := context.WithTimeout(ctx, time.Minute)
	fe, err := vhost.Dial(dctx, vhost.FrontendOptions{Path: sock, Listen: listen, Pool: pool, DisableFeatures: disable})
	dcancel()
	if err != nil {
		return err
	}
	defer fe.Close()
	log.Info("attached", "socket", sock, "features", fmt.Sprintf("%#x", fe.Features()))
	port := fe.Port(0)
	cache := pool.NewCache(0)
	defer cache.Flush()
	if err := pmd.ShareCache(cache, port, tap); err != nil { // the worker polls both
		return err
	}
	var b pmd.Batch
	move := func(from, to pmd.Port) int {
		n := b.Rx(from)
		if n > 0 {
			b.Tx(to)
			cache.Free(b.Pkts()) // what the other side could not take
			b.Reset()
		}
		return n
	}
	w, err := pmd.NewWorker(pmd.WorkerOptions{Name: "pod", Idle: pmd.IdleAdaptive, SpinLoops: 256},
		func() int { return move(port, tap) + move(tap, port) })
	if err != nil {
		return err
	}
	return w.Run(ctx)
}
