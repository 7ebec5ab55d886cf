package vring

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package matches one of them
// with errors.Is. Errors caused by the peer (a hostile or buggy guest, driver
// or device) additionally match ErrBroken: the queue refuses further work.
var (
	// ErrBroken is matched by every error that put a queue into the broken
	// state. A broken queue returns the same error from every later call
	// that would take new work from the peer (Pop, Pending, Add, Collect);
	// on the device side Push still completes the chains popped before the
	// violation. The owner must reset it (vhost: GET_VRING_BASE / a device
	// reset).
	ErrBroken = errors.New("vring: queue broken by peer")

	// ErrAddress: a guest address range is not covered by the memory regions.
	ErrAddress = errors.New("vring: guest address not mapped")
	// ErrOverflow: addr+len wraps around 2^64.
	ErrOverflow = errors.New("vring: guest address range wraps")
	// ErrNotContiguous: a range that must be one host slice (an indirect
	// table) crosses a region boundary.
	ErrNotContiguous = errors.New("vring: range crosses a region boundary")

	// ErrQueueSize: the queue size is zero, above 32768, or (split) not a
	// power of two.
	ErrQueueSize = errors.New("vring: invalid queue size")
	// ErrLayout: ring memory too small or misaligned.
	ErrLayout = errors.New("vring: ring memory too small or misaligned")
	// ErrNotSupported: the host is not little-endian.
	ErrNotSupported = errors.New("vring: not supported on this host")
	// ErrInvalid: a caller (not peer) error, such as an empty buffer list or
	// pushing more used entries than chains were popped. It does not break
	// the queue.
	ErrInvalid = errors.New("vring: invalid argument")
	// ErrFull: not enough free descriptors for the buffer (driver side).
	ErrFull = errors.New("vring: not enough free descriptors")

	// ErrChainLoop: a descriptor chain walk ran out of its TTL (a loop).
	ErrChainLoop = errors.New("vring: descriptor chain loop")
	// ErrChainTooLong: a chain has more descriptors than the queue size or
	// Options.MaxChainDescs, or more bytes than Options.MaxChainBytes.
	ErrChainTooLong = errors.New("vring: descriptor chain too long")
	// ErrDescriptor: a descriptor index or flag combination is invalid.
	ErrDescriptor = errors.New("vring: invalid descriptor")
	// ErrIndirect: an indirect table is malformed, nested, combined with
	// NEXT, larger than the queue size, or INDIRECT_DESC was not negotiated.
	ErrIndirect = errors.New("vring: invalid indirect descriptor")
	// ErrAvailIdx: the driver's available index ran ahead of the device's
	// last seen index by more than the queue size (less, for a split ring,
	// the chains popped and not yet used).
	ErrAvailIdx = errors.New("vring: available index out of range")
	// ErrUsedIdx: the device's used index ran ahead of the driver's last
	// seen index by more than the number of buffers in flight and published.
	ErrUsedIdx = errors.New("vring: used index out of range")
	// ErrUsedID: the device returned an id that is out of range, not in
	// flight, not yet published, or already returned.
	ErrUsedID = errors.New("vring: invalid used id")
	// ErrUsedLen: the device wrote more bytes than the buffer's writable
	// capacity.
	ErrUsedLen = errors.New("vring: used length exceeds writable capacity")
)

// QueueError reports a peer violation that broke a queue. It matches
// ErrBroken and its cause with errors.Is.
type QueueError struct {
	Op    string // "pop", "collect", ...
	Index uint32 // ring position or descriptor index involved
	Err   error  // a sentinel (ErrChainLoop, ...), possibly wrapped
}

func (e *QueueError) Error() string {
	return fmt.Sprintf("vring: %s at %d: %v (queue broken)", e.Op, e.Index, e.Err)
}

// Unwrap returns ErrBroken and the cause.
func (e *QueueError) Unwrap() []error { return []error{ErrBroken, e.Err} }

func broken(op string, idx uint32, err error) error {
	return &QueueError{Op: op, Index: idx, Err: err}
}
