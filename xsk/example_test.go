package xsk_test

import (
	"log"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/xsk"
)

// A macswap reflector on every queue of eth0, one goroutine per queue.
func Example() {
	ports, err := xsk.OpenAll("eth0", xsk.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer xsk.CloseAll(ports)
	for _, p := range ports {
		go func(p *xsk.Port) {
			pool := p.UMEMPool()
			cache := pool.NewCache(0)
			var b pmd.Batch
			for {
				b.Rx(p)
				for i := range b.Pkts() {
					d := pool.Data(&b.Pkts()[i])
					var m [6]byte
					copy(m[:], d[:6])
					copy(d[:6], d[6:12])
					copy(d[6:12], m[:])
				}
				b.Tx(p)
				cache.Free(b.Pkts()) // what the tx ring had no room for
				b.Reset()
			}
		}(p)
	}
	select {}
}

// Lower level: a UMEM from an existing pool, the built-in program attached by hand,
// and a socket bound in copy mode.
func ExampleNewSocket() {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8192})
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	u, err := xsk.NewUMEM(xsk.UMEMOptions{Pool: pool})
	if err != nil {
		log.Fatal(err)
	}
	defer u.Close()
	ifindex, err := xsk.Ifindex("eth0")
	if err != nil {
		log.Fatal(err)
	}
	prog, err := xsk.NewProgram(xsk.ProgramOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer prog.Close()
	if err := prog.Attach(ifindex, xsk.AttachAuto); err != nil {
		log.Fatal(err)
	}
	port, err := xsk.NewPort(u, ifindex, xsk.Config{Queue: 0, Bind: xsk.BindCopy}, 1)
	if err != nil {
		log.Fatal(err)
	}
	defer port.Close()
	if err := prog.Register(0, port.Socket()); err != nil {
		log.Fatal(err)
	}
	log.Printf("attached %v, zero-copy %v", prog.Mode(), port.Socket().ZeroCopy())
}
