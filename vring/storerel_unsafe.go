//go:build amd64 && gc && !race

package vring

// storeRel32 stores v into the 32-bit word at off as a release: the stores and
// loads before it are visible before it is. On amd64 every store is one (the
// processor keeps stores in order, total store order, and the compiler does not
// move memory operations past one another), so a plain store does it without the
// locked exchange that atomic.StoreUint32 issues, which waits for every pending
// store, the guest-buffer copies of a whole burst included, to complete.
//
// It gives no store-load ordering: a check of the peer's event suppression that
// must see the peer's latest word after this store needs fence in between. The
// argument rests on how the gc compiler compiles, hence the build tag;
// race-detector builds use store32, so that the detector sees the ordering when
// both sides run in one process.
func storeRel32(b []byte, off int, v uint32) { *wordPtr(b, off) = v }
