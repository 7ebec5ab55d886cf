package dataplane

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// TestFragment4: an IPv4 packet without DF too long for its tunnel is split into
// fragments that fit (RFC 791): each crosses the tunnel as a packet of its own with
// a valid header, the identification kept, offsets in 8-byte units and MF on all but
// the last (or on all, when the packet was a first fragment itself); together they
// carry the payload. Single frames and multi-buffer chains alike; every encapsulation.
func TestFragment4(t *testing.T) {
	for _, et := range []string{"vxlan", "mplsoudp", "mplsogre"} {
		for _, tc := range []struct {
			name    string
			payload int
			seg     int    // chain segments of seg bytes; 0: one frame
			frag    uint16 // the packet's own fragment field
		}{
			{"frame", 1452, 0, 0},
			{"chain", 6000, 1500, 0},
			{"first-fragment", 6000, 1500, 0x2000},
			{"middle-fragment", 1452, 0, 0x2000 | 740},
			{"last-fragment", 1452, 0, 740},
		} {
			t.Run(et+"/"+tc.name, func(t *testing.T) {
				pool, c, n1, n2, drain := linkedNodes(t, et, 1500)
				p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
				var body strings.Builder
				for i := 0; body.Len() < tc.payload; i++ {
					fmt.Fprintf(&body, "%07d,", i)
				}
				frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, body.String()[:tc.payload])
				ip := frame[14:]
				binary.BigEndian.PutUint16(ip[4:], 0x1234)
				binary.BigEndian.PutUint16(ip[6:], tc.frag)
				binary.BigEndian.PutUint16(ip[10:], 0)
				binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
				if tc.seg > 0 {
					sendChain(t, pool, c, n1.pod, frame, tc.seg)
				} else {
					send(t, pool, c, n1.pod, frame)
				}
				pump(n1, n2)
				got, _ := recvChains(pool, c, n2.pod)
				if len(got) < 2 {
					t.Fatalf("pod 2 got %d frames; drops %v", len(got), n1.eng.ifaces[1].Stats().Drops)
				}
				type part struct {
					off  int
					mf   bool
					data []byte
				}
				var parts []part
				for _, f := range got {
					h := f[14:34]
					if naiveSum(h) != 0xffff || binary.BigEndian.Uint16(h[4:]) != 0x1234 || h[8] != 62 ||
						int(binary.BigEndian.Uint16(h[2:])) != len(f)-14 || h[6]&0x40 != 0 {
						t.Fatalf("fragment header %x (%d bytes)", h, len(f))
					}
					ff := binary.BigEndian.Uint16(h[6:])
					parts = append(parts, part{int(ff&0x1fff) * 8, ff&0x2000 != 0, f[34:]})
				}
				sort.Slice(parts, func(i, j int) bool { return parts[i].off < parts[j].off })
				base := int(tc.frag&0x1fff) * 8
				var joined []byte
				for i, p := range parts {
					if p.off != base+len(joined) {
						t.Fatalf("fragment %d at %d, want %d", i, p.off, base+len(joined))
					}
					if last := i == len(parts)-1; p.mf != (!last || tc.frag&0x2000 != 0) || (!last && len(p.data)%8 != 0) {
						t.Fatalf("fragment %d: MF %v, %d bytes", i, p.mf, len(p.data))
					}
					joined = append(joined, p.data...)
				}
				if !bytes.Equal(joined, ip[20:]) {
					t.Fatalf("reassembled %d bytes differ from the %d sent", len(joined), len(ip)-20)
				}
				if s := n1.eng.ifaces[1].Stats(); s.Fragmented != 1 || s.Drops != ([NumReasons]uint64{}) {
					t.Fatalf("pod 1: fragmented %d, drops %v", s.Fragmented, s.Drops)
				}
				drain()
			})
		}
	}
}

// TestFragmentZeroAlloc: fragmenting allocates nothing.
func TestFragmentZeroAlloc(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	defer ul1.Close()
	defer ul2.Close()
	c := pool.NewCache(64)
	n1 := newNodeMTU(t, pool, 1, "vxlan", ul1, 1500)
	p1 := n1.cfg.Interfaces[0]
	frame := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], n1.cfg.VRFs[0].Routes[0].P.Addr().Next().Next(), 64, strings.Repeat("f", 1452))
	var pk [8]pmd.Pkt
	moved := 0
	allocs := testing.AllocsPerRun(100, func() {
		c.Alloc(pk[:1])
		pk[0].Flags = 0
		pool.Append(&pk[0], len(frame))
		copy(pool.Data(&pk[0]), frame)
		n1.pod.Tx(pk[:1])
		n1.eng.Poll()
		k := ul2.Rx(pk[:])
		moved += k
		c.Free(pk[:k])
	})
	if allocs != 0 || moved != 2*101 {
		t.Fatalf("%v allocs per fragmented packet; %d fragments out of 101 packets", allocs, moved)
	}
}

// TestFragmentShortPool: a packet to fragment while the pool has fewer free frames
// than it has fragments is dropped and counted, and the frames that were allocated
// for it go back: every frame is free at the end.
func TestFragmentShortPool(t *testing.T) {
	f := newFragNode(t)
	pool, ul1, ul2, c, n1 := f.pool, f.ul1, f.ul2, f.c, f.n1
	frame := f.udp(6000)
	sendChain(t, pool, c, n1.pod, frame, 1500) // five fragments needed, no DF
	// Hold every free frame but two.
	hog := pool.NewCache(0)
	var held []pmd.Pkt
	for {
		var one [1]pmd.Pkt
		if hog.Alloc(one[:]) != 1 {
			break
		}
		held = append(held, one[0])
	}
	if len(held) < 2 {
		t.Fatalf("only %d frames to hold", len(held))
	}
	hog.Free(held[len(held)-2:])
	hog.Flush()
	held = held[:len(held)-2]
	n1.eng.Poll()
	if s := n1.eng.ifaces[1].Stats(); s.Fragmented != 0 || s.Drops == ([NumReasons]uint64{}) {
		t.Fatalf("fragmented %d, drops %v: want the packet dropped and counted", s.Fragmented, s.Drops)
	}
	hog.Free(held)
	hog.Flush()
	allFramesBack(t, pool, c, []*Engine{n1.eng}, ul1, ul2)
}

// TestFragmentOffsetOverflow: a fragment whose data would end past offset 65535 (a
// malformed packet) is dropped and counted rather than split into fragments whose
// offsets overflow into the flag bits.
func TestFragmentOffsetOverflow(t *testing.T) {
	f := newFragNode(t)
	pool, ul1, ul2, c, n1 := f.pool, f.ul1, f.ul2, f.c, f.n1
	frame := f.udp(1452)
	ip := frame[14:]
	binary.BigEndian.PutUint16(ip[6:], 0x2000|0x1ff0) // offset 65408, MF
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:20]))
	send(t, pool, c, n1.pod, frame)
	n1.eng.Poll()
	var pk [8]pmd.Pkt
	if k := ul2.Rx(pk[:]); k != 0 {
		c.Free(pk[:k])
		t.Fatalf("%d frames crossed the underlay", k)
	}
	if s := n1.eng.ifaces[1].Stats(); s.Fragmented != 0 || s.Drops == ([NumReasons]uint64{}) {
		t.Fatalf("fragmented %d, drops %v: want the packet dropped and counted", s.Fragmented, s.Drops)
	}
	allFramesBack(t, pool, c, []*Engine{n1.eng}, ul1, ul2)
}

// fragNode is one node whose pod sends to a remote prefix through a 1500-byte tunnel.
type fragNode struct {
	pool     *pmd.Pool
	ul1, ul2 pmd.Port
	c        *pmd.Cache
	n1       *node
}

func newFragNode(t *testing.T) *fragNode {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 2048, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	ul1, ul2, _ := pmd.NewRingPair(pmd.RingPairOptions{Pool: pool})
	return &fragNode{pool: pool, ul1: ul1, ul2: ul2, c: pool.NewCache(64), n1: newNodeMTU(t, pool, 1, "vxlan", ul1, 1500)}
}

// udp is a frame from the pod to an address behind the remote node, without DF.
func (f *fragNode) udp(payload int) []byte {
	p1 := f.n1.cfg.Interfaces[0]
	dst := f.n1.cfg.VRFs[0].Routes[0].P.Addr().Next().Next()
	return udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], dst, 64, strings.Repeat("u", payload))
}

// TestFragment4Options: an IPv4 packet with options, without DF and too long for its
// tunnel, is fragmented too (RFC 1812 §5.2.6), not dropped: the first fragment
// carries every option, the others only those whose copied flag is set (RFC 791
// §3.1), their headers padded to a multiple of 4; each header verifies and the
// fragments' data joins up to the payload. Options that run past the header make the
// packet too big, dropped.
func TestFragment4Options(t *testing.T) {
	// Router alert (copied), record route (not copied), a no-operation, end of list.
	opts := []byte{0x94, 4, 0, 0, 7, 7, 4, 0, 0, 0, 0, 1, 0, 0, 0, 0}
	for _, tc := range []struct {
		name  string
		opts  []byte
		later []byte // the options of the fragments after the first
	}{
		{"copied and not", opts, []byte{0x94, 4, 0, 0}},
		{"none copied", opts[4:], nil},
		{"malformed", []byte{0x94, 9, 0, 0}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pool, c, n1, n2, drain := linkedNodes(t, "vxlan", 1500)
			p1, p2 := n1.cfg.Interfaces[0], n2.cfg.Interfaces[0]
			var body strings.Builder
			for i := 0; body.Len() < 3000; i++ {
				fmt.Fprintf(&body, "%07d,", i)
			}
			plain := udp4([6]byte(p1.HW), routerMAC, p1.Addrs[0], p2.Addrs[0], 64, body.String()[:3000])
			ihl := 20 + len(tc.opts)
			frame := append(append(append([]byte(nil), plain[:34]...), tc.opts...), plain[34:]...)
			ip := frame[14:]
			ip[0] = 0x40 | byte(ihl/4)
			binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
			binary.BigEndian.PutUint16(ip[4:], 0x4321)
			binary.BigEndian.PutUint16(ip[10:], 0)
			binary.BigEndian.PutUint16(ip[10:], ipv4Checksum(ip[:ihl]))
			sendChain(t, pool, c, n1.pod, frame, 1500)
			pump(n1, n2)
			got, _ := recvChains(pool, c, n2.pod)
			if tc.name == "malformed" {
				if len(got) != 0 || dropped(n1, 1, DropTooBig) != 1 {
					t.Fatalf("pod 2 got %d frames; drops %v", len(got), n1.eng.ifaces[1].Stats().Drops)
				}
				drain()
				return
			}
			if len(got) < 3 {
				t.Fatalf("pod 2 got %d frames; drops %v", len(got), n1.eng.ifaces[1].Stats().Drops)
			}
			joined := map[int][]byte{}
			end := 0
			for _, f := range got {
				h := f[14:]
				hl := int(h[0]&0xf) * 4
				ff := binary.BigEndian.Uint16(h[6:])
				off := int(ff&0x1fff) * 8
				want := tc.later
				if off == 0 {
					want = tc.opts
				}
				wantHL := (20 + len(want) + 3) &^ 3
				if h[0]>>4 != 4 || hl != wantHL || naiveSum(h[:hl]) != 0xffff || binary.BigEndian.Uint16(h[4:]) != 0x4321 ||
					int(binary.BigEndian.Uint16(h[2:])) != len(f)-14 || !bytes.HasPrefix(h[20:hl], want) ||
					!bytes.Equal(h[20+len(want):hl], make([]byte, hl-20-len(want))) {
					t.Fatalf("fragment at %d: header %x", off, h[:hl])
				}
				if ff&0x2000 != 0 && (len(f)-14-hl)%8 != 0 {
					t.Fatalf("fragment at %d: %d bytes of data, not a multiple of 8", off, len(f)-14-hl)
				}
				if ff&0x2000 == 0 {
					end = off + len(f) - 14 - hl
				}
				joined[off] = f[14+hl:]
			}
			var data []byte
			for len(data) < end {
				p, ok := joined[len(data)]
				if !ok {
					t.Fatalf("no fragment at %d", len(data))
				}
				data = append(data, p...)
			}
			if !bytes.Equal(data, ip[ihl:]) {
				t.Fatalf("reassembled %d bytes differ from the %d sent", len(data), len(ip)-ihl)
			}
			if s := n1.eng.ifaces[1].Stats(); s.Fragmented != 1 || s.Drops != ([NumReasons]uint64{}) {
				t.Fatalf("pod 1: fragmented %d, drops %v", s.Fragmented, s.Drops)
			}
			drain()
		})
	}
}

// TestFragmentPartialChecksum: a packet whose UDP checksum a virtio driver left
// partial (pmd.PktCsumPartial: the field holds the pseudo-header sum, for the device
// to finish) has it finished before it is split: the fragments reassemble into a
// datagram whose checksum verifies. Split unfinished, the first fragment carried the
// pseudo-header sum and the receiver dropped the datagram.
func TestFragmentPartialChecksum(t *testing.T) {
	f := newFragNode(t)
	pool, ul1, ul2, c, n1 := f.pool, f.ul1, f.ul2, f.c, f.n1
	frame := f.udp(1452)
	ip := frame[14:]
	udp := ip[20:]
	ps := uint32(sum16(sum16(0, ip[12:20]), nil)) + 17 + uint32(len(udp))
	binary.BigEndian.PutUint16(udp[6:], fold16(ps)) // the partial sum, as a driver leaves it
	var pk [1]pmd.Pkt
	if c.Alloc(pk[:]) != 1 {
		t.Fatal("alloc")
	}
	pool.Append(&pk[0], len(frame))
	copy(pool.Data(&pk[0]), frame)
	pk[0].Flags |= pmd.PktCsumPartial
	if n1.pod.Tx(pk[:]) != 1 {
		t.Fatal("tx")
	}
	n1.eng.Poll()
	var out [8]pmd.Pkt
	k := ul2.Rx(out[:])
	if k < 2 {
		c.Free(out[:k])
		t.Fatalf("%d packets on the underlay, want fragments; drops %v", k, n1.eng.ifaces[1].Stats().Drops)
	}
	parts := map[int][]byte{}
	for i := range out[:k] {
		o := pool.Data(&out[i])[50+14:] // past outer headers and the inner Ethernet header
		parts[int(binary.BigEndian.Uint16(o[6:])&0x1fff)*8] = append([]byte(nil), o[20:binary.BigEndian.Uint16(o[2:])]...)
	}
	c.Free(out[:k])
	var dgram []byte
	for p, ok := parts[0]; ok; p, ok = parts[len(dgram)] {
		dgram = append(dgram, p...)
	}
	if len(dgram) != len(udp) {
		t.Fatalf("reassembled %d bytes, want %d", len(dgram), len(udp))
	}
	pseudo := append(append([]byte(nil), ip[12:20]...), 0, 17, byte(len(udp)>>8), byte(len(udp)))
	if s := naiveSum(append(pseudo, dgram...)); s != 0xffff {
		t.Fatalf("UDP checksum of the reassembled datagram does not verify (sum %#04x)", s)
	}
	allFramesBack(t, pool, c, []*Engine{n1.eng}, ul1, ul2)
}
