// Command routegen writes the routebench route and lookup sets in the
// file formats of DPDK's dpdk-test-fib (-f routes: "prefix/len nexthop" per
// line; -t lookups: one address per line).
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"

	routebench "github.com/dpkit/dpkit/bench/route"
)

func main() {
	v6 := flag.Bool("6", false, "IPv6")
	n := flag.Int("n", 0, "routes (0: 1M IPv4, 200k IPv6)")
	l := flag.Int("l", 1<<20, "lookup addresses")
	rf := flag.String("routes", "routes.txt", "route file")
	tf := flag.String("lookups", "lookups.txt", "lookup file")
	seed := flag.Uint64("seed", 1, "seed")
	flag.Parse()
	if *n == 0 {
		*n = 1 << 20
		if *v6 {
			*n = 200_000
		}
	}
	ps := routebench.Routes4(*n, *seed)
	if *v6 {
		ps = routebench.Routes6(*n, *seed)
	}
	write := func(name string, f func(w *bufio.Writer)) {
		fd, err := os.Create(name)
		if err != nil {
			log.Fatal(err)
		}
		w := bufio.NewWriter(fd)
		f(w)
		if err := w.Flush(); err != nil {
			log.Fatal(err)
		}
		if err := fd.Close(); err != nil {
			log.Fatal(err)
		}
	}
	write(*rf, func(w *bufio.Writer) {
		for i, p := range ps {
			fmt.Fprintf(w, "%s %d\n", p, i%65000+1)
		}
	})
	write(*tf, func(w *bufio.Writer) {
		for _, a := range routebench.Addrs(ps, *l, *seed+1) {
			fmt.Fprintln(w, a)
		}
	})
}
