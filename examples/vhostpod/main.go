// Command vhostpod is a DPDK-style pod built on dpkit's vhost-user front-end: it
// attaches to a vhost-user back-end (a vRouter, OVS-DPDK, DPDK's net_vhost) as
// virtio-user does, and bridges that port to a TAP device in its own network
// namespace, so the pod's kernel stack (ping, iperf3) talks through vhost-user.
//
// With -listen it owns the socket, waits for the back-end as long as it takes and,
// whenever the back-end hangs up (a vRouter restarting), listens for it again;
// without, it dials the back-end (giving up after a minute) and exits with an error
// when it hangs up.
//
//	vhostpod -socket /run/vrouter/pod.sock [-listen] -tap eth0 [-queues N]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

func main() {
	sock := flag.String("socket", "", "vhost-user socket path")
	listen := flag.Bool("listen", false, "own the socket and wait for the back-end, again whenever it hangs up (server role, as virtio-user server=1)")
	tapName := flag.String("tap", "eth0", "TAP device to create in this namespace")
	split := flag.Bool("split", false, "use split rings instead of packed")
	queues := flag.Int("queues", 1, "queue pairs to set up (the back-end must offer as many); packets from the TAP spread over them by flow hash")
	flag.Parse()
	if *sock == "" || *queues < 1 || *queues > pmd.MaxVirtioQueuePairs || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: vhostpod -socket PATH [-listen] [-tap NAME] [-split] [-queues N]")
		os.Exit(2)
	}
	if err := checkTapName(*tapName); err != nil {
		fmt.Fprintln(os.Stderr, "vhostpod:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pod", *tapName)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, log, *sock, *listen, *tapName, *split, *queues); err != nil {
		log.Error("vhostpod", "err", err)
		os.Exit(1)
	}
}

// checkTapName refuses a -tap the kernel would not take as an interface name
// (dev_valid_name): empty, "." or "..", over 15 bytes, or with '/', ':' or a space.
func checkTapName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 15 || strings.ContainsAny(name, "/: \t\n\v\f\r") {
		return fmt.Errorf("-tap %q: not an interface name (1 to 15 bytes, no '/', ':' or space)", name)
	}
	return nil
}

func run(ctx context.Context, log *slog.Logger, sock string, listen bool, tapName string, split bool, queues int) error {
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
	cache := pool.NewCache(0)
	defer cache.Flush()
	opts := vhost.FrontendOptions{Path: sock, Listen: listen, Pool: pool, DisableFeatures: disable, QueuePairs: queues}
	for {
		down, err := attach(ctx, log, opts, tap, cache)
		if listen && hungUp(err) {
			// The back-end went away during the handshake (restarting again):
			// wait for it as after any hang-up.
			log.Warn("back-end hung up while attaching; listening again", "socket", sock, "err", err)
			continue
		}
		if err != nil || !down {
			return err
		}
		// The back-end hung up (a vRouter restarting): as virtio-user with
		// server=1, a listening pod waits for it again.
		if !listen {
			return fmt.Errorf("back-end on %s hung up", sock)
		}
		log.Warn("back-end hung up; listening again", "socket", sock)
	}
}

// dialTimeout bounds a Dial to a listening back-end (without -listen).
var dialTimeout = time.Minute

// hungUp reports whether err says the peer closed the connection.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)
}

// attach dials the back-end and bridges it to tap until ctx is done (down false) or
// the back-end goes away (down true).
func attach(ctx context.Context, log *slog.Logger, opts vhost.FrontendOptions, tap pmd.Port, cache *pmd.Cache) (down bool, err error) {
	pool, sock, queues := opts.Pool, opts.Path, opts.QueuePairs
	// Dialling a back-end that is not there fails at once, but a listening pod waits
	// for its back-end however long it takes to come, as virtio-user with server=1
	// does; once one connects, Dial bounds the handshake itself.
	dctx, dcancel := context.WithCancel(ctx)
	if !opts.Listen {
		dctx, dcancel = context.WithTimeout(ctx, dialTimeout)
	}
	fe, err := vhost.Dial(dctx, opts)
	dcancel()
	if err != nil {
		if ctx.Err() != nil {
			return false, nil // stopped (SIGINT, SIGTERM) before a back-end came
		}
		return false, err
	}
	defer fe.Close()
	log.Info("attached", "socket", sock, "features", fmt.Sprintf("%#x", fe.Features()))
	ports := make([]pmd.Port, queues)
	for q := range ports {
		ports[q] = fe.Port(q)
	}
	if err := pmd.ShareCache(cache, append([]pmd.Port{tap}, ports...)...); err != nil { // the worker polls all
		return false, err
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var b pmd.Batch
	out := make([]pmd.Batch, queues)
	send := func(b *pmd.Batch, to pmd.Port) {
		b.Tx(to)
		cache.Free(b.Pkts()) // what the other side could not take
		b.Reset()
	}
	poll := func() int {
		if fe.Down() {
			down = true
			wcancel()
			return 0
		}
		n := 0
		for _, p := range ports {
			if k := b.Rx(p); k > 0 {
				n += k
				send(&b, tap)
			}
		}
		k := b.Rx(tap)
		if k == 0 {
			return n
		}
		if queues == 1 {
			send(&b, ports[0])
			return n + k
		}
		// Spread flows over the queue pairs, as a multi-queue virtio-net driver
		// picks a transmit queue per flow.
		q, more := uint32(0), false
		for _, pk := range b.Pkts() {
			if !more { // a chain's later segments follow its first
				q = encap.FlowHash(pool.Data(&pk), true, encap.HashOptions{}) % uint32(queues)
			}
			out[q].Push(pk)
			more = pk.Flags&pmd.PktMore != 0
		}
		b.Reset()
		for q := range out {
			if out[q].Len() > 0 {
				send(&out[q], ports[q])
			}
		}
		return n + k
	}
	w, err := pmd.NewWorker(pmd.WorkerOptions{Name: "pod", Idle: pmd.IdleAdaptive, SpinLoops: 256}, poll)
	if err != nil {
		return false, err
	}
	err = w.Run(wctx)
	return down && ctx.Err() == nil, err
}
