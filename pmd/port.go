package pmd

import (
	"errors"
	"sync/atomic"
)

// Port is a packet source and sink: a queue of an AF_XDP socket, a vhost-user queue
// pair, a NIC queue, or a software ring.
//
// Ownership: Rx fills pkts[:n] and hands their frames to the caller, who must transmit
// or free them. Tx takes the frames of pkts[:n], the packets it accepted, and frees them
// to their pool once sent; pkts[n:] stay the caller's, to retry or free. Neither call
// blocks: a port with nothing to do returns 0.
//
// A Port is used by one goroutine at a time for Rx and one for Tx (which may differ);
// Stats may be called from any goroutine. Close may be called once, after the datapath
// goroutines have stopped using the port.
type Port interface {
	Rx(pkts []Pkt) int
	Tx(pkts []Pkt) int
	Stats() PortStats
	Close() error
}

// ErrClosed is returned by operations on a closed port or pool.
var ErrClosed = errors.New("pmd: closed")

// DropReason says why a port dropped a packet.
type DropReason uint8

const (
	DropNoBuffer DropReason = iota // no free frame to receive into
	DropInvalid                    // malformed descriptor or packet from outside
	DropTooLong                    // larger than the port or frame can carry
	DropTxError                    // the device or kernel refused a sent packet
	DropLinkDown                   // the link or peer is not up
	DropFiltered                   // refused by policy (spoofing, unknown destination)
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"no_buffer", "invalid", "too_long", "tx_error", "link_down", "filtered"}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// PortStats are a port's counters.
type PortStats struct {
	RxPackets, RxBytes uint64
	TxPackets, TxBytes uint64
	Drops              [NumDropReasons]uint64
}

// TotalDrops sums the drops of every reason.
func (s PortStats) TotalDrops() uint64 {
	var t uint64
	for _, d := range s.Drops {
		t += d
	}
	return t
}

// Counters hold a port's statistics. The datapath adds to them once per burst; any
// goroutine may take a Snapshot. The zero value is ready.
type Counters struct {
	rxPkts, rxBytes atomic.Uint64
	txPkts, txBytes atomic.Uint64
	drops           [NumDropReasons]atomic.Uint64
}

// AddRx counts received packets and bytes.
func (c *Counters) AddRx(pkts, bytes int) {
	if pkts > 0 {
		c.rxPkts.Add(uint64(pkts))
		c.rxBytes.Add(uint64(bytes))
	}
}

// AddTx counts transmitted packets and bytes.
func (c *Counters) AddTx(pkts, bytes int) {
	if pkts > 0 {
		c.txPkts.Add(uint64(pkts))
		c.txBytes.Add(uint64(bytes))
	}
}

// AddDrop counts n drops for reason r.
func (c *Counters) AddDrop(r DropReason, n int) {
	if n > 0 && r < NumDropReasons {
		c.drops[r].Add(uint64(n))
	}
}

// Snapshot returns the current counts.
func (c *Counters) Snapshot() PortStats {
	s := PortStats{
		RxPackets: c.rxPkts.Load(), RxBytes: c.rxBytes.Load(),
		TxPackets: c.txPkts.Load(), TxBytes: c.txBytes.Load(),
	}
	for i := range s.Drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}

// Bytes sums the data lengths of pkts.
func Bytes(pkts []Pkt) int {
	n := 0
	for i := range pkts {
		n += int(pkts[i].Len)
	}
	return n
}
