// Command vrouter is a two-node-capable userspace vRouter built from dpkit: an AF_XDP
// uplink carrying VXLAN, MPLS over UDP or MPLS over GRE to other nodes, pods attached
// over AF_XDP (veth host ends) or vhost-user, per-VRF routing, an exception TAP to the
// host, Prometheus metrics and pcap capture. See README.md.
//
//	vrouter -config node1.yaml
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/examples/vrouter/internal/config"
	"github.com/dpkit/dpkit/examples/vrouter/internal/dataplane"
	"github.com/dpkit/dpkit/examples/vrouter/internal/metrics"
	"github.com/dpkit/dpkit/examples/vrouter/internal/ops"
	"github.com/dpkit/dpkit/examples/vrouter/internal/xdpfilter"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
	"github.com/dpkit/dpkit/xsk"
)

// Flags that run reads; their defaults hold when run is called without main (tests).
var (
	idleFlag  = "adaptive"
	sleepMax  = 200 * time.Microsecond
	frameSize = 4096
)

// xskConfig lets one kick transmit a whole burst in copy mode (veth): the kernel's
// default of 32 frames per sendto leaves the TX ring full under load. MultiBuffer
// (XDP_USE_SG) carries frames larger than a pool frame, jumbo frames, as chains; open
// turns it off on kernels without it.
var xskConfig = xsk.Config{TxBudget: 256, MultiBuffer: true}

// routerMAC is the vRouter's MAC as the pods see it (their gateway's), the one the
// Contrail vRouter uses.
var routerMAC = [6]byte{0x00, 0x00, 0x5e, 0x00, 0x01, 0x00}

func main() {
	// SIGHUP asks for a reload. It is caught from the first moment: reading the
	// configuration and opening the interfaces take a while, and a reload asked for
	// meanwhile would otherwise kill the process (the signal's default action). run
	// carries it out once forwarding runs.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	cfgPath := flag.String("config", "", "configuration file (YAML)")
	logJSON := flag.Bool("log-json", false, "log as JSON instead of text")
	frames := flag.Int("frames", 16384, "packet buffers in the pool")
	flag.IntVar(&frameSize, "frame-size", frameSize, "packet buffer size: 2048 or 4096 (a jumbo frame takes 3 of 4096, 5 of 2048)")
	check := flag.Bool("check", false, "validate the configuration and exit")
	flag.StringVar(&idleFlag, "idle", idleFlag, "forwarding worker's idle policy: busy-poll, yield, sleep, adaptive")
	flag.DurationVar(&sleepMax, "sleep-max", sleepMax, "longest idle sleep (sleep, adaptive)")
	flag.Parse()
	if *cfgPath == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: vrouter -config FILE [-check] [-log-json] [-frames N] [-frame-size 2048|4096] [-idle POLICY] [-sleep-max D]")
		os.Exit(2)
	}
	// The flags first, -check or not: a bad one must not wait for the interfaces
	// to be opened to be noticed.
	if _, err := checkFlags(*frames); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The CPU sets against this machine, -check or not: a worker would find an absent
	// CPU only after the interfaces were opened and their XDP programs attached.
	if err := checkCPUs(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if *check {
		fmt.Println("configuration is valid")
		return
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, hopts)
	if *logJSON {
		h = slog.NewJSONHandler(os.Stderr, hopts)
	}
	log := slog.New(h).With("node", cfg.Node.Name)
	slog.SetDefault(log)
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := run(ctx, cfg, *cfgPath, *frames, hup, log); err != nil {
		log.Error("vrouter stopped", "err", err)
		os.Exit(1)
	}
}

// checkFlags checks the flags run reads (frames, idleFlag, sleepMax, frameSize) and
// returns the idle policy -idle names.
func checkFlags(frames int) (pmd.IdlePolicy, error) {
	if frames < 1024 || frames > 1<<22 {
		return 0, errors.New("-frames must be in 1024..4194304")
	}
	if sleepMax <= 0 || sleepMax > time.Second {
		// 0 would fall back to the worker's default of 1 ms, not "no sleep": that
		// is -idle busy-poll.
		return 0, errors.New("-sleep-max must be in (0, 1s]; for no sleep, use -idle busy-poll")
	}
	if frameSize != 2048 && frameSize != 4096 {
		return 0, errors.New("-frame-size must be 2048 or 4096")
	}
	idle, ok := map[string]pmd.IdlePolicy{"busy-poll": pmd.IdleBusyPoll, "yield": pmd.IdleYield,
		"sleep": pmd.IdleSleep, "adaptive": pmd.IdleAdaptive}[idleFlag]
	if !ok {
		return 0, fmt.Errorf("-idle %q is not one of busy-poll, yield, sleep, adaptive", idleFlag)
	}
	return idle, nil
}

// checkCPUs reports, naming the config field, CPUs of the configured sets that this
// process may not run on: absent, offline, or outside its affinity mask (a
// container's cpuset).
func checkCPUs(cfg *config.Config) error {
	if err := cfg.FwdCPUs.CheckAvailable(); err != nil {
		return fmt.Errorf("forwarding_cpus: %w", err)
	}
	if err := cfg.CtlCPUs.CheckAvailable(); err != nil {
		return fmt.Errorf("control_cpus: %w", err)
	}
	return nil
}

// router holds everything the process opened, for an orderly shutdown.
type router struct {
	log      *slog.Logger
	pool     *pmd.Pool
	umem     *xsk.UMEM // the veth pods'
	ulUMEM   *xsk.UMEM // the uplink interface's, over the same pool
	xsks     []*xsk.Port
	filter   *xsk.Program
	filterPg *ebpf.Program
	filterMp *ebpf.Map
	backends []*vhost.Backend
	tap      *pmd.TapPort
	nic      *pmd.VirtioNet // a NIC uplink
	hostTap  *pmd.TapPort   // the host's side of a NIC uplink
	captures map[string]*pmd.CapturePort
	eng      *dataplane.Engine
	workers  []*pmd.Worker
	names    map[string]int
	ulMAC    [6]byte
	ulMTU    int
	xskTried bool // an AF_XDP socket was opened (or tried): see openXSK
}

// run runs the vRouter of cfg (read from path) until ctx ends, reloading path's
// routes on each value from hup.
func run(ctx context.Context, cfg *config.Config, path string, frames int, hup <-chan os.Signal, log *slog.Logger) (err error) {
	idle, err := checkFlags(frames)
	if err != nil {
		return err
	}
	if err := checkCPUs(cfg); err != nil {
		return err
	}
	r := &router{log: log, captures: map[string]*pmd.CapturePort{}, names: map[string]int{}}
	defer r.close()
	// One forwarding worker per forwarding CPU (one unpinned worker without a set).
	fwd := cfg.FwdCPUs.CPUs()
	if err := r.open(ctx, cfg, frames, max(len(fwd), 1)); err != nil {
		return err
	}
	tabs, err := dataplane.Build(cfg, r.names, r.ulMAC, routerMAC, r.ulMTU)
	if err != nil {
		return err
	}
	r.eng.Publish(tabs)

	// Control work (vhost-user sockets, reloads, the ops endpoint, the Go runtime's
	// own threads) runs on the control CPUs: the whole process is confined to them
	// before the workers start, and each forwarding worker then pins its own thread to
	// its CPU.
	if cfg.CtlCPUs.Count() > 0 {
		if err := pmd.PinProcess(cfg.CtlCPUs); err != nil {
			return fmt.Errorf("control_cpus: %w", err)
		}
		log.Info("control CPUs", "cpus", cfg.CtlCPUs.String())
	}
	for i, ew := range r.eng.Workers() {
		cpus := pmd.CPUSet{}
		if len(fwd) > 0 {
			cpus = pmd.CPUSetOf(fwd[i])
		}
		w, err := pmd.NewWorker(pmd.WorkerOptions{Name: fmt.Sprintf("fwd%d", i), CPUs: cpus, Idle: idle,
			SleepMax: sleepMax, SleepMin: min(10*time.Microsecond, sleepMax)}, ew.Poll)
		if err != nil {
			return err
		}
		r.workers = append(r.workers, w)
		log.Info("forwarding worker", "worker", i, "cpu", cpus.String(), "queues", ew.Queues())
	}
	if len(fwd) > len(r.workers) {
		log.Warn("more forwarding CPUs than queues: the extra CPUs stay idle", "cpus", len(fwd), "workers", len(r.workers))
	}
	// The endpoint starts once the workers exist: its scrapes read them.
	reg := &metrics.Registry{}
	reg.Register(r.collect)
	srv := &ops.Server{Metrics: reg, Capture: func(n string) (*pmd.CapturePort, bool) {
		c, ok := r.captures[n]
		return c, ok
	}}
	if cfg.Metrics != "" {
		if err := srv.Start(cfg.Metrics); err != nil {
			return err
		}
		defer srv.Close()
		log.Info("operations endpoint", "addr", srv.Addr())
	}

	// The reload goroutine ends before run closes what it opened, whichever way run
	// ends.
	ran, reloads := make(chan struct{}), make(chan struct{})
	defer func() { close(ran); <-reloads }()
	go func() {
		defer close(reloads)
		cur := cfg // the config running: each reload is checked against it
		for {
			select {
			case <-ctx.Done():
				return
			case <-ran:
				return
			case <-hup:
				cur = r.reload(path, cur)
			}
		}
	}()
	log.Info("forwarding", "interfaces", len(r.eng.Ifaces()), "workers", len(r.workers))
	err = pmd.RunWorkers(ctx, r.workers...)
	var st pmd.WorkerStats
	for _, w := range r.workers {
		ws := w.Stats()
		st.Loops += ws.Loops
		st.Packets += ws.Packets
	}
	log.Info("shutting down", "loops", st.Loops, "packets", st.Packets)
	return err
}

// reload rereads the file and publishes its routes, or refuses it (see
// config.ReloadCheck) and keeps the running tables. It returns the config running
// afterwards: the file's, or old.
func (r *router) reload(path string, old *config.Config) *config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		r.log.Error("reload refused", "err", err)
		return old
	}
	// Only routes and remotes change on a reload: the interfaces, the VRF each is in
	// and the uplink were fixed at start, and a half-applied change (routes moved to
	// a VRF the interface is not in) would mix tenants.
	if err := config.ReloadCheck(old, cfg); err != nil {
		r.log.Error("reload refused", "err", err)
		return old
	}
	// The uplink interface's MTU is read again: tunnels take their path MTU from it
	// (a NIC uplink's is the config's, which a reload may not change).
	mtu := r.ulMTU
	if cfg.Uplink.Interface != "" {
		if ul, err := net.InterfaceByName(cfg.Uplink.Interface); err != nil {
			r.log.Warn("uplink MTU not reread, keeping the last", "err", err, "mtu", mtu)
		} else {
			mtu = ul.MTU
		}
	}
	tabs, err := dataplane.Build(cfg, r.names, r.ulMAC, routerMAC, mtu)
	if err != nil {
		r.log.Error("reload refused", "err", err)
		return old
	}
	if mtu != r.ulMTU {
		r.log.Info("uplink MTU changed", "from", r.ulMTU, "to", mtu)
		r.ulMTU = mtu
	}
	r.eng.Publish(tabs)
	r.log.Info("routes reloaded", "vrfs", len(cfg.VRFs))
	return cfg
}

// open opens every interface and builds an engine of at most workers workers (no more
// than there are queues).
func (r *router) open(ctx context.Context, cfg *config.Config, frames, workers int) error {
	var err error
	r.pool, err = pmd.NewPool(pmd.PoolOptions{Frames: frames, FrameSize: frameSize, Name: "vrouter", Logger: r.log})
	if err != nil {
		return err
	}
	// The AF_XDP sockets use the pool as their UMEM, so frames move between them and
	// the other ports without copies: the veth pods share one UMEM, an uplink
	// interface has one of its own over the same pool. A socket that shares a UMEM
	// takes the mode of the UMEM's first socket, so with one UMEM a zero-copy uplink
	// would force zero-copy on the pods, which veth refuses, and a pod bound first
	// would hold the uplink to copy mode.
	if slices.ContainsFunc(cfg.Interfaces, func(in config.Interface) bool { return in.Type == "veth" }) {
		if r.umem, err = xsk.NewUMEM(xsk.UMEMOptions{Pool: r.pool}); err != nil {
			return err
		}
	}
	if cfg.Uplink.Interface != "" {
		if r.ulUMEM, err = xsk.NewUMEM(xsk.UMEMOptions{Pool: r.pool}); err != nil {
			return err
		}
	}
	var ifaces []*dataplane.Iface
	nq := 0
	addIface := func(in *dataplane.Iface) {
		// One capture session per interface, over all its queues.
		for q, c := range pmd.NewCaptureGroup(r.pool, in.Queues...) {
			in.Queues[q] = c
			if q == 0 {
				r.captures[in.Name] = c
			}
		}
		if in.Kind != dataplane.Exception && in.Kind != dataplane.Host {
			nq += len(in.Queues) // the TAPs share a data queue's worker
		}
		r.names[in.Name] = len(ifaces)
		ifaces = append(ifaces, in)
	}

	if cfg.Uplink.PCI != "" {
		if err := r.openNIC(cfg, addIface); err != nil {
			return err
		}
	} else if err := r.openXDPUplink(cfg, addIface); err != nil {
		return err
	}

	for i, in := range cfg.Interfaces {
		di := &dataplane.Iface{Name: in.Name, Kind: dataplane.Pod, VRF: vrfID(cfg, in.VRF), MAC: [6]byte(in.HW)}
		for _, a := range in.Addrs {
			if a.Is4() {
				di.IP4 = append(di.IP4, dataplane.IP4(a))
			} else {
				di.IP6 = append(di.IP6, a.As16())
			}
		}
		for _, g := range in.Gateways {
			if g.Is4() {
				di.Gw4 = append(di.Gw4, dataplane.IP4(g))
			} else {
				di.Gw6 = append(di.Gw6, g.As16())
			}
		}
		id := uint16(i + 1)
		switch in.Type {
		case "veth":
			p, err := r.openXSK(in.Veth.Interface, 0, xsk.Options{UMEM: r.umem, PortID: id})
			if err != nil {
				return fmt.Errorf("interface %s: %w", in.Name, err)
			}
			r.xsks = append(r.xsks, p)
			di.Queues = []pmd.Port{p}
		case "vhost":
			b, err := vhost.NewBackend(vhost.Options{Path: in.Vhost.Socket, Client: in.Vhost.Role == "client",
				SocketMode: 0o660, QueuePairs: max(in.Vhost.Queues, 1), Pool: r.pool, PortID: id,
				Logger: r.log.With("interface", in.Name)})
			if err != nil {
				return fmt.Errorf("interface %s: %w", in.Name, err)
			}
			r.backends = append(r.backends, b)
			// Serve ends with an error of its own only when the server socket
			// cannot be made (the path taken by a live listener, a directory that
			// does not exist): the pod can then never connect, so say so.
			go func(name string) {
				if err := b.Serve(ctx); err != nil && ctx.Err() == nil && !errors.Is(err, vhost.ErrClosed) {
					r.log.Error("vhost-user socket failed: the pod cannot connect", "interface", name, "err", err)
				}
			}(in.Name)
			// Every queue pair the pod may enable is polled; one it has not enabled
			// receives nothing and drops what is sent to it (counted by the port).
			for q := 0; q < max(in.Vhost.Queues, 1); q++ {
				di.Queues = append(di.Queues, b.Port(q))
			}
		}
		addIface(di)
	}

	if e := cfg.Exception; e != nil {
		if r.tap, err = pmd.NewTap(pmd.TapOptions{Name: e.Tap, Pool: r.pool, PortID: 0xfff0}); err != nil {
			return fmt.Errorf("exception: %w", err)
		}
		ti, err := net.InterfaceByName(r.tap.Name())
		if err != nil {
			return fmt.Errorf("exception: %w", err)
		}
		addIface(&dataplane.Iface{Name: "exception", Kind: dataplane.Exception, Queues: []pmd.Port{r.tap}, VRF: dataplane.VRFID(0),
			MAC: [6]byte(ti.HardwareAddr)})
	}
	local := []netip.Addr{cfg.Node.Addr}
	r.eng = dataplane.New(dataplane.Config{Pool: r.pool, Ifaces: ifaces, RouterMAC: routerMAC,
		Decap: encap.DecapOptions{Local: local}, Workers: max(min(workers, nq), 1)})
	return nil
}

// openXDPUplink opens the uplink interface with AF_XDP: only overlay traffic is
// redirected to the vRouter; the kernel keeps the rest.
func (r *router) openXDPUplink(cfg *config.Config, addIface func(*dataplane.Iface)) error {
	ul, err := net.InterfaceByName(cfg.Uplink.Interface)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	copy(r.ulMAC[:], ul.HardwareAddr)
	r.ulMTU = ul.MTU
	queues := max(cfg.Uplink.Queues, 1)
	r.filterMp, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(queues)})
	if err != nil {
		return fmt.Errorf("uplink XSKMAP: %w", err)
	}
	if r.filterPg, err = xdpfilter.Load(r.filterMp, cfg.Node.Addr); err != nil {
		return err
	}
	if r.filter, err = xsk.NewProgramFrom(r.filterPg, r.filterMp); err != nil {
		return err
	}
	mode := map[string]xsk.AttachMode{"auto": xsk.AttachAuto, "native": xsk.AttachNative, "generic": xsk.AttachGeneric}[cfg.Uplink.XDPMode]
	if err := r.filter.Attach(ul.Index, mode); err != nil {
		return fmt.Errorf("uplink: attach XDP: %w", err)
	}
	r.log.Info("uplink", "interface", ul.Name, "xdp", r.filter.Mode().String())
	ulIf := &dataplane.Iface{Name: "uplink", Kind: dataplane.Uplink}
	for q := 0; q < queues; q++ {
		up, err := r.openXSK(ul.Name, q, xsk.Options{UMEM: r.ulUMEM, Program: r.filter})
		if err != nil {
			return fmt.Errorf("uplink queue %d: %w", q, err)
		}
		r.xsks = append(r.xsks, up)
		ulIf.Queues = append(ulIf.Queues, up)
	}
	addIface(ulIf)
	return nil
}

// openNIC opens the uplink NIC with dpkit's virtio-net driver over VFIO, and the
// host's TAP for the traffic that is not the vRouter's.
// openXSK opens an AF_XDP port with xskConfig. Kernels before 6.6 have no
// XDP_USE_SG: when the first socket opened fails with multi-buffer on and succeeds
// without it, every socket runs without it (and without jumbo frames) from then on,
// whichever interface comes first (a NIC uplink opens none).
func (r *router) openXSK(ifname string, q int, o xsk.Options) (*xsk.Port, error) {
	o.Socket = xskConfig
	p, err := xsk.Open(ifname, q, o)
	if err != nil && xskConfig.MultiBuffer && !r.xskTried {
		o.Socket.MultiBuffer = false
		if p2, err2 := xsk.Open(ifname, q, o); err2 == nil {
			xskConfig.MultiBuffer = false
			r.log.Warn("AF_XDP multi-buffer unavailable: frames larger than a buffer are dropped", "frame_size", frameSize)
			p, err = p2, nil
		}
	}
	r.xskTried = true
	return p, err
}

func (r *router) openNIC(cfg *config.Config, addIface func(*dataplane.Iface)) error {
	queues := max(cfg.Uplink.Queues, 1)
	if drv, _ := os.Readlink("/sys/bus/pci/devices/" + cfg.Uplink.PCI + "/driver"); filepath.Base(drv) != "vfio-pci" {
		return fmt.Errorf("uplink: %s is not bound to vfio-pci (driver %q): bind it first, as for DPDK", cfg.Uplink.PCI, filepath.Base(drv))
	}
	nic, err := pmd.OpenVirtioNet(pmd.VirtioNetOptions{PCI: cfg.Uplink.PCI, Pool: r.pool, QueuePairs: queues,
		Packed: cfg.Uplink.Packed})
	if err != nil {
		return fmt.Errorf("uplink %s: %w", cfg.Uplink.PCI, err)
	}
	r.nic = nic
	r.ulMAC, r.ulMTU = nic.MAC(), cfg.Uplink.MTU
	r.log.Info("uplink", "pci", cfg.Uplink.PCI, "mac", net.HardwareAddr(r.ulMAC[:]).String(), "queues", queues,
		"link_up", nic.LinkUp())
	ulIf := &dataplane.Iface{Name: "uplink", Kind: dataplane.Uplink}
	for q := 0; q < queues; q++ {
		ulIf.Queues = append(ulIf.Queues, nic.Queue(q))
	}
	addIface(ulIf)
	if cfg.Uplink.HostTap == "" {
		return nil
	}
	if r.hostTap, err = pmd.NewTap(pmd.TapOptions{Name: cfg.Uplink.HostTap, Pool: r.pool, PortID: 0xfff1}); err != nil {
		return fmt.Errorf("uplink.host_tap: %w", err)
	}
	// The host's side carries the NIC's MAC and MTU, so that its ARP answers and
	// its packets are the NIC's own.
	link, err := netlink.LinkByName(r.hostTap.Name())
	if err == nil {
		err = netlink.LinkSetHardwareAddr(link, r.ulMAC[:])
	}
	if err == nil {
		err = netlink.LinkSetMTU(link, r.ulMTU)
	}
	if err == nil {
		err = netlink.LinkSetUp(link)
	}
	if err != nil {
		return fmt.Errorf("uplink.host_tap %s: %w", r.hostTap.Name(), err)
	}
	addIface(&dataplane.Iface{Name: r.hostTap.Name(), Kind: dataplane.Host, Queues: []pmd.Port{r.hostTap}})
	return nil
}

func vrfID(cfg *config.Config, name string) uint32 {
	for i, v := range cfg.VRFs {
		if v.Name == name {
			return dataplane.VRFID(i)
		}
	}
	return 0
}

// close releases everything in reverse order: ports (unmapping rings, detaching XDP),
// sockets, the TAP, then the pool.
func (r *router) close() {
	if r.eng != nil {
		r.eng.Close()
	}
	var errs []error
	for i := len(r.xsks) - 1; i >= 0; i-- {
		errs = append(errs, r.xsks[i].Close())
	}
	for _, b := range r.backends {
		errs = append(errs, b.Close())
	}
	if r.tap != nil {
		errs = append(errs, r.tap.Close())
	}
	if r.hostTap != nil {
		errs = append(errs, r.hostTap.Close())
	}
	if r.nic != nil {
		errs = append(errs, r.nic.Close())
	}
	if r.filter != nil {
		errs = append(errs, r.filter.Close())
	}
	if r.filterPg != nil {
		errs = append(errs, r.filterPg.Close())
	}
	if r.filterMp != nil {
		errs = append(errs, r.filterMp.Close())
	}
	for _, u := range []*xsk.UMEM{r.umem, r.ulUMEM} {
		if u != nil {
			errs = append(errs, u.Close())
		}
	}
	if r.pool != nil {
		errs = append(errs, r.pool.Close())
	}
	if err := errors.Join(errs...); err != nil {
		r.log.Warn("shutdown", "err", err)
	}
}
