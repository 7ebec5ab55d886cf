package vhost_test

import (
	"context"
	"log"

	"github.com/dpkit/dpkit/pmd"
	"github.com/dpkit/dpkit/vhost"
)

// A back-end on a socket that DPDK virtio-user or QEMU attach to; its queue pair is
// polled like any other pmd.Port.
func ExampleBackend() {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8192, Name: "vhost"})
	if err != nil {
		log.Fatal(err)
	}
	b, err := vhost.NewBackend(vhost.Options{Path: "/run/dpkit/pod0.sock", Pool: pool, QueuePairs: 2, SocketMode: 0o660})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Serve(ctx) // accepts the front-end, and the next one when it restarts

	port := b.Port(0)
	cache := pool.NewCache(0)
	var pkts [pmd.DefaultBurst]pmd.Pkt
	for i := 0; i < 1000; i++ {
		n := port.Rx(pkts[:]) // 0 while no front-end is attached
		sent := port.Tx(pkts[:n])
		cache.Free(pkts[sent:n])
	}
}

// A Go front-end attaching to any vhost-user back-end, sharing a memfd-backed pool.
func ExampleDial() {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8192, Shared: true, Name: "front"})
	if err != nil {
		log.Fatal(err)
	}
	f, err := vhost.Dial(context.Background(), vhost.FrontendOptions{Path: "/run/vrouter/pod0.sock", Pool: pool})
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	var pkts [pmd.DefaultBurst]pmd.Pkt
	n := f.Port(0).Rx(pkts[:])
	_ = n
}
