package route

// Table entry encoding (uint32), shared by both families:
//
//	bit 31      ext: bits 0..30 index a 256-entry group in the chunk's pool
//	bits 23..30 depth+1 of the prefix that set the entry (0: no route)
//	bits 0..22  next-hop id
//
// A plain entry's low 23 bits are the lookup result, so "no route" reads 0.
const (
	extBit     = 1 << 31
	nhMask     = 1<<23 - 1
	depthShift = 23
)

func mkEntry(depth int, nh NextHopID) uint32 { return uint32(depth+1)<<depthShift | uint32(nh) }

// entDepth is the prefix length behind a plain entry, -1 for "no route".
func entDepth(e uint32) int { return int(e>>depthShift) - 1 }

// chunk is the leaf block of both tries: a directly indexed table (tbl) for
// the bits just below the directory (IPv4 bits 12..23, IPv6 bits 16..23) and
// a pool of 256-entry groups, one per further 8 bits, linked by ext entries.
//
// A chunk reachable from a published root is immutable. The writer copies a
// chunk before its first change in a batch (own); the copy shares the pool's
// backing array, into which the writer only appends, so groups an old reader
// can reach are never written. Replaced groups are counted as garbage and
// dropped when the pool is compacted into a new array; the Go garbage
// collector frees old arrays and chunks once no reader holds a root that
// reaches them. That is the reclamation rule: nothing reachable from a root
// is ever reused, so no reader can observe reuse.
type chunk struct {
	tbl  []uint32
	pool []uint32 // groups of 256 entries

	gen      uint64 // writer batch that owns this copy; shared chunks never match
	privFrom int    // groups >= privFrom were created in batch gen (writable)
	live     int    // reachable groups
	garbage  int    // unreachable groups still in pool
	shared   bool   // uniform chunk shared by many directory slots; read-only
}

// op is one route change pushed into entries: an insert overwrites entries
// set by prefixes no longer than depth; a delete replaces entries set by the
// deleted prefix (exactly depth) with the covering route's entry.
type op struct {
	del   bool
	depth int
	val   uint32
}

func (o *op) match(e uint32) bool {
	if o.del {
		return entDepth(e) == o.depth
	}
	return entDepth(e) <= o.depth
}

func (c *chunk) own(gen uint64) *chunk {
	if c.gen == gen && !c.shared {
		return c
	}
	n := newChunk(len(c.tbl))
	copy(n.tbl, c.tbl)
	*n = chunk{
		tbl:      n.tbl,
		pool:     c.pool,
		gen:      gen,
		privFrom: len(c.pool) >> 8,
		live:     c.live,
		garbage:  c.garbage,
	}
	return n
}

func (c *chunk) at(g, i int) uint32 {
	if g < 0 {
		return c.tbl[i]
	}
	return c.pool[g<<8+i]
}

func (c *chunk) set(g, i int, v uint32) {
	if g < 0 {
		c.tbl[i] = v
	} else {
		c.pool[g<<8+i] = v
	}
}

// maxGroups bounds a chunk's groups: lookups form a group's pool offset as
// index<<8 in 32 bits. Reaching it takes 16 GiB of groups in one chunk.
const maxGroups = 1 << 24

// newGroup appends a group filled with v.
func (c *chunk) newGroup(v uint32) int {
	g := len(c.pool) >> 8
	if g >= maxGroups {
		panic("route: group index overflow")
	}
	for range 256 {
		c.pool = append(c.pool, v)
	}
	c.live++
	return g
}

// cowGroup returns a writable copy of group g.
func (c *chunk) cowGroup(g int) int {
	if g >= c.privFrom {
		return g
	}
	n := len(c.pool) >> 8
	if n >= maxGroups {
		panic("route: group index overflow")
	}
	c.pool = append(c.pool, c.pool[g<<8:][:256]...)
	c.garbage++
	return n
}

// collapse returns the plain entry that can replace group g (whose entries
// cover bits [start,start+8)), or 0,false if the group must stay.
func (c *chunk) collapse(g, start int) (uint32, bool) {
	grp := c.pool[g<<8:][:256]
	v := grp[0]
	if v&extBit != 0 || entDepth(v) > start {
		return 0, false
	}
	for _, e := range grp[1:] {
		if e != v {
			return 0, false
		}
	}
	c.live--
	c.garbage++
	return v, true
}

// expand applies o to entries [lo,hi) of block g (-1: tbl). childStart is the
// first bit indexed by groups hanging off this block.
func (c *chunk) expand(g, lo, hi, childStart int, o *op) {
	for i := lo; i < hi; i++ {
		e := c.at(g, i)
		if e&extBit != 0 {
			if !c.affects(int(e&^extBit), o) {
				continue
			}
			ng := c.cowGroup(int(e &^ extBit))
			c.expand(ng, 0, 256, childStart+8, o)
			ne := extBit | uint32(ng)
			if v, ok := c.collapse(ng, childStart); ok {
				ne = v
			}
			c.set(g, i, ne)
		} else if o.match(e) {
			c.set(g, i, o.val)
		}
	}
}

// affects reports whether o would change any entry under group g.
func (c *chunk) affects(g int, o *op) bool {
	for _, e := range c.pool[g<<8:][:256] {
		if e&extBit != 0 {
			if c.affects(int(e&^extBit), o) {
				return true
			}
		} else if o.match(e) && e != o.val {
			return true
		}
	}
	return false
}

// descend applies o for prefix key/plen to block g whose entries index
// bits [start, start+width).
func (c *chunk) descend(g, start, width int, key *[16]byte, plen int, o *op) {
	idx := bitsAt(key, start, width)
	end := start + width
	if plen <= end {
		n := 1 << (end - plen)
		lo := idx &^ (n - 1)
		c.expand(g, lo, lo+n, end, o)
		return
	}
	e := c.at(g, idx)
	var child int
	if e&extBit != 0 {
		child = c.cowGroup(int(e &^ extBit))
	} else {
		if o.del {
			return // nothing below: the prefix was never pushed here
		}
		child = c.newGroup(e)
	}
	c.descend(child, end, 8, key, plen, o)
	ne := extBit | uint32(child)
	if v, ok := c.collapse(child, end); ok {
		ne = v
	}
	c.set(g, idx, ne)
}

// uniform reports whether the chunk holds a single plain value.
func (c *chunk) uniform() (uint32, bool) {
	if c.live != 0 {
		return 0, false
	}
	v := c.tbl[0]
	for _, e := range c.tbl {
		if e != v {
			return 0, false
		}
	}
	return v, true
}

// compact rebuilds the pool without garbage when garbage dominates: at least as
// many dead groups as live ones, and 64 or more (at most 64 KiB left; the
// minimum keeps a small chunk whose groups are replaced often from being copied
// on nearly every change).
func (c *chunk) compact() {
	if c.garbage < 64 || c.garbage < c.live {
		return
	}
	np := make([]uint32, 0, c.live<<8+c.live<<7) // headroom for later appends
	var walk func(g int) int
	walk = func(g int) int {
		n := len(np) >> 8
		np = append(np, c.pool[g<<8:][:256]...)
		for i := 0; i < 256; i++ {
			if e := np[n<<8+i]; e&extBit != 0 {
				np[n<<8+i] = extBit | uint32(walk(int(e&^extBit)))
			}
		}
		return n
	}
	for i, e := range c.tbl {
		if e&extBit != 0 {
			c.tbl[i] = extBit | uint32(walk(int(e&^extBit)))
		}
	}
	c.pool = np
	c.garbage = 0
	c.privFrom = 0
}

func (c *chunk) bytes() int { return 4*len(c.tbl) + 4*cap(c.pool) + 80 }

// bitsAt returns width bits of key starting at bit start (MSB first).
func bitsAt(key *[16]byte, start, width int) int {
	// read 32 bits big-endian from the byte containing start
	b := start >> 3
	var w uint64
	for i := 0; i < 5; i++ {
		w <<= 8
		if b+i < 16 {
			w |= uint64(key[b+i])
		}
	}
	shift := 40 - (start & 7) - width
	return int(w>>shift) & (1<<width - 1)
}

// chunk4 is the memory of an IPv4 chunk: the header with the tbl right after
// it, so that a lookup finds an entry from the chunk pointer alone instead of
// loading the header's slice first (one dependent load fewer per address;
// see tbl4Of).
type chunk4 struct {
	chunk
	tbl4 [1 << tbl4Bits]uint32
}

// newChunk returns a chunk with an n-entry tbl: IPv4 chunks (4096) are laid
// out as chunk4, and only they.
func newChunk(n int) *chunk {
	if n == 1<<tbl4Bits {
		c := new(chunk4)
		c.tbl = c.tbl4[:]
		return &c.chunk
	}
	return &chunk{tbl: make([]uint32, n)}
}
