package vhost

import (
	"fmt"

	"github.com/dpkit/dpkit/internal/uds"
)

// logPage is the guest memory covered by one bit of the dirty log
// (vhost-user.rst, "Dirty pages logging": VHOST_LOG_PAGE, 4 KiB).
const logPage = 4096

// dirtyLog is the front-end's dirty page bitmap for live migration, shared
// through SET_LOG_BASE (LOG_SHMFD). Bit p of the bitmap (byte p/8, bit p%8)
// says guest physical page p was written by the back-end; the front-end reads
// and clears it while it copies guest memory. While VHOST_F_LOG_ALL is
// negotiated every write the back-end makes into guest memory — packet data
// into receive buffers and the rings' used parts — sets its pages' bits.
// Setting is an atomic OR, as the front-end clears bits concurrently.
type dirtyLog struct {
	m    *uds.FdMapping
	bits []byte // the bitmap: the mapping from the message's offset on
}

// newDirtyLog maps the log area of SET_LOG_BASE: size bytes at offset off of
// fd. The file must hold the whole range (MapFd checks, so that no access
// can fault past its end).
func newDirtyLog(fd int, size, off uint64) (*dirtyLog, error) {
	if size == 0 || off+size < off || off+size > 1<<40 {
		return nil, fmt.Errorf("%w: log area size %#x offset %#x", ErrInvalid, size, off)
	}
	m, err := uds.MapFd(fd, size, off)
	if err != nil {
		return nil, fmt.Errorf("%w: log area: %v", ErrInvalid, err)
	}
	return &dirtyLog{m: m, bits: m.Mem}, nil
}

// mark sets the bits of the pages that [gpa, gpa+n) touches. Pages beyond
// the bitmap are not logged (the front-end sized it for its memory; DPDK
// does the same).
func (l *dirtyLog) mark(gpa, n uint64) {
	if n == 0 || gpa+n-1 < gpa {
		return
	}
	last := (gpa + n - 1) / logPage
	for p := gpa / logPage; p <= last; p++ {
		i := p / 8
		if i >= uint64(len(l.bits)) {
			return
		}
		orByte(l.bits, int(i), 1<<(p%8))
	}
}

func (l *dirtyLog) unmap() {
	if l != nil {
		l.m.Unmap()
	}
}

// logRange is a stretch of guest memory a ring writes on every push.
type logRange struct{ gpa, n uint64 }
