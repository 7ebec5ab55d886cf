package pmd

import (
	"fmt"
	"sync/atomic"

	"github.com/dpkit/dpkit/internal/tap"
)

// TapOptions configure NewTap.
type TapOptions struct {
	// Name of the TAP device to create or attach to; may hold %d. Required.
	Name string
	// Pool supplies receive frames and takes back sent ones. Required.
	Pool *Pool
	// PortID is stamped into Pkt.Port of received packets.
	PortID uint16
}

// TapPort is a Port over a Linux TAP device: the exception path to the host kernel
// (ARP for the host, control traffic, anything the dataplane does not handle), as
// DPDK's net_tap and OpenShift's rootless DPDK setups use. Each packet is one read or
// write system call, so it suits the exception path, not line rate.
//
// It follows the Port rules: one goroutine at a time in Rx, one in Tx (and the cache
// it owns is shared by both, so Rx and Tx must be called from the same goroutine).
type TapPort struct {
	fd     int
	name   string
	pool   *Pool
	cache  *Cache
	id     uint16
	ctr    Counters
	closed atomic.Bool
}

// NewTap opens the TAP device. Bring it up and address it as the host needs.
func NewTap(opts TapOptions) (*TapPort, error) {
	if opts.Pool == nil || opts.Name == "" {
		return nil, fmt.Errorf("pmd: TapOptions needs Name and Pool")
	}
	fd, name, err := tap.Open(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("pmd: tap %q: %w", opts.Name, err)
	}
	return &TapPort{fd: fd, name: name, pool: opts.Pool, cache: opts.Pool.NewCache(64), id: opts.PortID}, nil
}

// Name returns the device name the kernel gave.
func (p *TapPort) Name() string { return p.name }

// Rx reads the frames the host sent, up to len(pkts).
func (p *TapPort) Rx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	n, bytes := 0, 0
	for n < len(pkts) {
		if p.cache.Alloc(pkts[n:][:1]) == 0 {
			p.ctr.AddDrop(DropNoBuffer, 1)
			break
		}
		pk := &pkts[n]
		buf := p.pool.Bytes(pk.Frame)[pk.Off:]
		got, err := tap.Read(p.fd, buf)
		if got == 0 || err != nil {
			p.cache.Free(pkts[n:][:1])
			break
		}
		pk.Len = uint16(got)
		pk.Port = p.id
		n++
		bytes += got
	}
	p.ctr.AddRx(n, bytes)
	return n
}

// Tx writes packets to the host and frees their frames. It stops at the first packet
// the device queue cannot take; packets the kernel refuses are dropped and counted.
func (p *TapPort) Tx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	n, bytes, bad := 0, 0, 0
	for ; n < len(pkts); n++ {
		ok, err := tap.Write(p.fd, p.pool.Data(&pkts[n]))
		if err != nil {
			bad++
		} else if !ok {
			break
		} else {
			bytes += int(pkts[n].Len)
		}
	}
	p.cache.Free(pkts[:n])
	p.ctr.AddTx(n-bad, bytes)
	p.ctr.AddDrop(DropTxError, bad)
	return n
}

// Stats returns the port's counters.
func (p *TapPort) Stats() PortStats { return p.ctr.Snapshot() }

// Close closes the device and returns the port's cached frames to the pool.
func (p *TapPort) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	p.cache.Flush()
	return tap.Close(p.fd)
}
