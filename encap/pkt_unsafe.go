package encap

import (
	"unsafe"

	"github.com/dpkit/dpkit/pmd"
)

// one returns a one-element slice holding *pk, for the batch functions to take a single
// packet.
func one(pk *pmd.Pkt) []pmd.Pkt { return unsafe.Slice(pk, 1) }

// oneResult is one for a Result.
func oneResult(r *Result) []Result { return unsafe.Slice(r, 1) }
