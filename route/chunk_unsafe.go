package route

import "unsafe"

// tbl4Of returns the tbl of an IPv4 chunk, which newChunk always allocates
// as the head of a chunk4; IPv4 directories hold no other chunks.
func tbl4Of(c *chunk) *[1 << tbl4Bits]uint32 {
	return &(*chunk4)(unsafe.Pointer(c)).tbl4
}
