// Command peers runs the AF_XDP benchmark modes with slavc/xdp v0.3.4 or asavie/xdp
// v0.3.3, used as their READMEs and examples use them, without blocking polls. It is a
// module of its own because both need cilium/ebpf v0.4.0, which cannot be built with
// dpkit's v0.22 in one module.
//
// Protocol (see ../bench_test.go runExternal): prints "ready" when bound, then
// "done <packets> <nanoseconds>".
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"syscall"
	"time"

	asavie "github.com/asavie/xdp"
	slavc "github.com/slavc/xdp"
)

type opts struct {
	ifname, mode, lib   string
	count               uint64
	frames, ring, batch int
	txBudget            int
}

// setTxBudget sets XDP_MAX_TX_SKB_BUDGET (kernel 6.17+: frames sent per kick in copy
// mode) on an XSK, as dpkit's Config.TxBudget does; older kernels lack the option
// (ENOPROTOOPT) and keep their 32. Neither library has an option for it, but both
// give the socket's fd.
func setTxBudget(fd, n int) error {
	const solXDP, xdpMaxTxSkbBudget = 283, 9
	if n <= 0 {
		return nil
	}
	if err := syscall.SetsockoptInt(fd, solXDP, xdpMaxTxSkbBudget, n); err != nil && err != syscall.ENOPROTOOPT {
		return fmt.Errorf("XDP_MAX_TX_SKB_BUDGET: %w", err)
	}
	return nil
}

func main() {
	var o opts
	flag.StringVar(&o.lib, "lib", "slavc", "slavc or asavie")
	flag.StringVar(&o.ifname, "if", "", "interface")
	flag.StringVar(&o.mode, "mode", "rxdrop", "rxdrop, txonly or l2fwd")
	flag.Uint64Var(&o.count, "count", 1000000, "packets to time")
	flag.IntVar(&o.frames, "frames", 4096, "UMEM frames")
	flag.IntVar(&o.ring, "ring", 2048, "ring size")
	flag.IntVar(&o.batch, "batch", 64, "burst")
	flag.IntVar(&o.txBudget, "txbudget", 0, "XDP_MAX_TX_SKB_BUDGET (0: the kernel's default)")
	flag.Parse()
	ifc, err := net.InterfaceByName(o.ifname)
	if err != nil {
		log.Fatal(err)
	}
	var n uint64
	var el, cpu time.Duration
	switch o.lib {
	case "slavc":
		n, el, cpu, err = runSlavc(ifc.Index, o)
	case "asavie":
		n, el, cpu, err = runAsavie(ifc.Index, o)
	default:
		err = fmt.Errorf("unknown -lib %q", o.lib)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("done %d %d %d\n", n, el.Nanoseconds(), cpu.Nanoseconds())
}

// frame is the 60-byte (64 with FCS) test frame, written once into every tx frame.
func frame() []byte {
	f := make([]byte, 60)
	copy(f, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45})
	return f
}

// processCPU returns the process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func macswap(d []byte) {
	var m [6]byte
	copy(m[:], d[0:6])
	copy(d[0:6], d[6:12])
	copy(d[6:12], m[:])
}

func runSlavc(ifindex int, o opts) (uint64, time.Duration, time.Duration, error) {
	prog, err := slavc.NewProgram(1)
	if err != nil {
		return 0, 0, 0, err
	}
	defer prog.Close()
	if err := prog.Attach(ifindex); err != nil {
		return 0, 0, 0, err
	}
	defer prog.Detach(ifindex)
	xsk, err := slavc.NewSocket(ifindex, 0, &slavc.SocketOptions{NumFrames: o.frames, FrameSize: 2048,
		FillRingNumDescs: o.ring, CompletionRingNumDescs: o.ring, RxRingNumDescs: o.ring, TxRingNumDescs: o.ring})
	if err != nil {
		return 0, 0, 0, err
	}
	defer xsk.Close()
	if err := setTxBudget(xsk.FD(), o.txBudget); err != nil {
		return 0, 0, 0, err
	}
	if err := prog.Register(0, xsk.FD()); err != nil {
		return 0, 0, 0, err
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	var done uint64
	switch o.mode {
	case "txonly":
		f := frame()
		all := xsk.GetDescs(o.frames, false)
		for _, d := range all {
			copy(xsk.GetFrame(d), f)
		}
		start, cpu0 := time.Now(), processCPU()
		for done < o.count {
			if c := xsk.NumCompleted(); c > 0 {
				xsk.Complete(c)
			}
			descs := xsk.GetDescs(min(xsk.NumFreeTxSlots(), o.batch), false)
			for i := range descs {
				descs[i].Len = uint32(len(f))
			}
			done += uint64(xsk.Transmit(descs))
		}
		return done, time.Since(start), processCPU() - cpu0, nil
	case "rxdrop", "l2fwd":
		var start time.Time
		var cpu0 time.Duration
		for done < o.count {
			xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots(), true))
			descs := xsk.Receive(o.batch)
			if len(descs) == 0 {
				continue
			}
			if start.IsZero() {
				start, cpu0 = time.Now(), processCPU()
			}
			if o.mode == "rxdrop" {
				done += uint64(len(descs))
				continue
			}
			for _, d := range descs {
				macswap(xsk.GetFrame(d))
			}
			if c := xsk.NumCompleted(); c > 0 {
				xsk.Complete(c)
			}
			done += uint64(xsk.Transmit(descs))
		}
		return done, time.Since(start), processCPU() - cpu0, nil
	}
	return 0, 0, 0, fmt.Errorf("unknown mode %q", o.mode)
}

func runAsavie(ifindex int, o opts) (uint64, time.Duration, time.Duration, error) {
	prog, err := asavie.NewProgram(1)
	if err != nil {
		return 0, 0, 0, err
	}
	defer prog.Close()
	if err := prog.Attach(ifindex); err != nil {
		return 0, 0, 0, err
	}
	defer prog.Detach(ifindex)
	xsk, err := asavie.NewSocket(ifindex, 0, &asavie.SocketOptions{NumFrames: o.frames, FrameSize: 2048,
		FillRingNumDescs: o.ring, CompletionRingNumDescs: o.ring, RxRingNumDescs: o.ring, TxRingNumDescs: o.ring})
	if err != nil {
		return 0, 0, 0, err
	}
	defer xsk.Close()
	if err := setTxBudget(xsk.FD(), o.txBudget); err != nil {
		return 0, 0, 0, err
	}
	if err := prog.Register(0, xsk.FD()); err != nil {
		return 0, 0, 0, err
	}
	fmt.Println("ready")
	os.Stdout.Sync()
	var done uint64
	switch o.mode {
	case "txonly":
		f := frame()
		all := xsk.GetDescs(o.frames)
		for _, d := range all {
			copy(xsk.GetFrame(d), f)
		}
		start, cpu0 := time.Now(), processCPU()
		for done < o.count {
			if c := xsk.NumCompleted(); c > 0 {
				xsk.Complete(c)
			}
			descs := xsk.GetDescs(min(xsk.NumFreeTxSlots(), o.batch))
			for i := range descs {
				descs[i].Len = uint32(len(f))
			}
			done += uint64(xsk.Transmit(descs))
		}
		return done, time.Since(start), processCPU() - cpu0, nil
	case "rxdrop", "l2fwd":
		var start time.Time
		var cpu0 time.Duration
		for done < o.count {
			xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
			descs := xsk.Receive(o.batch)
			if len(descs) == 0 {
				continue
			}
			if start.IsZero() {
				start, cpu0 = time.Now(), processCPU()
			}
			if o.mode == "rxdrop" {
				done += uint64(len(descs))
				continue
			}
			for _, d := range descs {
				macswap(xsk.GetFrame(d))
			}
			if c := xsk.NumCompleted(); c > 0 {
				xsk.Complete(c)
			}
			done += uint64(xsk.Transmit(descs))
		}
		return done, time.Since(start), processCPU() - cpu0, nil
	}
	return 0, 0, 0, fmt.Errorf("unknown mode %q", o.mode)
}
