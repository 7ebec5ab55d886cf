package pmd

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// CaptureOptions configure a capture session.
type CaptureOptions struct {
	// Snaplen is how many bytes of each packet are kept, up to MaxSnaplen; 0 means
	// 2048.
	Snaplen int
	// Slots is how many packets may wait for the writer before captures are dropped
	// (counted, never blocking the datapath); a power of two, 0 means 4096. The
	// slots' buffer, Slots × (Snaplen+16) bytes, may take up to 1 GiB.
	Slots int
	// Rx and Tx choose the directions captured; both false means both.
	Rx, Tx bool
}

// CaptureStats count a capture session.
type CaptureStats struct {
	Captured uint64 // packets written to the file
	Dropped  uint64 // packets not captured: the writer fell behind, or failed
}

// MaxSnaplen is the longest Snaplen, libpcap's limit.
const MaxSnaplen = 262144

// ErrCaptureActive reports a Start while a capture is running.
var ErrCaptureActive = errors.New("pmd: capture already running")

// CapturePort wraps a Port and, while a capture is running, copies what passes through
// it into a pcap file (readable by tcpdump, tshark and Wireshark), like DPDK's pdump.
// The datapath copies each packet into a preallocated slot and never waits for the
// writer: when the writer falls behind, captures are dropped and counted.
//
// Rx, Tx, Stats and Close follow the wrapped port's rules; Start and Stop may be called
// from any goroutine. Close ends a running capture first.
type CapturePort struct {
	Port
	pool *Pool
	*tapPoint
}

// tapPoint is the capture session the CapturePorts of one interface share.
type tapPoint struct {
	cur atomic.Pointer[capture]
	mu  sync.Mutex // serialises Start and Stop
}

// NewCapturePort wraps port, whose packets live in pool.
func NewCapturePort(port Port, pool *Pool) *CapturePort {
	return &CapturePort{Port: port, pool: pool, tapPoint: &tapPoint{}}
}

// NewCaptureGroup wraps the queues of one interface, whose packets live in pool, so
// that they share one capture session: Start on any of them records every queue's
// packets, in both directions, into one pcap stream, and Stop on any ends it. The
// queues may be polled by different goroutines.
func NewCaptureGroup(pool *Pool, queues ...Port) []*CapturePort {
	tp := &tapPoint{}
	cs := make([]*CapturePort, len(queues))
	for i, q := range queues {
		cs[i] = &CapturePort{Port: q, pool: pool, tapPoint: tp}
	}
	return cs
}

// UseCaches passes the caches on to the wrapped port if it is a CacheUser (see
// ShareCache), and does nothing otherwise.
func (c *CapturePort) UseCaches(rx, tx *Cache) error {
	if u, ok := c.Port.(CacheUser); ok {
		return u.UseCaches(rx, tx)
	}
	return nil
}

type capture struct {
	opts     CaptureOptions
	slots    []byte // Slots × (16-byte record header + Snaplen)
	slotSize int
	free     *Ring[uint32] // datapath dequeues, writer enqueues
	full     *Ring[uint32] // datapath enqueues, writer dequeues
	captured atomic.Uint64
	dropped  atomic.Uint64
	stop     chan struct{}
	done     chan error
	users    atomic.Int32 // datapath calls inside the session
}

// Start begins writing captured packets to w as a pcap stream (Ethernet link type).
func (c *CapturePort) Start(w io.Writer, opts CaptureOptions) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cur.Load() != nil {
		return ErrCaptureActive
	}
	if opts.Snaplen <= 0 {
		opts.Snaplen = 2048
	}
	if opts.Slots == 0 {
		opts.Slots = 4096
	}
	if !opts.Rx && !opts.Tx {
		opts.Rx, opts.Tx = true, true
	}
	if opts.Snaplen > MaxSnaplen || opts.Slots < 0 || opts.Slots > (1<<30)/(16+opts.Snaplen) {
		return fmt.Errorf("pmd: capture of %d slots of %d bytes: too large", opts.Slots, opts.Snaplen)
	}
	// Rx and Tx may run on two goroutines besides the writer: both rings are MPMC.
	free, err := NewRing[uint32](opts.Slots, RingMPMC)
	if err != nil {
		return fmt.Errorf("pmd: capture slots: %w", err)
	}
	full, _ := NewRing[uint32](opts.Slots, RingMPMC)
	cp := &capture{
		opts: opts, slotSize: 16 + opts.Snaplen, free: free, full: full,
		stop: make(chan struct{}), done: make(chan error, 1),
	}
	cp.slots = make([]byte, opts.Slots*cp.slotSize)
	idx := make([]uint32, opts.Slots)
	for i := range idx {
		idx[i] = uint32(i)
	}
	free.Enqueue(idx)

	bw := bufio.NewWriterSize(w, 1<<16)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b23c4d) // nanosecond pcap
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], uint32(opts.Snaplen))
	binary.LittleEndian.PutUint32(hdr[20:], 1) // LINKTYPE_ETHERNET
	if _, err := bw.Write(hdr[:]); err != nil {
		return err
	}
	go cp.write(bw)
	c.cur.Store(cp)
	return nil
}

// Stop ends the capture, writes what is queued and returns the session's counts.
func (c *CapturePort) Stop() (CaptureStats, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp := c.cur.Swap(nil)
	if cp == nil {
		return CaptureStats{}, nil
	}
	for cp.users.Load() != 0 { // wait until no datapath call still copies into it
		time.Sleep(100 * time.Microsecond)
	}
	close(cp.stop)
	err := <-cp.done
	return CaptureStats{Captured: cp.captured.Load(), Dropped: cp.dropped.Load()}, err
}

// Close ends a running capture as Stop does (for every queue of a group: the
// session is theirs together), then closes the wrapped port. The error is the
// capture's, if its writer failed, joined to the port's.
func (c *CapturePort) Close() error {
	_, err := c.Stop()
	return errors.Join(err, c.Port.Close())
}

// Rx receives from the wrapped port and captures what arrived.
func (c *CapturePort) Rx(pkts []Pkt) int {
	n := c.Port.Rx(pkts)
	if n > 0 {
		if cp := c.enter(); cp != nil {
			if cp.opts.Rx {
				cp.copy(c.pool, pkts[:n])
			}
			cp.users.Add(-1)
		}
	}
	return n
}

// Tx captures what the wrapped port accepts. The copy is made before the port takes
// the frames, then trimmed to what it accepted.
func (c *CapturePort) Tx(pkts []Pkt) int {
	cp := c.enter()
	if cp == nil || !cp.opts.Tx {
		if cp != nil {
			cp.users.Add(-1)
		}
		return c.Port.Tx(pkts)
	}
	defer cp.users.Add(-1)
	// Copy first: after Tx the accepted frames belong to the port.
	var slots [MaxBurst]uint32
	got := cp.free.Dequeue(slots[:min(PacketCount(pkts), MaxBurst)])
	cp.fillAll(c.pool, slots[:got], pkts)
	n := c.Port.Tx(pkts)
	sent := PacketCount(pkts[:n])
	keep := min(got, sent)
	cp.full.Enqueue(slots[:keep])
	cp.free.Enqueue(slots[keep:got])
	cp.dropped.Add(uint64(sent - keep))
	return n
}

// TxReady implements TxReadier for the wrapped port.
func (c *CapturePort) TxReady() bool { return TxReady(c.Port) }

// TxChains implements ChainTxer for the wrapped port.
func (c *CapturePort) TxChains() bool { return TxChains(c.Port) }

// enter returns the running session, registered as in use, or nil.
func (c *CapturePort) enter() *capture {
	cp := c.cur.Load()
	if cp == nil {
		return nil
	}
	cp.users.Add(1)
	if c.cur.Load() != cp { // Stop raced us: leave
		cp.users.Add(-1)
		return nil
	}
	return cp
}

func (cp *capture) copy(pool *Pool, pkts []Pkt) {
	var slots [MaxBurst]uint32
	np := PacketCount(pkts)
	got := cp.free.Dequeue(slots[:min(np, MaxBurst)])
	cp.fillAll(pool, slots[:got], pkts)
	cp.full.Enqueue(slots[:got])
	cp.dropped.Add(uint64(np - got))
}

// fillAll fills one slot per packet of pkts, a chain making one record, until the
// slots run out.
func (cp *capture) fillAll(pool *Pool, slots []uint32, pkts []Pkt) {
	now := time.Now().UnixNano()
	i := 0
	for _, slot := range slots {
		j := i
		for j < len(pkts)-1 && pkts[j].Flags&PktMore != 0 {
			j++
		}
		cp.fill(pool, slot, pkts[i:j+1], now)
		i = j + 1
	}
}

// fill writes a pcap record header and the first Snaplen bytes of the packet whose
// segments are segs into a slot.
func (cp *capture) fill(pool *Pool, slot uint32, segs []Pkt, now int64) {
	s := cp.slots[int(slot)*cp.slotSize:][:cp.slotSize]
	n, orig := 0, 0
	for i := range segs {
		data := pool.Data(&segs[i])
		n += copy(s[16+n:], data)
		orig += len(data)
	}
	binary.LittleEndian.PutUint32(s[0:], uint32(now/1e9))
	binary.LittleEndian.PutUint32(s[4:], uint32(now%1e9))
	binary.LittleEndian.PutUint32(s[8:], uint32(n))
	binary.LittleEndian.PutUint32(s[12:], uint32(orig))
}

// write drains full slots into the file until stopped, then drains the rest. What it
// buffers reaches the file within about 100 ms.
func (cp *capture) write(bw *bufio.Writer) {
	var batch [64]uint32
	var werr error
	drain := func() int {
		n := cp.full.Dequeue(batch[:])
		for _, slot := range batch[:n] {
			s := cp.slots[int(slot)*cp.slotSize:][:cp.slotSize]
			caplen := int(binary.LittleEndian.Uint32(s[8:]))
			if werr == nil {
				_, werr = bw.Write(s[:16+caplen])
			}
			if werr == nil {
				cp.captured.Add(1)
			} else {
				cp.dropped.Add(1) // the file has stopped taking records
			}
		}
		cp.free.Enqueue(batch[:n])
		return n
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	flushed := time.Now()
	for {
		select {
		case <-cp.stop:
			for drain() > 0 {
			}
			if werr == nil {
				werr = bw.Flush()
			}
			cp.done <- werr
			return
		case <-tick.C:
			for drain() > 0 {
			}
			// A reader following the capture live (a pipe into tshark) gets
			// what waited in the buffer every 100 ms rather than every 64 KiB.
			if werr == nil && bw.Buffered() > 0 && time.Since(flushed) >= 100*time.Millisecond {
				werr = bw.Flush()
				flushed = time.Now()
			}
		}
	}
}
