package xskbench

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/dpkit/dpkit/internal/nettest"
	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
)

// Peer setup, the same for every implementation.
const (
	frames   = 4096
	ringSize = 2048
	burst    = 64
	frameLen = 64
	// txBudget raises how many frames one kick sends in copy mode (XDP_MAX_TX_SKB_BUDGET,
	// kernel 6.17+; the default is 32). Every implementation sets it: dpkit through
	// Config.TxBudget, the C reference and the peers with setsockopt on their fd
	// (-txbudget).
	txBudget = 256
)

type env struct {
	dut, gen *nettest.NS
	v        *nettest.Veth // A in dut, B in gen
}

func newEnv(b *testing.B) *env {
	b.Helper()
	testenv.NeedRoot(b)
	testenv.NeedCommand(b, "ethtool", "taskset")
	dut, gen := nettest.NewNS(b), nettest.NewNS(b)
	v := nettest.NewVeth(b, dut, gen, nettest.VethOptions{Queues: 1})
	// Frames an XSK sends reach the peer's native XDP only with TSO off on the sender.
	dut.SetTxOffload(b, v.A, false)
	gen.SetTxOffload(b, v.B, false)
	e := &env{dut: dut, gen: gen, v: v}
	e.attachSink(b)
	return e
}

// testFrame is a 64-byte UDP frame from gen to dut.
func (e *env) testFrame() []byte {
	f := make([]byte, frameLen-4) // the FCS is not ours to send
	copy(f[0:6], e.v.MACA)
	copy(f[6:12], e.v.MACB)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	copy(ip[12:], []byte{10, 66, 0, 2, 10, 66, 0, 1})
	var s uint32
	for i := 0; i < 20; i += 2 {
		s += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(s))
	binary.BigEndian.PutUint16(f[34:], 9)
	binary.BigEndian.PutUint16(f[36:], 9)
	binary.BigEndian.PutUint16(f[38:], uint16(len(f)-34))
	return f
}

// attachSink attaches XDP_DROP natively on gen's end: what the dut sends stops there.
func (e *env) attachSink(b *testing.B) {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	var l link.Link
	if err := e.gen.Do(func() (err error) {
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: e.v.IndexB, Flags: link.XDPDriverMode})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close(); prog.Close() })
}

// generate sends frames into the dut with live-frame BPF_PROG_RUN until ctx ends and
// returns how many it sent.
func (e *env) generate(b *testing.B, ctx context.Context) func() uint64 {
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3), asm.Return()}}) // XDP_TX
	if err != nil {
		b.Fatal(err)
	}
	var sent atomic.Uint64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer prog.Close()
		e.gen.Do(func() error {
			// Do's thread is locked. Pin it, else it may inherit the measured
			// thread's CPU: a thread the runtime creates takes its creator's
			// affinity, and dpkit's loop pins itself to dutCPU before the generator
			// starts, so both shared one CPU and dpkit's rxdrop read 0.3-0.55 Mpps
			// beside the peers' 1.9.
			pin(genCPU)
			defer pin(-1)
			// struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex
			frame := e.testFrame()
			md := [6]uint32{1: uint32(len(frame)), 3: uint32(e.v.IndexB)}
			const repeat = 1 << 16
			for ctx.Err() == nil {
				_, err := prog.Run(&ebpf.RunOptions{Data: frame, Repeat: repeat, Context: md[:],
					Flags: 1 << 1 /* BPF_F_TEST_XDP_LIVE_FRAMES */, BatchSize: 256})
				if errors.Is(err, unix.EPERM) && sent.Load() == 0 {
					// Some kernels refuse live-frame test runs even to root (this
					// machine's 6.18.44 does): send from an AF_XDP socket instead.
					liveRefused.Do(func() {
						b.Log("BPF_PROG_RUN with live frames refused (EPERM): the generator is an AF_XDP copy-mode socket, " +
							"slower, so rxdrop and l2fwd rates are the generator's for every implementation")
					})
					if err := e.generateXSK(ctx, &sent, frame); err != nil {
						b.Errorf("AF_XDP generator: %v", err)
					}
					return nil
				}
				if err != nil {
					b.Errorf("live frames: %v", err)
					return nil
				}
				sent.Add(repeat)
			}
			return nil
		})
	}()
	return func() uint64 { wg.Wait(); return sent.Load() }
}

var liveRefused sync.Once

// generateXSK sends frame from an AF_XDP socket in copy mode on gen's end until ctx
// ends, adding what it sent to sent. It must run in gen's namespace. It needs no XDP
// program of its own: gen's end keeps its sink for what the dut sends.
func (e *env) generateXSK(ctx context.Context, sent *atomic.Uint64, frame []byte) error {
	u, err := xsk.NewUMEM(xsk.UMEMOptions{Frames: frames})
	if err != nil {
		return err
	}
	defer u.Close()
	p, err := xsk.NewPort(u, e.v.IndexB, xsk.Config{Bind: xsk.BindCopy, TxSize: ringSize, CompSize: ringSize,
		FillSize: ringSize, RxSize: ringSize, TxBudget: txBudget}, 0)
	if err != nil {
		return err
	}
	defer p.Close()
	pool := p.UMEMPool()
	cache := pool.NewCache(64)
	defer cache.Flush()
	var all [frames]pmd.Frame
	k := cache.Get(all[:])
	for _, fr := range all[:k] {
		copy(pool.Bytes(fr)[pool.Headroom():], frame)
	}
	cache.Put(all[:k])
	var bt pmd.Batch
	for ctx.Err() == nil {
		room := bt.Room()[:burst-bt.Len()]
		got := cache.Alloc(room)
		for i := range room[:got] {
			room[i].Len = uint16(len(frame))
		}
		bt.Grow(got)
		sent.Add(uint64(bt.Tx(p)))
	}
	cache.Free(bt.Pkts())
	return nil
}

// The generator (and with it the kernel's rx processing of the frames it sends, which
// runs in its context) and the measured program each get a CPU of their own, so runs
// compare like with like on a two-core machine.
const (
	genCPU = 0
	dutCPU = 1
)

// pin binds the calling (locked) thread to cpu, or to every CPU for -1.
func pin(cpu int) {
	var set unix.CPUSet
	if cpu < 0 {
		for i := range runtime.NumCPU() {
			set.Set(i)
		}
	} else {
		set.Set(cpu % runtime.NumCPU())
	}
	unix.SchedSetaffinity(0, &set)
}

// result is one measured run.
type result struct {
	pkts    uint64
	elapsed time.Duration
	cpu     time.Duration // CPU time (user+system) the measured program spent meanwhile
}

// report gives Mpps (wall clock: at the mercy of a shared machine) and cpu-ns/pkt, the
// CPU time the measured program itself spent per packet, syscalls included, which
// does not depend on how much of the CPU it was given.
func report(b *testing.B, r result) {
	b.ReportMetric(float64(r.pkts)/r.elapsed.Seconds()/1e6, "Mpps")
	b.ReportMetric(float64(r.elapsed.Nanoseconds())/float64(r.pkts), "ns/pkt")
	if r.cpu > 0 {
		b.ReportMetric(float64(r.cpu.Nanoseconds())/float64(r.pkts), "cpu-ns/pkt")
	}
}

// threadCPU returns the calling thread's CPU time; the dpkit loop runs on one locked
// thread and allocates nothing, so this is all it costs.
func threadCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_THREAD, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// runDpkit runs dpkit in this process.
func runDpkit(b *testing.B, e *env, mode string, n uint64) result {
	var p *xsk.Port
	if err := e.dut.Do(func() (err error) {
		p, err = xsk.Open(e.v.A, 0, xsk.Options{
			UMEMOptions: xsk.UMEMOptions{Frames: frames},
			Socket:      xsk.Config{RxSize: ringSize, TxSize: ringSize, FillSize: ringSize, CompSize: ringSize, TxBudget: txBudget},
		})
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pool := p.UMEMPool()
	cache := pool.NewCache(64)
	defer cache.Flush()
	var bt pmd.Batch
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pin(dutCPU)
	defer pin(-1)

	if mode == "txonly" {
		f := e.testFrame()
		copy(f[0:6], e.v.MACB) // towards gen
		// Write every frame once, as xdpsock and the peers do; Tx only sets lengths.
		var all [frames]pmd.Frame
		k := cache.Get(all[:])
		for _, fr := range all[:k] {
			copy(pool.Bytes(fr)[pool.Headroom():], f)
		}
		cache.Put(all[:k])
		b.ResetTimer()
		start, cpu0 := time.Now(), threadCPU()
		var sent uint64
		for sent < n {
			room := bt.Room()[:burst-bt.Len()]
			got := cache.Alloc(room)
			for i := range room[:got] {
				room[i].Len = uint16(len(f))
			}
			bt.Grow(got)
			sent += uint64(bt.Tx(p))
		}
		el, cpu := time.Since(start), threadCPU()-cpu0
		cache.Free(bt.Pkts())
		return result{sent, el, cpu}
	}

	ctx, cancel := context.WithCancel(context.Background())
	stop := e.generate(b, ctx)
	t0 := time.Now()
	defer func() {
		cancel()
		sent := stop()
		st, _ := p.Socket().Stats()
		b.Logf("generator %.2f Mpps; socket %+v; port %+v", float64(sent)/time.Since(t0).Seconds()/1e6, st, p.Stats())
	}()
	// Wait for the first packet, then time n.
	for bt.Rx(p) == 0 {
	}
	cache.Free(bt.Pkts())
	bt.Reset()
	b.ResetTimer()
	start, cpu0 := time.Now(), threadCPU()
	var done uint64
	switch mode {
	case "rxdrop":
		for done < n {
			k := bt.Rx(p)
			p.Recycle(bt.Pkts())
			bt.Reset()
			done += uint64(k)
		}
	case "l2fwd":
		for done < n {
			k := bt.Rx(p)
			for i := range bt.Pkts() {
				d := pool.Data(&bt.Pkts()[i])
				var m [6]byte
				copy(m[:], d[0:6])
				copy(d[0:6], d[6:12])
				copy(d[6:12], m[:])
			}
			_ = k
			done += uint64(bt.Tx(p))
			if bt.Len() > 0 {
				cache.Free(bt.Pkts())
				bt.Reset()
			}
		}
	}
	return result{done, time.Since(start), threadCPU() - cpu0}
}

// runExternal runs a peer or the C reference as a process in the dut namespace. The
// protocol: args "-if NAME -mode MODE -count N -frames F -ring R -batch B -txbudget T"; the program
// prints "ready" once its socket is bound, then "done <packets> <nanoseconds> <cpu-ns>"
// after n packets (timed from the first one for rxdrop/l2fwd, from the start for
// txonly; cpu-ns is the process's user+system time over the same interval).
func runExternal(b *testing.B, e *env, bin, mode string, n uint64, extra ...string) result {
	args := append([]string{"netns", "exec", e.dut.Name, "taskset", "-c", strconv.Itoa(dutCPU), bin, "-if", e.v.A, "-mode", mode,
		"-count", strconv.FormatUint(n, 10), "-frames", strconv.Itoa(frames), "-ring", strconv.Itoa(ringSize),
		"-batch", strconv.Itoa(burst), "-txbudget", strconv.Itoa(txBudget)}, extra...)
	cmd := exec.Command("ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	defer func() {
		if b.Failed() {
			b.Logf("%s stderr:\n%s", bin, stderr.String())
		}
	}()
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer cmd.Wait()
	sc := bufio.NewScanner(out)
	if !sc.Scan() || sc.Text() != "ready" {
		cmd.Process.Kill()
		b.Fatalf("%s: no ready line (%q)", bin, sc.Text())
	}
	var stop func() uint64
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if mode != "txonly" {
		stop = e.generate(b, ctx)
	}
	b.ResetTimer()
	var r result
	var done bool
	for sc.Scan() {
		var ns, cpu int64
		if _, err := fmt.Sscanf(sc.Text(), "done %d %d %d", &r.pkts, &ns, &cpu); err == nil {
			r.elapsed, r.cpu = time.Duration(ns), time.Duration(cpu)
			done = true
			break
		}
	}
	cancel()
	if stop != nil {
		stop()
	}
	if !done {
		cmd.Process.Kill()
		b.Fatalf("%s: no result", bin)
	}
	return r
}

var (
	buildOnce sync.Once
	bins      map[string]string
	buildErr  map[string]error
)

// build compiles the peers and the C reference once per test binary.
func build(b *testing.B) {
	buildOnce.Do(func() {
		bins, buildErr = map[string]string{}, map[string]error{}
		dir, err := os.MkdirTemp("", "xskbench")
		if err != nil {
			b.Fatal(err)
		}
		peers := filepath.Join(dir, "peers")
		cmd := exec.Command("go", "build", "-o", peers, ".")
		cmd.Dir = "peers"
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr["slavc"] = fmt.Errorf("build peers: %v\n%s", err, out)
			buildErr["asavie"] = buildErr["slavc"]
		} else {
			bins["slavc"], bins["asavie"] = peers, peers
		}
		cref := filepath.Join(dir, "xskref")
		cmd = exec.Command("sh", "cref/build.sh", cref)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr["cref"] = fmt.Errorf("build cref: %v\n%s", err, out)
		} else {
			bins["cref"] = cref
		}
	})
}

func BenchmarkXSK(b *testing.B) {
	for _, mode := range []string{"rxdrop", "txonly", "l2fwd"} {
		b.Run(mode, func(b *testing.B) {
			for _, impl := range []string{"dpkit", "cref", "slavc", "asavie"} {
				b.Run(impl, func(b *testing.B) {
					b.ReportAllocs()
					e := newEnv(b)
					n := uint64(b.N)
					var r result
					if impl == "dpkit" {
						r = runDpkit(b, e, mode, n)
					} else {
						build(b)
						if err := buildErr[impl]; err != nil {
							testenv.Unavailable(b, err.Error())
						}
						var extra []string
						if impl != "cref" {
							extra = []string{"-lib", impl}
						}
						r = runExternal(b, e, bins[impl], mode, n, extra...)
					}
					report(b, r)
				})
			}
		})
	}
}
