package vhost

import (
	"os"
	"unsafe"
)

// onPages reports whether address a lies in b or in the part before it on b's first
// page (the dirty log's word-wide stores may start a few bytes before b).
func onPages(b []byte, a uintptr) bool {
	if len(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(len(b))
	lo &^= uintptr(os.Getpagesize() - 1)
	return a >= lo && a < hi
}
