package pmd

import (
	"errors"
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"

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
	// A frame longer than a pool frame is read into big after the first frame's
	// room, then copied into more frames; iov holds the read's or write's buffers.
	big []byte
	iov [][]byte
	// A long frame read when the burst had too little room left for it: its first
	// frame, and how many of its bytes wait in big. The next Rx returns it first.
	held     Pkt
	heldRest int
}

// tapMaxFrame is the longest frame a TapPort reads: a 64 KiB MTU and its header.
const tapMaxFrame = 65536 + 14

// NewTap opens the TAP device. Bring it up and address it as the host needs.
func NewTap(opts TapOptions) (*TapPort, error) {
	if opts.Pool == nil || opts.Name == "" {
		return nil, fmt.Errorf("pmd: TapOptions needs Name and Pool")
	}
	fd, name, err := tap.Open(opts.Name)
	if err != nil {
		return nil, fmt.Errorf("pmd: tap %q: %w", opts.Name, err)
	}
	return &TapPort{fd: fd, name: name, pool: opts.Pool, cache: opts.Pool.NewCache(64), id: opts.PortID,
		big: make([]byte, tapMaxFrame), iov: make([][]byte, 0, MaxBurst)}, nil
}

// Name returns the device name the kernel gave.
func (p *TapPort) Name() string { return p.name }

// Rx reads the frames the host sent, up to len(pkts) Pkts. A frame longer than a
// pool frame (a jumbo frame) is returned as a chain of frames, all but the last
// flagged PktMore; one that the rest of pkts cannot hold is dropped (DropTooLong).
func (p *TapPort) Rx(pkts []Pkt) int {
	if p.closed.Load() || len(pkts) == 0 {
		return 0
	}
	n, npk, bytes := 0, 0, 0
	if p.heldRest > 0 {
		pkts[0] = p.held
		k, ok := p.spill(pkts[1:], p.heldRest)
		if ok {
			n, npk, bytes = 1+k, 1, int(p.held.Len)+p.heldRest
		} else {
			if k == len(pkts)-1 {
				p.ctr.AddDrop(DropTooLong, 1) // longer than this burst can ever hold
			}
			p.cache.Free(pkts[:1+k])
		}
		p.heldRest = 0
	}
	for n < len(pkts) {
		if p.cache.Alloc(pkts[n:][:1]) == 0 {
			// Nothing is dropped: a waiting frame stays in the device for a later
			// call (the pool counts the shortage).
			break
		}
		pk := &pkts[n]
		buf := p.pool.Bytes(pk.Frame)[pk.Off:]
		p.iov = append(p.iov[:0], buf, p.big)
		got, err := tap.Readv(p.fd, p.iov)
		if got == 0 || err != nil {
			p.cache.Free(pkts[n:][:1])
			break
		}
		pk.Port, pk.Flags = p.id, 0
		if got <= len(buf) {
			pk.Len = uint16(got)
			n++
			npk++
			bytes += got
			continue
		}
		// The rest went to big: spread it over more frames.
		pk.Len = uint16(len(buf))
		k, ok := p.spill(pkts[n+1:], got-len(buf))
		if !ok {
			if n > 0 && k == len(pkts)-n-1 {
				// Out of room in this burst, not in general: keep it for the next
				// call (big holds its rest until then) and stop reading.
				p.cache.Free(pkts[n+1:][:k])
				p.held, p.heldRest = *pk, got-len(buf)
				p.held.Flags = PktMore
				break
			}
			if k == len(pkts)-n-1 {
				p.ctr.AddDrop(DropTooLong, 1)
			}
			p.cache.Free(pkts[n:][:1+k])
			break
		}
		pk.Flags = PktMore
		n += 1 + k
		npk++
		bytes += got
	}
	p.ctr.AddRx(npk, bytes)
	return n
}

// spill copies the first rest bytes of big into frames for pkts, the segments after
// a chain's first, and returns how many it filled; false (with the frames taken so
// far, to free) when pkts or the pool runs out. Running out of pkts is counted only
// when pkts is a whole burst (the frame will never fit one).
func (p *TapPort) spill(pkts []Pkt, rest int) (int, bool) {
	k := 0
	for done := 0; done < rest; k++ {
		if k == len(pkts) {
			return k, false
		}
		if p.cache.Alloc(pkts[k:][:1]) == 0 {
			p.ctr.AddDrop(DropNoBuffer, 1)
			return k, false
		}
		pk := &pkts[k]
		c := copy(p.pool.Bytes(pk.Frame)[pk.Off:], p.big[done:rest])
		pk.Len, pk.Port, pk.Flags = uint16(c), p.id, PktMore
		done += c
	}
	pkts[k-1].Flags = 0
	return k, true
}

// Tx writes packets to the host and frees their frames. It stops at the first packet
// the device queue cannot take; packets the kernel refuses are dropped and counted
// (DropLinkDown while the device is not up or after it was deleted, DropTxError
// otherwise).
func (p *TapPort) Tx(pkts []Pkt) int {
	if p.closed.Load() {
		return 0
	}
	n, sent, bytes, bad, down, long := 0, 0, 0, 0, 0, 0
loop:
	for n < len(pkts) {
		// One frame, or a chain gathered into one write: pkts[n:k+1].
		p.iov = p.iov[:0]
		k := n
		for {
			if k == len(pkts) {
				break loop // an unfinished chain stays the caller's
			}
			if len(p.iov) == cap(p.iov) {
				// More than MaxBurst segments: dropped, if its end is here.
				for k < len(pkts) && pkts[k].Flags&PktMore != 0 {
					k++
				}
				if k == len(pkts) {
					break loop
				}
				// Too long for the port, not refused by the kernel: it never
				// reached a write, so it counts as DropTooLong (as RingPort's).
				long++
				n = k + 1
				continue loop
			}
			p.iov = append(p.iov, p.pool.Data(&pkts[k]))
			if pkts[k].Flags&PktMore == 0 {
				break
			}
			k++
		}
		ok, err := tap.Writev(p.fd, p.iov)
		if errors.Is(err, unix.EIO) || errors.Is(err, unix.EBADFD) {
			// The kernel refuses writes to a device that is not up (EIO) or was
			// deleted under the descriptor (EBADFD).
			down++
		} else if err != nil {
			bad++
		} else if !ok {
			break
		} else {
			sent++
			bytes += Bytes(pkts[n : k+1])
		}
		n = k + 1
	}
	p.cache.Free(pkts[:n])
	p.ctr.AddTx(sent, bytes)
	p.ctr.AddDrop(DropTxError, bad)
	p.ctr.AddDrop(DropLinkDown, down)
	p.ctr.AddDrop(DropTooLong, long)
	return n
}

// TxChains implements ChainTxer: a chain is written to the device as one frame.
func (p *TapPort) TxChains() bool { return true }

// Stats returns the port's counters.
func (p *TapPort) Stats() PortStats { return p.ctr.Snapshot() }

// Close closes the device and returns the port's cached frames to the pool.
func (p *TapPort) Close() error {
	if !p.closed.CompareAndSwap(false, true) {
		return nil
	}
	if p.heldRest > 0 {
		p.cache.Free([]Pkt{p.held})
		p.heldRest = 0
	}
	p.cache.Flush()
	return tap.Close(p.fd)
}
