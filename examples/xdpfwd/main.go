// Command xdpfwd forwards frames between two interfaces through AF_XDP, like DPDK's
// l2fwd: every frame received on one is sent out of the other, queue i to queue i,
// without copies (both interfaces share one UMEM). With only -a it reflects frames back
// out of the same interface, swapping MAC addresses (-macswap is then implied).
//
//	xdpfwd -a veth0 -b veth1            # a two-port wire
//	xdpfwd -a eth0 -macswap             # a reflector
//
// It prints per-port rates every -stats interval and stops cleanly on Ctrl-C (SIGINT
// or SIGTERM), detaching its XDP programs.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
)

type config struct {
	a, b     string
	queues   int
	macswap  bool
	copyMode bool
	zeroCopy bool
	generic  bool
	multiBuf bool
	frames   int
	ring     int
	burst    int
	interval time.Duration
	spin     bool
	busyPoll time.Duration
	duration time.Duration
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if err == flag.ErrHelp {
		os.Exit(0)
	}
	if err != nil {
		// Before anything is opened: a bad flag leaves no program or socket behind.
		fmt.Fprintf(os.Stderr, "xdpfwd: %v\n", err)
		os.Exit(2)
	}
	if err := run(c); err != nil {
		log.Fatalf("xdpfwd: %v", err)
	}
}

// parseFlags reads and validates the command line (without the program name).
func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("xdpfwd", flag.ContinueOnError)
	fs.StringVar(&c.a, "a", "", "first interface (required)")
	fs.StringVar(&c.b, "b", "", "second interface; empty reflects out of -a")
	fs.IntVar(&c.queues, "queues", 0, "queues to serve on each interface; 0 means all the smaller one has")
	fs.BoolVar(&c.macswap, "macswap", false, "swap source and destination MAC (implied without -b)")
	fs.BoolVar(&c.copyMode, "copy", false, "force copy mode")
	fs.BoolVar(&c.zeroCopy, "zerocopy", false, "require zero-copy mode")
	fs.BoolVar(&c.generic, "generic", false, "attach the XDP program in generic (SKB) mode")
	fs.BoolVar(&c.multiBuf, "mb", false, "multi-buffer: forward frames larger than a UMEM frame (jumbo MTU)")
	fs.IntVar(&c.frames, "frames", 0, "UMEM frames; 0 sizes for every ring")
	fs.IntVar(&c.ring, "ring", xsk.DefaultRingSize, "size of each ring (a power of two)")
	fs.IntVar(&c.burst, "burst", pmd.DefaultBurst, "packets per Rx/Tx call")
	fs.DurationVar(&c.interval, "stats", time.Second, "statistics interval; 0 disables")
	fs.BoolVar(&c.spin, "spin", false, "poll without ever sleeping (a dedicated core)")
	fs.DurationVar(&c.busyPoll, "busy-poll", 0, "SO_BUSY_POLL time (e.g. 20us); 0 disables")
	fs.DurationVar(&c.duration, "duration", 0, "stop after this long; 0 runs until interrupted")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		// xdpfwd -a veth0 veth1 would reflect on veth0 and ignore veth1.
		return c, fmt.Errorf("unexpected arguments %q (the second interface is -b)", fs.Args())
	}
	return c, c.validate()
}

func (c *config) validate() error {
	switch {
	case c.a == "":
		return errors.New("-a is required")
	case c.copyMode && c.zeroCopy:
		return errors.New("-copy and -zerocopy exclude each other")
	case c.burst < 1 || c.burst > pmd.MaxBurst:
		return fmt.Errorf("-burst must be in 1..%d", pmd.MaxBurst)
	case c.queues < 0 || c.frames < 0:
		return errors.New("-queues and -frames must not be negative")
	case c.duration < 0 || c.interval < 0:
		// 0 is the documented "forever" and "off": a negative one is a mistake,
		// not either of those.
		return errors.New("-duration and -stats must not be negative")
	case c.ring < 1:
		// The UMEM is sized from it: 0 would size it for empty rings while the
		// sockets took the default size.
		return errors.New("-ring must be positive (a power of two)")
	case c.a == c.b:
		// Two sockets on one queue of a shared UMEM: refused by xsk.Open, but
		// only after the first interface's program was attached.
		return fmt.Errorf("-a and -b are both %s; leave -b out to reflect", c.a)
	}
	// The sockets' own checks (ring sizes powers of two, -busy-poll's range), here
	// so that they fail before the pool, UMEM and first program are made.
	sock := c.socketConfig()
	if err := sock.Validate(); err != nil {
		return fmt.Errorf("-ring %d, -busy-poll %v: %w", c.ring, c.busyPoll, err)
	}
	if c.b == "" {
		c.macswap = true
	}
	return nil
}

// socketConfig is every socket's configuration.
func (c *config) socketConfig() xsk.Config {
	sock := xsk.Config{RxSize: c.ring, TxSize: c.ring, FillSize: c.ring, CompSize: c.ring, MultiBuffer: c.multiBuf, BusyPoll: c.busyPoll}
	switch {
	case c.copyMode:
		sock.Bind = xsk.BindCopy
	case c.zeroCopy:
		sock.Bind = xsk.BindZeroCopy
	}
	return sock
}

func run(c config) error {
	if err := c.validate(); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.duration)
		defer cancel()
	}

	qa, err := xsk.Queues(c.a)
	if err != nil {
		return err
	}
	qn := qa
	if c.b != "" {
		qb, err := xsk.Queues(c.b)
		if err != nil {
			return err
		}
		qn = min(qa, qb)
	}
	if c.queues > 0 {
		qn = min(qn, c.queues)
	}
	ifaces := 1
	if c.b != "" {
		ifaces = 2
	}
	frames := c.frames
	if frames == 0 {
		frames = max(4096, ifaces*qn*2*c.ring)
	}
	// One pool, one UMEM for both interfaces: a frame received on a is sent on b as is.
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: frames, Name: "xdpfwd"})
	if err != nil {
		return err
	}
	defer pool.Close()
	umem, err := xsk.NewUMEM(xsk.UMEMOptions{Pool: pool})
	if err != nil {
		return err
	}
	defer umem.Close()

	sock := c.socketConfig()
	attach := xsk.AttachAuto
	if c.generic {
		attach = xsk.AttachGeneric
	}
	open := func(ifname string, id uint16) ([]*xsk.Port, error) {
		var ports []*xsk.Port
		for q := range qn {
			o := xsk.Options{UMEM: umem, Socket: sock, Attach: attach, PortID: id}
			if q > 0 {
				o.Program = ports[0].Program() // one program per interface
			}
			p, err := xsk.Open(ifname, q, o)
			if err != nil {
				xsk.CloseAll(ports)
				return nil, err
			}
			ports = append(ports, p)
		}
		return ports, nil
	}
	pa, err := open(c.a, 0)
	if err != nil {
		return err
	}
	pb := pa
	if c.b != "" {
		if pb, err = open(c.b, 1000); err != nil {
			xsk.CloseAll(pa)
			return err
		}
	}
	s := pa[0].Socket()
	log.Printf("xdpfwd: %s <-> %s, %d queue(s), XDP %v, zero-copy %v, multi-buffer %v, %d frames",
		c.a, or(c.b, c.a), qn, pa[0].Program().Mode(), s.ZeroCopy(), s.MultiBuffer(), frames)

	var stopped atomic.Bool
	var wg sync.WaitGroup
	for _, p := range append(pa[:len(pa):len(pa)], pb...) {
		if txFull[p] == nil {
			txFull[p] = new(atomic.Uint64)
		}
	}
	// Each queue pair's goroutine polls both its ports: they share its cache, so a
	// transmitted frame is the next one the kernel fills. Shared here, where a
	// failure still closes the ports.
	caches := make([]*pmd.Cache, qn)
	for q := range qn {
		caches[q] = pool.NewCache(0)
		if err := pmd.ShareCache(caches[q], pa[q], pb[q]); err != nil {
			return errors.Join(err, closePorts(pa, pb, c.b != ""))
		}
	}
	for q := range qn {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer caches[q].Flush()
			forward(&c, &stopped, pool, caches[q], pa[q], pb[q])
		}()
	}
	var rwg sync.WaitGroup
	if c.interval > 0 {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			report(ctx, c.interval, pa, pb, c.b != "")
		}()
	}
	<-ctx.Done()
	stopped.Store(true)
	wg.Wait()
	rwg.Wait() // its last line before the totals, and no reads of closing ports
	printTotals(pa, pb, c.b != "")
	return closePorts(pa, pb, c.b != "")
}

// closePorts closes every port, in reverse: queue 0 of each interface owns its
// program.
func closePorts(pa, pb []*xsk.Port, two bool) error {
	var errs []error
	sets := [][]*xsk.Port{pa}
	if two {
		sets = [][]*xsk.Port{pb, pa}
	}
	for _, ports := range sets {
		for i := len(ports) - 1; i >= 0; i-- {
			errs = append(errs, ports[i].Close())
		}
	}
	return errors.Join(errs...)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// forward runs one queue pair: a's frames out of b and b's out of a.
// They share cache, which only this goroutine uses.
func forward(c *config, stopped *atomic.Bool, pool *pmd.Pool, cache *pmd.Cache, a, b *xsk.Port) {
	var ab, ba pmd.Batch
	idle := 0
	for !stopped.Load() {
		n := pass(c, pool, cache, &ab, a, b)
		if a != b {
			n += pass(c, pool, cache, &ba, b, a)
		}
		if n > 0 || c.spin {
			idle = 0
			continue
		}
		if idle++; idle > 1024 {
			time.Sleep(50 * time.Microsecond) // share the core when there is no traffic
		}
	}
}

// pass moves one burst from in to out and returns how many packets it received.
func pass(c *config, pool *pmd.Pool, cache *pmd.Cache, b *pmd.Batch, in, out *xsk.Port) int {
	room := b.Room()[:min(c.burst, len(b.Room()))]
	n := in.Rx(room)
	b.Grow(n)
	if c.macswap {
		for i := range b.Pkts()[b.Len()-n:] {
			pk := &b.Pkts()[b.Len()-n+i]
			if i > 0 && b.Pkts()[b.Len()-n+i-1].Flags&pmd.PktMore != 0 {
				continue // a chain's later segments carry no Ethernet header
			}
			if d := pool.Data(pk); len(d) >= 12 {
				var m [6]byte
				copy(m[:], d[0:6])
				copy(d[0:6], d[6:12])
				copy(d[6:12], m[:])
			}
		}
	}
	b.Tx(out)
	if b.Len() > 0 {
		// The tx ring is full: drop what did not fit rather than stall the rx side.
		txFull[out].Add(uint64(pmd.PacketCount(b.Pkts())))
		cache.Free(b.Pkts())
		b.Reset()
	}
	return n
}

// txFull counts, per port, the packets dropped because its tx ring had no room
// for them. Filled before the workers start; read-only after.
var txFull = map[*xsk.Port]*atomic.Uint64{}

type snap struct{ rx, tx, drops uint64 }

func snapshot(ports []*xsk.Port) snap {
	var s snap
	for _, p := range ports {
		st := p.Stats()
		s.rx += st.RxPackets
		s.tx += st.TxPackets
		s.drops += st.TotalDrops() + txFull[p].Load()
		if k, err := p.Socket().Stats(); err == nil {
			s.drops += k.RxDropped + k.RxRingFull + k.TxInvalidDescs
		}
	}
	return s
}

func report(ctx context.Context, every time.Duration, pa, pb []*xsk.Port, two bool) {
	t := time.NewTicker(every)
	defer t.Stop()
	prevA, prevB := snapshot(pa), snapshot(pb)
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			a, b := snapshot(pa), snapshot(pb)
			dt := now.Sub(last).Seconds()
			line := fmt.Sprintf("a: rx %s tx %s drops %d", rate(a.rx-prevA.rx, dt), rate(a.tx-prevA.tx, dt), a.drops)
			if two {
				line += fmt.Sprintf(" | b: rx %s tx %s drops %d", rate(b.rx-prevB.rx, dt), rate(b.tx-prevB.tx, dt), b.drops)
			}
			log.Print(line)
			prevA, prevB, last = a, b, now
		}
	}
}

func rate(n uint64, dt float64) string {
	pps := float64(n) / dt
	switch {
	case pps >= 1e6:
		return fmt.Sprintf("%.2f Mpps", pps/1e6)
	case pps >= 1e3:
		return fmt.Sprintf("%.1f kpps", pps/1e3)
	}
	return fmt.Sprintf("%.0f pps", pps)
}

func printTotals(pa, pb []*xsk.Port, two bool) {
	a := snapshot(pa)
	fmt.Printf("a: rx %d tx %d drops %d\n", a.rx, a.tx, a.drops)
	if two {
		b := snapshot(pb)
		fmt.Printf("b: rx %d tx %d drops %d\n", b.rx, b.tx, b.drops)
	}
}
