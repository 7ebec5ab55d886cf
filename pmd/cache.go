package pmd

// Cache is a per-worker stack of free frames in front of a Pool's shared free list, like
// a DPDK mempool's per-lcore cache: a worker takes and returns frames here without
// atomics, and the cache refills from or spills to the shared list in bulk.
//
// A Cache is owned by one goroutine and is not safe for concurrent use. Flush it before
// the worker stops so its frames return to the pool.
type Cache struct {
	pool  *Pool
	stack []Frame // free frames; top at the end
	size  int     // target fill after a refill or spill
	// Exhausted counts Get calls that came back short.
	exhausted uint64
}

// NewCache returns an empty cache holding about size frames (0 means
// DefaultCacheSize). It keeps up to twice that before spilling. The size is reduced
// to (Frames-1)/2 when the pool is too small for it (as DPDK refuses a mempool cache
// whose flush threshold exceeds the pool), so that the cache can never hold every
// frame of the pool.
func (p *Pool) NewCache(size int) *Cache {
	if size <= 0 {
		size = DefaultCacheSize
	}
	// A cache spills only when a Put finds it full. Were its capacity, twice the
	// size, as large as the pool, the cache a port frees sent frames into could end
	// up holding all of them with no Put left to make it spill, and the port's Rx
	// cache (or any other) would find the pool empty for ever. Keeping the capacity
	// below the pool's frames leaves at least one frame outside it; the floor of 1
	// matters only for pools of one or two frames.
	if limit := max((int(p.n)-1)/2, 1); size > limit {
		size = limit
	}
	return &Cache{pool: p, stack: make([]Frame, 0, 2*size), size: size}
}

// Pool returns the pool the cache draws from.
func (c *Cache) Pool() *Pool { return c.pool }

// Len returns how many free frames the cache holds.
func (c *Cache) Len() int { return len(c.stack) }

// Get takes up to len(dst) frames and returns how many it took; fewer than asked means
// the pool is exhausted, which is counted.
func (c *Cache) Get(dst []Frame) int {
	want := len(dst)
	if len(c.stack) < want {
		c.refill(want)
	}
	n := min(want, len(c.stack))
	top := len(c.stack) - n
	copy(dst, c.stack[top:])
	c.stack = c.stack[:top]
	if n < want {
		// More than the cache can hold, or the pool is low: take the rest directly.
		n += c.pool.free.Dequeue(dst[n:])
	}
	st := c.pool.state
	for _, f := range dst[:n] {
		st[f] = frameInUse
	}
	if n < want {
		c.exhausted++
		c.pool.exhausted.Add(1)
	}
	return n
}

// refill tops the stack up to size+want frames, within its capacity.
func (c *Cache) refill(want int) {
	have := len(c.stack)
	room := cap(c.stack) - have
	n := min(c.size+want-have, room)
	if n <= 0 {
		return
	}
	got := c.pool.free.Dequeue(c.stack[have : have+n])
	c.stack = c.stack[:have+got]
}

// Put returns frames to the cache, spilling to the pool in bulk when it grows past
// twice its size. Double and foreign frees are refused and counted in the pool's
// BadFrees, as far as the pool can see them (see Pool).
func (c *Cache) Put(src []Frame) {
	st, n := c.pool.state, c.pool.n
	for len(src) > 0 {
		if len(c.stack) == cap(c.stack) {
			c.spill()
		}
		k := min(cap(c.stack)-len(c.stack), len(src))
		i := 0
		for ; i < k; i++ {
			f := src[i]
			if uint32(f) >= n || st[f] != frameInUse {
				break
			}
			st[f] = frameFree
		}
		c.stack = append(c.stack, src[:i]...)
		if i < k {
			c.pool.badFrees.Add(1) // src[i] is a double or foreign free: skip it
			i++
		}
		src = src[i:]
	}
}

// spill moves everything above size back to the shared list, keeping the most recently
// freed frames (warm in cache) out of it: the bottom of the stack goes.
func (c *Cache) spill() {
	n := len(c.stack) - c.size
	if n <= 0 {
		return
	}
	c.pool.putRun(c.stack[:n])
	c.stack = c.stack[:copy(c.stack, c.stack[n:])]
}

// Alloc fills pkts with fresh frames, Off at the pool's headroom and Len 0, and
// returns how many it filled.
func (c *Cache) Alloc(pkts []Pkt) int {
	var buf [64]Frame
	done := 0
	for done < len(pkts) {
		k := min(len(buf), len(pkts)-done)
		got := c.Get(buf[:k])
		for i, f := range buf[:got] {
			pkts[done+i] = Pkt{Frame: f, Off: uint16(c.pool.headroom)}
		}
		done += got
		if got < k {
			break
		}
	}
	return done
}

// Free returns the frames of pkts to the cache.
func (c *Cache) Free(pkts []Pkt) {
	st, n := c.pool.state, c.pool.n
	for i := range pkts {
		f := pkts[i].Frame
		if uint32(f) >= n || st[f] != frameInUse {
			c.pool.badFrees.Add(1)
			continue
		}
		st[f] = frameFree
		if len(c.stack) == cap(c.stack) {
			c.spill()
		}
		c.stack = append(c.stack, f)
	}
}

// Flush returns every frame the cache holds to the pool.
func (c *Cache) Flush() {
	c.pool.putRun(c.stack)
	c.stack = c.stack[:0]
}

// Exhausted returns how many Get calls on this cache came back short.
func (c *Cache) Exhausted() uint64 { return c.exhausted }
