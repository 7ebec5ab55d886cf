package route

import (
	"encoding/binary"
	"iter"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Neighbour is one resolved IP → MAC binding on a port.
type Neighbour struct {
	Port uint32
	Addr netip.Addr // IPv4 or IPv6 (IPv4-mapped IPv6 is stored as IPv4)
	MAC  MAC
}

type neighKey struct {
	port uint32
	addr [16]byte // IPv4 as ::ffff:a.b.c.d
}

type neighEntry struct {
	key  neighKey
	mac  MAC
	dead bool // tombstone: keeps probe chains intact until the next rebuild
}

type neighSlots struct {
	s    []atomic.Pointer[neighEntry]
	mask uint64
}

// NeighbourTable maps (port, IP) to MAC for ARP (RFC 826) and IPv6 ND
// (RFC 4861) results. Lookups are lock-free, never allocate and may run on
// any number of goroutines; Set and Delete are serialised by a mutex.
//
// It is an open-addressing hash table whose slots hold pointers to
// immutable entries: a change stores a new pointer (release; pairs with the
// acquire Load in lookups), so a reader sees the old or the new binding,
// never a mix. Growth, shrinking (below an eighth full after a Delete) and
// tombstone cleanup build a new slot array and
// publish it with one atomic store; the old array is reclaimed by the
// garbage collector once no reader holds it.
type NeighbourTable struct {
	slots atomic.Pointer[neighSlots]

	mu    sync.Mutex
	max   int
	count int
	tombs int
}

// NewNeighbourTable returns a table holding at most max entries (0: 65536).
func NewNeighbourTable(max int) *NeighbourTable {
	if max <= 0 {
		max = 65536
	}
	t := &NeighbourTable{max: max}
	t.slots.Store(newNeighSlots(16))
	return t
}

func newNeighSlots(n int) *neighSlots {
	return &neighSlots{s: make([]atomic.Pointer[neighEntry], n), mask: uint64(n - 1)}
}

func keyOf(port uint32, a netip.Addr) neighKey {
	return neighKey{port: port, addr: a.Unmap().As16()}
}

func (k *neighKey) hash() uint64 {
	h := uint64(k.port)*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(k.addr[:8])
	h = (h ^ h>>29) * 0xbf58476d1ce4e5b9
	h ^= binary.LittleEndian.Uint64(k.addr[8:])
	h = (h ^ h>>32) * 0x94d049bb133111eb
	return h ^ h>>29
}

func (ns *neighSlots) find(k *neighKey) (MAC, bool) {
	for i, h := 0, k.hash(); i <= int(ns.mask); i, h = i+1, h+1 {
		e := ns.s[h&ns.mask].Load()
		if e == nil {
			break
		}
		if e.key == *k {
			return e.mac, !e.dead
		}
	}
	return MAC{}, false
}

// Lookup returns the MAC bound to addr on port.
func (t *NeighbourTable) Lookup(port uint32, addr netip.Addr) (MAC, bool) {
	k := keyOf(port, addr)
	return t.slots.Load().find(&k)
}

// Lookup4 is Lookup for an IPv4 address in host byte order.
func (t *NeighbourTable) Lookup4(port uint32, a uint32) (MAC, bool) {
	k := neighKey{port: port}
	k.addr[10], k.addr[11] = 0xff, 0xff
	binary.BigEndian.PutUint32(k.addr[12:], a)
	return t.slots.Load().find(&k)
}

// Lookup6 is Lookup for an IPv6 address in network byte order.
func (t *NeighbourTable) Lookup6(port uint32, a *[16]byte) (MAC, bool) {
	k := neighKey{port: port, addr: *a}
	return t.slots.Load().find(&k)
}

// Set binds addr on port to mac, replacing any previous binding.
func (t *NeighbourTable) Set(port uint32, addr netip.Addr, mac MAC) error {
	if !addr.IsValid() {
		return ErrBadPrefix
	}
	k := keyOf(port, addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.slots.Load()
	if slot := ns.slotOf(&k); slot != nil {
		if old := slot.Load(); old != nil && old.key == k {
			if old.dead {
				if t.count >= t.max {
					return ErrNeighbourFull
				}
				t.count++
				t.tombs--
			}
			slot.Store(&neighEntry{key: k, mac: mac})
			return nil
		}
	}
	if t.count >= t.max {
		return ErrNeighbourFull
	}
	if (t.count+t.tombs+1)*4 > len(ns.s)*3 {
		ns = t.rebuild(ns)
	}
	ns.slotOf(&k).Store(&neighEntry{key: k, mac: mac})
	t.count++
	return nil
}

// slotOf returns the slot holding k, or the first empty slot of its chain.
func (ns *neighSlots) slotOf(k *neighKey) *atomic.Pointer[neighEntry] {
	for i, h := 0, k.hash(); i <= int(ns.mask); i, h = i+1, h+1 {
		s := &ns.s[h&ns.mask]
		e := s.Load()
		if e == nil || e.key == *k {
			return s
		}
	}
	return nil
}

// rebuild publishes a slot array sized for the live bindings (at most half
// full after one more), without tombstones. It grows the table and, called
// from Delete, shrinks it again.
func (t *NeighbourTable) rebuild(old *neighSlots) *neighSlots {
	n := 16
	for (t.count+1)*2 > n {
		n *= 2
	}
	ns := newNeighSlots(n)
	for i := range old.s {
		if e := old.s[i].Load(); e != nil && !e.dead {
			ns.slotOf(&e.key).Store(e)
		}
	}
	t.tombs = 0
	t.slots.Store(ns) // release; pairs with Load in lookups
	return ns
}

// Delete removes the binding; it reports whether one existed.
func (t *NeighbourTable) Delete(port uint32, addr netip.Addr) bool {
	k := keyOf(port, addr)
	t.mu.Lock()
	defer t.mu.Unlock()
	ns := t.slots.Load()
	slot := ns.slotOf(&k)
	if slot == nil {
		return false
	}
	e := slot.Load()
	if e == nil || e.dead {
		return false
	}
	slot.Store(&neighEntry{key: k, dead: true})
	t.count--
	t.tombs++
	if len(ns.s) > 16 && t.count*8 < len(ns.s) {
		// under an eighth full: a table whose bindings were withdrawn
		// would otherwise keep its peak slot array and a tombstone for
		// every binding deleted, until the next Set
		t.rebuild(ns)
	}
	return true
}

// Len is the number of bindings.
func (t *NeighbourTable) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.count
}

// All iterates over a snapshot of the bindings in no particular order.
func (t *NeighbourTable) All() iter.Seq[Neighbour] {
	ns := t.slots.Load()
	return func(yield func(Neighbour) bool) {
		for i := range ns.s {
			e := ns.s[i].Load()
			if e == nil || e.dead {
				continue
			}
			a := netip.AddrFrom16(e.key.addr).Unmap()
			if !yield(Neighbour{Port: e.key.port, Addr: a, MAC: e.mac}) {
				return
			}
		}
	}
}
