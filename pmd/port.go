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

// ChainTxer is implemented by ports whose Tx sends a multi-buffer chain (Pkts flagged
// PktMore and the one that ends them) as one packet, as DPDK ports with
// RTE_ETH_TX_OFFLOAD_MULTI_SEGS do. Other ports take every Pkt for a packet, so a
// chain must not be given to them.
type ChainTxer interface {
	TxChains() bool
}

// TxChains reports whether p transmits chains whole.
func TxChains(p Port) bool {
	c, ok := p.(ChainTxer)
	return ok && c.TxChains()
}

// TxReadier is implemented by queues that may be offered but not running, as the
// queue pairs of a vhost-user guest that enabled fewer than it was offered. Tx on a
// queue that is not ready takes nothing.
type TxReadier interface {
	TxReady() bool
}

// TxReady reports whether p's Tx can take packets now: true unless p is a TxReadier
// that says otherwise.
func TxReady(p Port) bool {
	r, ok := p.(TxReadier)
	return !ok || r.TxReady()
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
// goroutine may take a Snapshot. AddRx is called only from the port's receive side
// and AddTx only from its transmit side, one goroutine at a time each (the Port
// rules), so their counters have one writer and are added to without a locked
// instruction; AddDrop may be called from either side. The zero value is ready.
type Counters struct {
	rxPkts, rxBytes Counter
	_               [64]byte // the two sides' counters on lines of their own
	txPkts, txBytes Counter
	drops           [NumDropReasons]atomic.Uint64
}

// AddRx counts received packets and bytes; the receive side's goroutine calls it.
func (c *Counters) AddRx(pkts, bytes int) {
	if pkts > 0 {
		c.rxPkts.Add(uint64(pkts))
		c.rxBytes.Add(uint64(bytes))
	}
}

// AddTx counts transmitted packets and bytes; the transmit side's goroutine calls it.
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

// CacheUser is implemented by ports that take frames from a Cache to receive into and
// free transmitted frames to one. Each such port starts with caches of its own, so
// that it works alone; a worker that polls several ports from one goroutine should
// give them its own cache instead (ShareCache), as DPDK ports share an lcore's
// mempool cache. Then a frame freed after one port transmits it is the next frame
// another port receives into, still in the CPU's cache. With separate caches, frames
// cycle through the whole pool's shared free list, and every packet's copy touches
// memory the CPU last saw thousands of packets ago.
//
// UseCaches makes the port take Rx frames from rx and free Tx frames to tx (nil keeps
// the current cache). rx must belong to the goroutine that calls Rx, tx to the one
// that calls Tx, and both to the port's pool. Call it before the datapath starts. The
// port returns the frames of its own caches to the pool; Close leaves caches it was
// given alone.
type CacheUser interface {
	UseCaches(rx, tx *Cache) error
}

// ErrForeignCache: a port was given a cache of another pool.
var ErrForeignCache = errors.New("pmd: cache of another pool")

// ShareCache gives c to every port of ports that is a CacheUser, for both Rx and Tx:
// the set-up of a worker that polls all of them from one goroutine. Ports that are not
// CacheUsers are left as they are.
func ShareCache(c *Cache, ports ...Port) error {
	for _, p := range ports {
		if u, ok := p.(CacheUser); ok {
			if err := u.UseCaches(c, c); err != nil {
				return err
			}
		}
	}
	return nil
}

// PortCaches is the pair of caches a port's Rx and Tx use, for port implementations:
// its own at first, those given by Use after. The zero value is not usable; see
// NewPortCaches.
type PortCaches struct {
	Rx, Tx       *Cache
	ownRx, ownTx bool
}

// NewPortCaches returns caches of pool p owned by the port, of size frames each (0:
// DefaultCacheSize).
func NewPortCaches(p *Pool, size int) PortCaches {
	return PortCaches{Rx: p.NewCache(size), Tx: p.NewCache(size), ownRx: true, ownTx: true}
}

// Use implements CacheUser.UseCaches: it flushes the own caches it replaces.
func (c *PortCaches) Use(rx, tx *Cache) error {
	pool := c.Rx.Pool()
	if (rx != nil && rx.Pool() != pool) || (tx != nil && tx.Pool() != pool) {
		return ErrForeignCache
	}
	if rx != nil && rx != c.Rx {
		if c.ownRx {
			c.Rx.Flush()
		}
		c.Rx, c.ownRx = rx, false
	}
	if tx != nil && tx != c.Tx {
		if c.ownTx {
			c.Tx.Flush()
		}
		c.Tx, c.ownTx = tx, false
	}
	return nil
}

// Close flushes the caches the port owns; shared ones stay with their worker.
func (c *PortCaches) Close() {
	if c.ownRx {
		c.Rx.Flush()
	}
	if c.ownTx {
		c.Tx.Flush()
	}
}
