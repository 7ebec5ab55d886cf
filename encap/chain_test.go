package encap

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// loadChain copies b into a chain of frames from pool, the segments cut at cuts (the
// first segment's length, then the next's, ...; the last takes the rest).
func loadChain(t testing.TB, pool *pmd.Pool, c *pmd.Cache, b []byte, cuts []int) []pmd.Pkt {
	t.Helper()
	var chain []pmd.Pkt
	for i := 0; len(b) > 0; i++ {
		var pk [1]pmd.Pkt
		if c.Alloc(pk[:]) != 1 {
			t.Fatal("alloc")
		}
		n := len(b)
		if i < len(cuts) && cuts[i] < n {
			n = cuts[i]
		}
		n = min(n, pool.FrameSize()-int(pk[0].Off))
		if !pool.Append(&pk[0], n) {
			t.Fatal("append")
		}
		copy(pool.Data(&pk[0]), b[:n])
		b = b[n:]
		if len(b) > 0 {
			pk[0].Flags |= pmd.PktMore
		}
		chain = append(chain, pk[0])
	}
	return chain
}

func chainData(pool *pmd.Pool, chain []pmd.Pkt) []byte {
	var b []byte
	for i := range chain {
		b = append(b, pool.Data(&chain[i])...)
	}
	return b
}

// bigInner is a 9000-byte payload of the shape v carries.
func bigInner(v variant) []byte {
	v6 := innerVer(v) == 6
	if v.opts.Type == VXLAN || v.opts.InnerEthernet {
		return innerEth(v6, 9000, 0)
	}
	return mkInnerIP(v6, 9000, 40, 0x28)
}

// TestChainMatchesLinear encapsulates a jumbo payload held in one large frame and the
// same payload cut into a chain of small frames, at odd and even places: the chain
// must carry the very bytes the single frame does (lengths, checksums and all), and
// decapsulate back to the payload.
func TestChainMatchesLinear(t *testing.T) {
	big, err := pmd.NewPool(pmd.PoolOptions{Frames: 8, FrameSize: 16384, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	small := newPool(t)
	bc, sc := big.NewCache(0), small.NewCache(0)
	defer bc.Flush()
	defer sc.Flush()
	for _, v := range variants() {
		for _, cuts := range [][]int{{1792}, {1001, 777, 1}, {300, 1000, 2000}} {
			inner := bigInner(v)
			t1, err := NewTunnel(v.opts)
			if err != nil {
				t.Fatal(err)
			}
			t2, _ := NewTunnel(v.opts) // the same IPv4 IDs as t1
			lin := load(t, big, bc, inner)
			chain := loadChain(t, small, sc, inner, cuts)
			if err := t1.Encap(big, &lin); err != nil {
				t.Fatalf("%s: linear: %v", v.name, err)
			}
			if err := t2.EncapChain(small, chain); err != nil {
				t.Fatalf("%s: chain: %v", v.name, err)
			}
			if !bytes.Equal(chainData(small, chain), big.Data(&lin)) {
				t.Fatalf("%s cut %v: the chain's frame differs from the linear one", v.name, cuts)
			}
			d := NewDecapper(DecapOptions{Local: []netip.Addr{v.opts.Dst}, VerifyUDPChecksum: true, MPLSPayloadEthernet: v.opts.InnerEthernet})
			var rl, rc Result
			if why := d.Decap(big, &lin, &rl); why != OK {
				t.Fatalf("%s: linear decap: %v", v.name, why)
			}
			if why := d.DecapChain(small, chain, &rc); why != OK {
				t.Fatalf("%s cut %v: chain decap: %v", v.name, cuts, why)
			}
			if rl != rc {
				t.Fatalf("%s: results differ:\n%+v\n%+v", v.name, rl, rc)
			}
			if !bytes.Equal(chainData(small, chain), big.Data(&lin)) {
				t.Fatalf("%s: inner packets differ after decap", v.name)
			}
			bc.Free([]pmd.Pkt{lin})
			sc.Free(chain)
		}
	}
}

func TestChainErrors(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(0)
	defer c.Flush()
	v := findVariant(t, "vxlan/outer6")
	tun, _ := NewTunnel(v.opts)
	chain := loadChain(t, pool, c, bigInner(v), nil)
	defer c.Free(chain)
	if err := tun.Encap(pool, &chain[0]); err != ErrChain {
		t.Fatalf("Encap of a chain's head: %v, want ErrChain", err)
	}
	chain[len(chain)-1].Flags |= pmd.PktMore
	if err := tun.EncapChain(pool, chain); err != ErrChain {
		t.Fatalf("unterminated chain: %v, want ErrChain", err)
	}
	chain[len(chain)-1].Flags &^= pmd.PktMore
	chain[0].Flags |= pmd.PktCsumPartial
	if err := tun.EncapChain(pool, chain); err != ErrPartialCsum {
		t.Fatalf("partial checksum on a chain: %v, want ErrPartialCsum", err)
	}
	chain[0].Flags &^= pmd.PktCsumPartial
	o := v.opts
	o.MTU = 8000
	small, _ := NewTunnel(o)
	if err := small.EncapChain(pool, chain); err != ErrMTU {
		t.Fatalf("chain over the MTU: %v, want ErrMTU", err)
	}
	if err := tun.EncapChain(pool, nil); err != ErrChain {
		t.Fatalf("empty chain: %v", err)
	}

	// Decap: a corrupted byte in a later segment fails the UDP checksum; bytes after
	// the datagram are refused.
	if err := tun.EncapChain(pool, chain); err != nil {
		t.Fatal(err)
	}
	d := NewDecapper(DecapOptions{VerifyUDPChecksum: true})
	var r Result
	last := pool.Data(&chain[len(chain)-1])
	last[len(last)/2] ^= 0x40
	if why := d.DecapChain(pool, chain, &r); why != DropBadChecksum {
		t.Fatalf("corrupted tail: %v, want %v", why, DropBadChecksum)
	}
	last[len(last)/2] ^= 0x40
	chain[len(chain)-1].Len--
	if why := d.DecapChain(pool, chain, &r); why != DropTruncated {
		t.Fatalf("short chain: %v, want %v", why, DropTruncated)
	}
	chain[len(chain)-1].Len += 2
	if why := d.DecapChain(pool, chain, &r); why != DropBadHeader {
		t.Fatalf("chain with trailing bytes: %v, want %v", why, DropBadHeader)
	}
	chain[len(chain)-1].Len--
	if why := d.DecapChain(pool, chain, &r); why != OK {
		t.Fatalf("restored chain: %v", why)
	}
}

// FuzzDecapChain cuts a frame into a chain at fuzzed places: DecapChain must agree
// with Decap of the frame in one piece, but for the two refusals chains add (outer
// headers not all in the first segment, bytes after the datagram).
func FuzzDecapChain(f *testing.F) {
	big, _ := pmd.NewPool(pmd.PoolOptions{Frames: 4, FrameSize: 16384, Huge: pmd.HugeNever})
	small, _ := pmd.NewPool(pmd.PoolOptions{Frames: 64, Huge: pmd.HugeNever})
	bc, sc := big.NewCache(0), small.NewCache(0)
	for _, v := range variants() {
		tun, _ := NewTunnel(v.opts)
		pk := load(f, big, bc, bigInner(v)[:3000+len(v.name)])
		if tun.Encap(big, &pk) == nil {
			f.Add(append([]byte(nil), big.Data(&pk)...), uint16(1500), uint16(999), v.opts.Src.Is4())
		}
		bc.Free([]pmd.Pkt{pk})
	}
	f.Fuzz(func(t *testing.T, frame []byte, cut1, cut2 uint16, verify bool) {
		if len(frame) > 12000 {
			return
		}
		d := NewDecapper(DecapOptions{VerifyUDPChecksum: verify, ECN: true})
		lin := load(t, big, bc, frame)
		defer bc.Free([]pmd.Pkt{lin})
		chain := loadChain(t, small, sc, frame, []int{int(cut1%2048) + 1, int(cut2%2048) + 1})
		defer sc.Free(chain)
		var rl, rc Result
		wl := d.Decap(big, &lin, &rl)
		wc := d.DecapChain(small, chain, &rc)
		switch {
		case wc == OK:
			if wl != OK || rl != rc || !bytes.Equal(chainData(small, chain), big.Data(&lin)) {
				t.Fatalf("chain decapsulated (%+v) where the frame gave %v (%+v)", rc, wl, rl)
			}
		case wc == DropTruncated || wc == DropBadHeader:
			// Chains refuse more; fine as long as the frame is unchanged.
		case wc != wl:
			t.Fatalf("chain: %v, frame: %v", wc, wl)
		}
		if wc != OK && !bytes.Equal(chainData(small, chain), frame) {
			t.Fatal("a refused chain was changed")
		}
	})
}

// TestPayloadMTU: PayloadMTU is exactly the longest payload Encap takes.
func TestPayloadMTU(t *testing.T) {
	pool, err := pmd.NewPool(pmd.PoolOptions{Frames: 8, FrameSize: 16384, Huge: pmd.HugeNever})
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	c := pool.NewCache(0)
	defer c.Flush()
	for _, v := range variants() {
		o := v.opts
		o.MTU = 1500
		tun, err := NewTunnel(o)
		if err != nil {
			t.Fatal(err)
		}
		m := tun.PayloadMTU()
		for _, n := range []int{m, m + 1} {
			inner := bigInner(v)[:n]
			pk := load(t, pool, c, inner)
			err := tun.Encap(pool, &pk)
			c.Free([]pmd.Pkt{pk})
			if (n == m) != (err == nil) {
				t.Fatalf("%s: PayloadMTU %d, a %d-byte payload gives %v", v.name, m, n, err)
			}
		}
	}
}

// TestEncapChainShortHead encapsulates chains whose first segment is shorter than
// the inner headers Encap reads (DPDK builds such chains: a header-only segment
// before the payload's, as its fragmentation and multicast code do): the result must
// be the one the payload in one piece gets. EncapChain read the inner headers from
// the first segment alone, so a plain GRE IPv6 payload cut at 20 bytes went out with
// protocol type 0x0800, and TTL, DSCP and the flow hash came from the defaults.
func TestEncapChainShortHead(t *testing.T) {
	pool := newPool(t)
	c := pool.NewCache(0)
	defer c.Flush()
	for _, v := range variants() {
		for _, cut := range []int{1, 8, 13, 14, 20, 21, 39, 40, 43, 47, 54, 60} {
			t1 := mustTunnel(t, v.opts)
			t2 := mustTunnel(t, v.opts) // the same IPv4 IDs as t1
			lin := load(t, pool, c, v.inner)
			chain := loadChain(t, pool, c, v.inner, []int{cut, 17})
			if err := t1.Encap(pool, &lin); err != nil {
				t.Fatalf("%s: linear: %v", v.name, err)
			}
			err := t2.EncapChain(pool, chain)
			switch {
			case v.opts.InnerVLAN != 0 && cut < 14:
				// The tag goes into the first segment's inner Ethernet header.
				if err != ErrNotTaggable || !bytes.Equal(chainData(pool, chain), v.inner) {
					t.Fatalf("%s cut %d: %v, want ErrNotTaggable and the chain unchanged", v.name, cut, err)
				}
			case err != nil:
				t.Fatalf("%s cut %d: chain: %v", v.name, cut, err)
			case !bytes.Equal(chainData(pool, chain), pool.Data(&lin)):
				t.Fatalf("%s cut %d: the chain's frame differs from the linear one:\n% x\n% x", v.name, cut,
					chainData(pool, chain)[:t1.HeaderLen()], pool.Data(&lin)[:t1.HeaderLen()])
			case chain[0].Hash != lin.Hash:
				t.Fatalf("%s cut %d: flow hash %#x, linear %#x", v.name, cut, chain[0].Hash, lin.Hash)
			}
			c.Free([]pmd.Pkt{lin})
			c.Free(chain)
		}
	}
}
