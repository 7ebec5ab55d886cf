package route

import (
	"fmt"
	"iter"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Options configures a Table. The zero value is valid.
type Options struct {
	// MaxVRFs bounds VRF ids to [0, MaxVRFs). Zero means 4096. At most 1<<20.
	// Each possible VRF costs 16 bytes up front; a VRF's tables are
	// allocated on its first route.
	MaxVRFs int
	// MaxNextHops bounds next-hop ids to [1, MaxNextHops). Zero means 65536.
	// At most MaxNextHopID+1. Costs 8 bytes per possible id up front.
	MaxNextHops int
	// ECMPBuckets is the size of each ECMP group's bucket table, a power of
	// two, and the most members a group may have. Zero means DefaultECMPBuckets.
	ECMPBuckets int
}

// DefaultECMPBuckets is Options.ECMPBuckets when left zero.
const DefaultECMPBuckets = 256

// Validate reports whether the options are usable.
func (o *Options) Validate() error {
	if o.MaxVRFs < 0 || o.MaxVRFs > 1<<20 {
		return fmt.Errorf("%w: MaxVRFs %d", ErrBadOptions, o.MaxVRFs)
	}
	if o.MaxNextHops < 0 || o.MaxNextHops > MaxNextHopID+1 {
		return fmt.Errorf("%w: MaxNextHops %d", ErrBadOptions, o.MaxNextHops)
	}
	if b := o.ECMPBuckets; b < 0 || b > 1<<16 || b&(b-1) != 0 {
		return fmt.Errorf("%w: ECMPBuckets %d not a power of two", ErrBadOptions, b)
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.MaxVRFs == 0 {
		o.MaxVRFs = 4096
	}
	if o.MaxNextHops == 0 {
		o.MaxNextHops = 65536
	}
	if o.ECMPBuckets == 0 {
		o.ECMPBuckets = DefaultECMPBuckets
	}
	return o
}

type vrfSlot struct {
	v4 atomic.Pointer[root4]
	v6 atomic.Pointer[root6]
}

type vrfState struct {
	rib     [2]map[netip.Prefix]NextHopID
	ribPeak [2]int // most routes in rib since the map was made
	w       [2]*famWriter
	routes  [2]int
}

// shrinkRIB rebuilds a family's RIB map once it holds under a quarter of
// its peak: a Go map keeps the storage of its peak size, so a VRF whose
// routes were withdrawn would keep ~60 bytes for every route it once had,
// invisible in Stats. Getting there took three times the rebuild's work in
// deletes.
func (st *vrfState) shrinkRIB(f int) {
	n := len(st.rib[f])
	st.ribPeak[f] = max(st.ribPeak[f], n)
	if st.ribPeak[f] < 1024 || n >= st.ribPeak[f]/4 {
		return
	}
	m := make(map[netip.Prefix]NextHopID, n)
	for p, nh := range st.rib[f] {
		m[p] = nh
	}
	st.rib[f] = m
	st.ribPeak[f] = n
}

// Table is a set of per-VRF IPv4 and IPv6 forwarding tables and the next
// hops they point to.
//
// Lookups (Lookup4, Lookup6, LookupBatch4, ...) and NextHop are lock-free,
// never block and never allocate; call them from any number of goroutines.
// Control-plane methods (Insert, Delete, Apply, next-hop changes) are safe
// for concurrent use too but are serialised by an internal mutex: there is
// one writer at a time. A lookup sees each VRF/family either entirely before
// or entirely after an Apply.
type Table struct {
	vrfs []vrfSlot
	nhs  []atomic.Pointer[NextHop]

	mu      sync.Mutex
	opt     Options
	state   map[uint32]*vrfState
	nhRef   []int32
	nhUsed  []bool
	nhFree  []NextHopID
	nhNext  NextHopID
	nhCount int
	gen     uint64
}

// New returns an empty table.
func New(opt Options) (*Table, error) {
	if err := opt.Validate(); err != nil {
		return nil, err
	}
	opt = opt.withDefaults()
	return &Table{
		vrfs:   make([]vrfSlot, opt.MaxVRFs),
		nhs:    make([]atomic.Pointer[NextHop], opt.MaxNextHops),
		opt:    opt,
		state:  map[uint32]*vrfState{},
		nhRef:  make([]int32, opt.MaxNextHops),
		nhUsed: make([]bool, opt.MaxNextHops),
		nhNext: 1,
	}, nil
}

// Lookup4 returns the next hop of the longest prefix in vrf matching the
// IPv4 address a (host byte order, as read big-endian from a header).
func (t *Table) Lookup4(vrf uint32, a uint32) NextHopID {
	if vrf >= uint32(len(t.vrfs)) {
		return NoRoute
	}
	r := t.vrfs[vrf].v4.Load()
	if r == nil {
		return NoRoute
	}
	return r.lookup(a)
}

// LookupBatch4 looks up addrs[i] into out[i] for i < min(len(addrs), len(out))
// and returns that count. Each lookup returns the match of the table between two
// batches (Apply); different addresses of one call may straddle a concurrent batch
// (see the package doc).
func (t *Table) LookupBatch4(vrf uint32, addrs []uint32, out []NextHopID) int {
	n := min(len(addrs), len(out))
	addrs, out = addrs[:n], out[:n]
	var r *root4
	if vrf < uint32(len(t.vrfs)) {
		r = t.vrfs[vrf].v4.Load()
	}
	if r == nil {
		clear(out)
		return n
	}
	if d := r.d; d != nil {
		for i, a := range addrs {
			out[i] = d.lookup(a)
		}
		return n
	}
	for i, a := range addrs {
		out[i] = r.lookup(a)
	}
	return n
}

// Lookup6 returns the next hop of the longest prefix in vrf matching the
// IPv6 address a (network byte order).
func (t *Table) Lookup6(vrf uint32, a *[16]byte) NextHopID {
	if vrf >= uint32(len(t.vrfs)) {
		return NoRoute
	}
	r := t.vrfs[vrf].v6.Load()
	if r == nil {
		return NoRoute
	}
	return r.lookup(a)
}

// LookupBatch6 is LookupBatch4 for IPv6 addresses.
func (t *Table) LookupBatch6(vrf uint32, addrs [][16]byte, out []NextHopID) int {
	n := min(len(addrs), len(out))
	addrs, out = addrs[:n], out[:n]
	var r *root6
	if vrf < uint32(len(t.vrfs)) {
		r = t.vrfs[vrf].v6.Load()
	}
	if r == nil {
		clear(out)
		return n
	}
	r.lookupBatch(addrs, out)
	return n
}

// Lookup is the netip form of Lookup4/Lookup6, for control-plane use.
func (t *Table) Lookup(vrf uint32, a netip.Addr) NextHopID {
	if a.Is4() {
		b := a.As4()
		return t.Lookup4(vrf, uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]))
	}
	if a.Is6() {
		b := a.As16()
		return t.Lookup6(vrf, &b)
	}
	return NoRoute
}

// NextHop returns the current next hop for id, or nil. The returned value
// is an immutable snapshot; it stays valid (and unchanged) forever.
func (t *Table) NextHop(id NextHopID) *NextHop {
	if uint64(id) >= uint64(len(t.nhs)) {
		return nil
	}
	return t.nhs[id].Load()
}

// AddNextHop stores a copy of nh and returns its id. Ids never used are handed
// out first, then freed ones, the longest free first: a reader still holding an
// id it looked up before the id was freed (see DeleteNextHop) finds nil for as
// long as possible rather than another next hop.
func (t *Table) AddNextHop(nh NextHop) (NextHopID, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var id NextHopID
	fresh := int(t.nhNext) < len(t.nhs)
	if fresh {
		id = t.nhNext
	} else if len(t.nhFree) > 0 {
		id = t.nhFree[0]
	} else {
		return NoRoute, ErrTableFull
	}
	if err := t.setNextHopLocked(id, nh, nil); err != nil {
		return NoRoute, err
	}
	if fresh {
		t.nhNext++
	} else {
		t.nhFree = t.nhFree[1:]
	}
	t.nhUsed[id] = true
	t.nhCount++
	return id, nil
}

// SetNextHop replaces next hop id in place: every route using it follows at
// once. For ECMP groups the bucket table changes minimally (resilient
// hashing): flows on members that stay keep their member unless it held
// more than its new share.
func (t *Table) SetNextHop(id NextHopID, nh NextHop) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.validID(id) {
		return ErrNoNextHop
	}
	return t.setNextHopLocked(id, nh, t.nhs[id].Load())
}

func (t *Table) validID(id NextHopID) bool {
	return id != NoRoute && uint64(id) < uint64(len(t.nhs)) && t.nhUsed[id]
}

func (t *Table) setNextHopLocked(id NextHopID, nh NextHop, old *NextHop) error {
	if err := nh.Validate(); err != nil {
		return err
	}
	n := nh
	n.buckets = nil
	n.Members = slices.Clone(nh.Members)
	if n.Kind == KindECMP {
		for _, m := range n.Members {
			if !t.validID(m) || m == id {
				return fmt.Errorf("%w: ECMP member %d", ErrNoNextHop, m)
			}
			if t.nhs[m].Load().Kind == KindECMP {
				return fmt.Errorf("%w: nested ECMP group %d", ErrBadNextHop, m)
			}
		}
		if len(n.Members) > t.opt.ECMPBuckets {
			return fmt.Errorf("%w: %d members exceed %d buckets", ErrBadNextHop, len(n.Members), t.opt.ECMPBuckets)
		}
		if old != nil && old.Kind != KindECMP && t.nhRef[id] > 0 {
			// turning a possible ECMP member into a group would nest groups
			for i := range t.nhs {
				if g := t.nhs[i].Load(); g != nil && g.Kind == KindECMP && slices.Contains(g.Members, id) {
					return fmt.Errorf("%w: %d is a member of ECMP group %d", ErrBadNextHop, id, i)
				}
			}
		}
		var ob []NextHopID
		if old != nil {
			ob = old.buckets
		}
		n.buckets = resilientBuckets(ob, n.Members, t.opt.ECMPBuckets)
		for _, m := range n.Members {
			t.nhRef[m]++
		}
	}
	if old != nil && old.Kind == KindECMP {
		for _, m := range old.Members {
			t.nhRef[m]--
		}
	}
	t.nhs[id].Store(&n) // release; pairs with the Load in NextHop
	return nil
}

// DeleteNextHop frees id. It fails with ErrNextHopInUse while routes or
// ECMP groups reference it. Lookups that raced with the last route's removal
// may still return it, so the dataplane must treat NextHop(id) returning nil
// as discard. AddNextHop hands a freed id out again only once every id never
// used and every id freed before it has been (MaxNextHops bounds how long a
// reader can find nil); a reader holding an id across that many AddNextHop
// calls would find the new next hop.
func (t *Table) DeleteNextHop(id NextHopID) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.validID(id) {
		return ErrNoNextHop
	}
	if t.nhRef[id] != 0 {
		return ErrNextHopInUse
	}
	old := t.nhs[id].Load()
	if old.Kind == KindECMP {
		for _, m := range old.Members {
			t.nhRef[m]--
		}
	}
	t.nhs[id].Store(nil)
	t.nhUsed[id] = false
	t.nhFree = append(t.nhFree, id)
	t.nhCount--
	return nil
}

// RefCount returns how many routes and ECMP groups reference id.
func (t *Table) RefCount(id NextHopID) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.validID(id) {
		return 0
	}
	return int(t.nhRef[id])
}

// Batch collects route changes for Apply. Its zero value is empty and
// ready; a Batch is owned by one goroutine.
type Batch struct {
	ops []batchOp
}

type batchOp struct {
	del    bool
	vrf    uint32
	prefix netip.Prefix
	nh     NextHopID
}

// Insert adds or replaces the route prefix → nh in vrf.
func (b *Batch) Insert(vrf uint32, prefix netip.Prefix, nh NextHopID) {
	b.ops = append(b.ops, batchOp{vrf: vrf, prefix: prefix, nh: nh})
}

// Delete removes the route for prefix in vrf.
func (b *Batch) Delete(vrf uint32, prefix netip.Prefix) {
	b.ops = append(b.ops, batchOp{del: true, vrf: vrf, prefix: prefix})
}

// Len is the number of queued changes.
func (b *Batch) Len() int { return len(b.ops) }

// Reset empties the batch, keeping its storage.
func (b *Batch) Reset() { b.ops = b.ops[:0] }

// Insert adds or replaces one route. It is Apply of a one-change batch.
func (t *Table) Insert(vrf uint32, prefix netip.Prefix, nh NextHopID) error {
	b := Batch{ops: []batchOp{{vrf: vrf, prefix: prefix, nh: nh}}}
	return t.Apply(&b)
}

// Delete removes one route; ErrNotFound if absent.
func (t *Table) Delete(vrf uint32, prefix netip.Prefix) error {
	b := Batch{ops: []batchOp{{del: true, vrf: vrf, prefix: prefix}}}
	return t.Apply(&b)
}

func fam(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// Apply validates every change of b, then applies them in order. If any
// change is invalid (bad VRF, prefix, unknown next hop, deleting an absent
// route), nothing is applied. Each VRF/family touched is published with a
// single atomic store, so lookups see all of b's changes to it or none.
// IPv4-mapped IPv6 prefixes are IPv6 routes; zones are rejected.
func (t *Table) Apply(b *Batch) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	// validate against the RIB plus the batch's own earlier changes
	pending := map[[2]any]bool{}
	for i := range b.ops {
		o := &b.ops[i]
		if o.vrf >= uint32(len(t.vrfs)) {
			return fmt.Errorf("%w: %d", ErrBadVRF, o.vrf)
		}
		p := o.prefix
		if !p.IsValid() || p.Addr().Zone() != "" || p != p.Masked() {
			return fmt.Errorf("%w: %v (must be valid and masked)", ErrBadPrefix, p)
		}
		k := [2]any{o.vrf, p}
		present, seen := pending[k]
		if !seen {
			if st := t.state[o.vrf]; st != nil {
				_, present = st.rib[fam(p)][p]
			}
		}
		if o.del {
			if !present {
				return fmt.Errorf("%w: vrf %d %v", ErrNotFound, o.vrf, p)
			}
		} else if !t.validID(o.nh) {
			return fmt.Errorf("%w: %d", ErrNoNextHop, o.nh)
		}
		pending[k] = !o.del
	}
	t.gen++
	type vf struct {
		vrf uint32
		f   int
	}
	r4 := map[uint32]bool{}
	r6 := map[uint32]bool{}
	var order []vf
	for i := range b.ops {
		o := &b.ops[i]
		f := fam(o.prefix)
		st := t.state[o.vrf]
		if st == nil {
			st = &vrfState{}
			t.state[o.vrf] = st
		}
		if st.rib[f] == nil {
			st.rib[f] = map[netip.Prefix]NextHopID{}
			st.w[f] = newFamWriter(f == 1)
		}
		w := st.w[f]
		w.gen = t.gen
		key := o.prefix.Addr().As16()
		plen := o.prefix.Bits()
		if f == 0 {
			key = [16]byte{}
			a4 := o.prefix.Addr().As4()
			copy(key[:], a4[:])
		}
		var op op
		if o.del {
			old := st.rib[f][o.prefix]
			delete(st.rib[f], o.prefix)
			t.nhRef[old]--
			st.routes[f]--
			op = op0(true, plen, t.covering(st.rib[f], o.prefix))
		} else {
			old, had := st.rib[f][o.prefix]
			if had {
				t.nhRef[old]--
			} else {
				st.routes[f]++
			}
			st.rib[f][o.prefix] = o.nh
			t.nhRef[o.nh]++
			op = op0(false, plen, mkEntry(plen, o.nh))
		}
		if f == 0 {
			if !r4[o.vrf] {
				r4[o.vrf] = true
				order = append(order, vf{o.vrf, 0})
			}
			if w.big4 {
				w.apply4(&key, plen, &op)
			}
		} else {
			if !r6[o.vrf] {
				r6[o.vrf] = true
				order = append(order, vf{o.vrf, 1})
			}
			w.apply6(&key, plen, &op)
		}
	}
	for _, x := range order {
		st := t.state[x.vrf]
		st.shrinkRIB(x.f)
		if x.f == 0 {
			t.publish4(x.vrf, st)
		} else {
			if r := st.w[1].publish6(); t.vrfs[x.vrf].v6.Load() != r {
				t.vrfs[x.vrf].v6.Store(r) // release; pairs with Load in lookups
			}
		}
	}
	return nil
}

// publish4 publishes a VRF's IPv4 routes after a batch: as a small list
// while the VRF has few routes, else through the directory writer (which
// was kept up to date by apply4 only while big4).
func (t *Table) publish4(vrf uint32, st *vrfState) {
	w := st.w[0]
	n := len(st.rib[0])
	slot := &t.vrfs[vrf].v4
	if w.big4 && n <= smallMin || !w.big4 && n <= smallMax {
		w.big4 = false
		w.pub4 = nil
		w.resetOverlays()
		// nothing published links the directory's uniform chunks now
		w.uni, w.uniMax = map[uint32]*chunk{}, 0
		small := make([]small4, 0, n)
		for p, nh := range st.rib[0] {
			a := p.Addr().As4()
			mask := uint32(0)
			if p.Bits() > 0 {
				mask = ^uint32(0) << (32 - p.Bits())
			}
			small = append(small, small4{addr: uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]), mask: mask, nh: nh})
		}
		slices.SortFunc(small, func(a, b small4) int {
			if a.mask != b.mask {
				if a.mask > b.mask {
					return -1
				}
				return 1
			}
			return int(int64(a.addr) - int64(b.addr))
		})
		if n == 0 {
			small = nil
		}
		slot.Store(&root4{small: small}) // release; pairs with Load in lookups
		return
	}
	if !w.big4 {
		// switch to the directory: rebuild from the RIB
		w.big4 = true
		w.pub4 = nil
		clear(w.ov)
		for p, nh := range st.rib[0] {
			var key [16]byte
			a := p.Addr().As4()
			copy(key[:], a[:])
			o := op0(false, p.Bits(), mkEntry(p.Bits(), nh))
			w.apply4(&key, p.Bits(), &o)
		}
	}
	old := w.pub4
	if d := w.publish4(); d != old || slot.Load() == nil || slot.Load().d != d {
		slot.Store(&root4{d: d}) // release; pairs with Load in lookups
	}
}

func op0(del bool, depth int, val uint32) op { return op{del: del, depth: depth, val: val} }

// covering returns the entry of the longest prefix in rib strictly
// containing p, or 0 (no route).
func (t *Table) covering(rib map[netip.Prefix]NextHopID, p netip.Prefix) uint32 {
	for l := p.Bits() - 1; l >= 0; l-- {
		q := netip.PrefixFrom(p.Addr(), l).Masked()
		if nh, ok := rib[q]; ok {
			return mkEntry(l, nh)
		}
	}
	return 0
}

// Routes iterates over a snapshot of vrf's routes, IPv4 then IPv6, each
// family in address then length order.
func (t *Table) Routes(vrf uint32) iter.Seq2[netip.Prefix, NextHopID] {
	t.mu.Lock()
	var ps []netip.Prefix
	var nhs []NextHopID
	if st := t.state[vrf]; st != nil {
		for f := 0; f < 2; f++ {
			start := len(ps)
			for p := range st.rib[f] {
				ps = append(ps, p)
			}
			slices.SortFunc(ps[start:], func(a, b netip.Prefix) int {
				if c := a.Addr().Compare(b.Addr()); c != 0 {
					return c
				}
				return a.Bits() - b.Bits()
			})
			for _, p := range ps[start:] {
				nhs = append(nhs, st.rib[f][p])
			}
		}
	}
	t.mu.Unlock()
	return func(yield func(netip.Prefix, NextHopID) bool) {
		for i, p := range ps {
			if !yield(p, nhs[i]) {
				return
			}
		}
	}
}

// Stats are table-wide counters.
type Stats struct {
	VRFs      int // VRFs with at least one route ever
	Routes4   int
	Routes6   int
	NextHops  int
	Bytes4    int // memory of published IPv4 lookup structures
	Bytes6    int // memory of published IPv6 lookup structures
	BytesBase int // per-table fixed arrays (VRF slots, next-hop slots)
}

// Stats computes counters. It walks the published structures (O(chunks)).
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := Stats{VRFs: len(t.state), NextHops: t.nhCount,
		BytesBase: len(t.vrfs)*16 + len(t.nhs)*(8+4+1)}
	for v, st := range t.state {
		s.Routes4 += st.routes[0]
		s.Routes6 += st.routes[1]
		s.Bytes4 += bytes4(t.vrfs[v].v4.Load())
		s.Bytes6 += bytes6(t.vrfs[v].v6.Load())
	}
	return s
}
