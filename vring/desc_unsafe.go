package vring

import "unsafe"

// descAt returns descriptor slot i of a descriptor table as its two 64-bit halves,
// without a bounds check: callers pass i below the ring size, and init checked that
// the table holds that many slots and starts 8-byte aligned (descFast). On the
// little-endian hosts the rings support, half 0 is the address; half 1 is len, then
// next (split) or id (packed), then flags.
//
// It is for batch loops where the checks of desc[16*i:][:16] and the four separate
// field stores cost more than the work; single-descriptor paths keep the checked
// accessors.
func descAt(desc []byte, i uint16) *[2]uint64 {
	return (*[2]uint64)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(desc)), 16*uintptr(i)))
}

// aligned8 reports whether b starts 8-byte aligned in host memory.
func aligned8(b []byte) bool {
	return len(b) > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(b)))&7 == 0
}

// descWord returns a pointer to the id+flags word of packed descriptor slot i
// (descAt's rules), for atomic access.
func descWord(desc []byte, i uint16) *uint32 {
	return (*uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(desc)), 16*uintptr(i)+descWordOff))
}

// usedAt returns split used-ring entry i (id, len) as two 32-bit words, without a
// bounds check: callers pass i masked to the ring size, which init checked the ring
// holds. Entries sit at 4 + 8i, so they are only 4-byte aligned, as the ring is.
func usedAt(used []byte, i uint16) *[2]uint32 {
	return (*[2]uint32)(unsafe.Add(unsafe.Pointer(unsafe.SliceData(used)), usedRingOff+8*uintptr(i)))
}
