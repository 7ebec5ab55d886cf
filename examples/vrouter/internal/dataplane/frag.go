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
// rest of it when it is a chain. The first fragment carries the packet's options, the
// others those whose copied flag is set (RFC 791 §3.1 "Options"). A partial transport
// checksum (pmd.PktCsumPartial) is finished first. It returns false when it cannot:
// malformed options, too many fragments, an offset that would overflow, a partial
// checksum it cannot finish (a chain, a fragment, not TCP or UDP), or not enough
// frames.
func (w *Worker) fragment4(in *Iface, pk *pmd.Pkt, tun *encap.Tunnel, l2 int) bool {
	d := w.pool.Data(pk)
	if len(d) < l2+20 {
		return false
	}
	ip := d[l2:]
	ihl := int(ip[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(ip[2:]))
	frag := binary.BigEndian.Uint16(ip[6:])
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl || frag&0x4000 != 0 || tl <= ihl || tl > len(ip)+w.segBytes {
		return false
	}
	// The header of the fragments after the first: the fixed part and the copied
	// options, padded with end-of-list bytes to a multiple of 4.
	var later [60]byte
	copy(later[:20], ip[:20])
	hl := 20
	for o := ip[20:ihl]; len(o) > 0 && o[0] != 0; { // up to end of list
		if o[0] == 1 { // no operation: one byte, not copied
			o = o[1:]
			continue
		}
		if len(o) < 2 || o[1] < 2 || int(o[1]) > len(o) {
			return false
		}
		if o[0]&0x80 != 0 {
			hl += copy(later[hl:], o[:o[1]])
		}
		o = o[o[1]:]
	}
	hl = (hl + 3) &^ 3
	later[0] = 0x40 | byte(hl/4)
	// Each fragment's data is a multiple of 8 bytes, but the last (§3.1, Fragment
	// Offset), and fits both the tunnel and one frame with its header.
	room := min(tun.PayloadMTU()-l2, w.pool.FrameSize()-w.pool.Headroom()-l2)
	chunk0, chunk := (room-ihl)&^7, (room-hl)&^7
	plen := tl - ihl
	if chunk0 < 8 || chunk < 8 {
		return false
	}
	n := 1
	if plen > chunk0 {
		n += (plen - chunk0 + chunk - 1) / chunk
	}
	if n > maxFragments {
		return false
	}
	base := int(frag&0x1fff) * 8 // the packet may be a fragment itself
	if base+plen > 0xffff {
		return false // its data would end past the largest offset a fragment can carry
	}
	if pk.Flags&pmd.PktCsumPartial != 0 {
		// A transport checksum a virtio driver left for the device to finish: no
		// device can once the packet is split, so it is finished here, over the
		// packet in one piece (a chain or a fragment cannot be).
		if w.seg != nil || frag&0x3fff != 0 || !encap.FinishChecksum(ip[:tl]) {
			return false
		}
		pk.Flags &^= pmd.PktCsumPartial
	}
	f := w.frags[:n]
	if got := w.cache.Alloc(f); got != n {
		w.cache.Free(f[:got]) // a short allocation gives back what it got
		return false
	}
	for k := range f {
		off, size, hdr := 0, min(chunk0, plen), ip[:ihl]
		if k > 0 {
			off = chunk0 + (k-1)*chunk
			size, hdr = min(chunk, plen-off), later[:hl]
		}
		fr := &f[k]
		fr.Flags = 0
		w.pool.Append(fr, l2+len(hdr)+size)
		o := w.pool.Data(fr)
		copy(o, d[:l2])
		h := o[l2 : l2+len(hdr)]
		copy(h, hdr)
		binary.BigEndian.PutUint16(h[2:], uint16(len(hdr)+size))
		ff := uint16((base+off)/8) | frag&0x2000 // the original's MF stays on its last part
		if k < n-1 {
			ff |= 0x2000
		}
		binary.BigEndian.PutUint16(h[6:], ff)
		binary.BigEndian.PutUint16(h[10:], 0)
		binary.BigEndian.PutUint16(h[10:], ipv4Checksum(h))
		w.gather(o[l2+len(hdr):], d, l2+ihl+off)
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
