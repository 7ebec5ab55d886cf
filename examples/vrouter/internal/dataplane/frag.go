package dataplane

import (
	"encoding/binary"

	"github.com/dpkit/dpkit/encap"
	"github.com/dpkit/dpkit/pmd"
)

// maxFragments bounds how many fragments one packet is split into; a packet that
// would need more (a tiny tunnel MTU) is dropped as too big instead.
const maxFragments = 64

// fragment4 splits pk, an IPv4 packet without DF that is too long for tun, into
// fragments that fit (RFC 791 §3.2 and §2.3 "Fragmentation", RFC 1812 §5.2.6), then
// encapsulates and queues each to the uplink and frees pk. The packet starts with an
// Ethernet header of l2 bytes (VXLAN) or with the IP header (l2 0); w.seg holds the
// rest of it when it is a chain. It returns false, leaving pk as it was, when it
// cannot: IP options (the vRouter does not rewrite them per fragment), too many
// fragments, an offset that would overflow, or not enough frames.
func (w *Worker) fragment4(in *Iface, pk *pmd.Pkt, tun *encap.Tunnel, l2 int) bool {
	d := w.pool.Data(pk)
	if len(d) < l2+20 {
		return false
	}
	ip := d[l2:]
	tl := int(binary.BigEndian.Uint16(ip[2:]))
	frag := binary.BigEndian.Uint16(ip[6:])
	if ip[0] != 0x45 || frag&0x4000 != 0 || tl <= 20 || tl > len(ip)+w.segBytes {
		return false
	}
	// Each fragment's data is a multiple of 8 bytes, but the last (§3.1, Fragment
	// Offset), and fits both the tunnel and one frame.
	room := min(tun.PayloadMTU()-l2, w.pool.FrameSize()-w.pool.Headroom()-l2) - 20
	chunk := room &^ 7
	plen := tl - 20
	if chunk < 8 || (plen+chunk-1)/chunk > maxFragments {
		return false
	}
	base := int(frag&0x1fff) * 8 // the packet may be a fragment itself
	if base+plen > 0xffff {
		return false // its data would end past the largest offset a fragment can carry
	}
	n := (plen + chunk - 1) / chunk
	f := w.frags[:n]
	if got := w.cache.Alloc(f); got != n {
		w.cache.Free(f[:got]) // a short allocation gives back what it got
		return false
	}
	for k := range f {
		off := k * chunk
		size := min(chunk, plen-off)
		fr := &f[k]
		fr.Flags = 0
		w.pool.Append(fr, l2+20+size)
		o := w.pool.Data(fr)
		copy(o, d[:l2+20])
		h := o[l2 : l2+20]
		binary.BigEndian.PutUint16(h[2:], uint16(20+size))
		ff := uint16((base+off)/8) | frag&0x2000 // the original's MF stays on its last part
		if k < n-1 {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], ff)
		binary.BigEndian.PutUint16(h[10:], 0)
		binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h))
		w.gather(o[l2+20:], d, l2+20+off)
	}
	// The fragments go on as packets of their own; the original is done.
	seg := w.seg
	w.seg = nil
	for k := range f {
		if err := tun.Encap(w.pool, &f[k]); err != nil {
			w.cache.Free(f[k:])
			in.stats[w.id].Drops[DropEncap].Add(uint64(n - k))
			break
		}
		w.queue(in, w.e.uplink, &f[k])
	}
	w.seg = seg
	in.stats[w.id].Fragmented.Add(1)
	if w.seg != nil {
		w.cache.Free(w.seg)
	} else {
		w.one[0] = pk.Frame
		w.cache.Put(w.one[:])
	}
	return true
}

// gather copies into dst the packet's bytes from off on: first is its first segment's
// data, and w.seg[1:] (when a chain) hold the rest.
func (w *Worker) gather(dst, first []byte, off int) {
	if off < len(first) {
		k := copy(dst, first[off:])
		dst, off = dst[k:], 0
	} else {
		off -= len(first)
	}
	for i := 1; i < len(w.seg) && len(dst) > 0; i++ {
		s := w.pool.Data(&w.seg[i])
		if off >= len(s) {
			off -= len(s)
			continue
		}
		k := copy(dst, s[off:])
		dst, off = dst[k:], 0
	}
}
