// Command vhostfwd is a two-port vhost-user switch in miniature: it serves two
// vhost-user sockets and forwards every packet from one to the other, polling both
// queue pairs from one pinned goroutine.
//
//	vhostfwd -a /tmp/a.sock -b /tmp/b.sock
//
// Attach any two front-ends, e.g. two DPDK testpmd instances:
//
//	dpdk-testpmd --no-huge -m 512 --no-pci -l 0,1 --file-prefix a \
//	    --vdev net_virtio_user0,path=/tmp/a.sock -- -i
//
// With -client the sockets are dialled instead (the front-ends listen, server=1), and
// re-dialled whenever a front-end restarts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

func main() {
	pathA := flag.String("a", "/tmp/vhostfwd-a.sock", "first vhost-user socket")
	pathB := flag.String("b", "/tmp/vhostfwd-b.sock", "second vhost-user socket")
	client := flag.Bool("client", false, "connect to the sockets instead of listening")
	mode := flag.Uint("mode", 0o660, "socket file mode when listening, in octal with a leading 0 (0660)")
	group := flag.String("group", "", "socket file group when listening")
	stats := flag.Duration("stats", 5*time.Second, "statistics interval (0: off)")
	flag.Parse()
	m, err := checkFlags(flag.Args(), *pathA, *pathB, *mode, *stats)
	if err != nil {
		// Before anything is opened: no socket file is made.
		fmt.Fprintf(os.Stderr, "vhostfwd: %v\nusage: vhostfwd [-a PATH] [-b PATH] [-client] [-mode 0660] [-group G] [-stats 5s]\n", err)
		os.Exit(2)
	}
	if err := run(*pathA, *pathB, *client, m, *group, *stats); err != nil {
		log.Fatal(err)
	}
}

// checkFlags checks the command line: no arguments, two different socket paths, a
// permission mode and a -stats of 0 or more. It returns the mode.
func checkFlags(args []string, pathA, pathB string, mode uint, stats time.Duration) (os.FileMode, error) {
	switch {
	case len(args) > 0:
		return 0, fmt.Errorf("unexpected arguments %q (the sockets are -a and -b)", args)
	case stats < 0:
		return 0, fmt.Errorf("-stats %v is negative (0 turns statistics off)", stats)
	case pathA == "" || pathB == "":
		return 0, errors.New("-a and -b need a socket path each")
	case filepath.Clean(pathA) == filepath.Clean(pathB):
		return 0, fmt.Errorf("-a and -b are the same socket, %s", pathA)
	}
	return socketMode(mode)
}

// socketMode checks -mode: permission bits only. A mode written without its leading 0
// (-mode 660) is read as decimal, and its low nine bits are not the ones meant.
func socketMode(m uint) (os.FileMode, error) {
	if m > uint(os.ModePerm) {
		return 0, fmt.Errorf("-mode %d (%#o): not a permission mode; octal needs a leading 0, as in 0660", m, m)
	}
	return os.FileMode(m), nil
}

// run forwards until SIGINT or SIGTERM, or until a socket fails; either way it
// closes the back-ends, which removes their socket files, before it returns.
func run(pathA, pathB string, client bool, mode os.FileMode, group string, stats time.Duration) error {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 16384, Name: "vhostfwd"})
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var be [2]*vhost.Backend
	errc := make(chan error, len(be))
	for i, p := range []string{pathA, pathB} {
		be[i], err = vhost.NewBackend(vhost.Options{
			Path: p, Client: client, SocketMode: mode, SocketGroup: group,
			Pool: pool, PortID: uint16(i),
		})
		if err != nil {
			return err
		}
		// Close waits for Serve to end and remove the socket file.
		defer be[i].Close()
		go func(b *vhost.Backend) {
			if err := b.Serve(ctx); err != nil && ctx.Err() == nil {
				errc <- err
				cancel()
			}
		}(be[i])
	}
	a, b := be[0].Port(0), be[1].Port(0)
	defer a.Close()
	defer b.Close()
	cache := pool.NewCache(0)
	defer cache.Flush()
	if err := pmd.ShareCache(cache, a, b); err != nil { // one goroutine polls both
		return err
	}
	var batch pmd.Batch
	var txFull [2]uint64 // packets dropped because the port sending them to a (0), b (1) had no room
	last := time.Now()
	for ctx.Err() == nil {
		if forward(&batch, cache, a, b, &txFull[1])+forward(&batch, cache, b, a, &txFull[0]) == 0 {
			time.Sleep(10 * time.Microsecond)
		}
		if stats > 0 && time.Since(last) > stats {
			last = time.Now()
			log.Printf("a: %+v tx-full-drops=%d attached=%v", a.Stats(), txFull[0], be[0].Attached())
			log.Printf("b: %+v tx-full-drops=%d attached=%v", b.Stats(), txFull[1], be[1].Attached())
		}
	}
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// forward moves one burst from one port to the other and returns how many frames it
// received. What the other port has no room for is dropped and counted in full.
func forward(batch *pmd.Batch, cache *pmd.Cache, from, to pmd.Port, full *uint64) int {
	n := batch.Rx(from)
	if n > 0 {
		batch.Tx(to)
		*full += uint64(pmd.PacketCount(batch.Pkts()))
		cache.Free(batch.Pkts()) // the peer had no room: drop
		batch.Reset()
	}
	return n
}
