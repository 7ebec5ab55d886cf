package xsk

import "errors"

// Errors of the xsk package, usable with errors.Is.
var (
	// ErrOptions: a field of the options is out of range; the message names it.
	ErrOptions = errors.New("xsk: invalid options")
	// ErrClosed: the socket, port, UMEM or program is closed.
	ErrClosed = errors.New("xsk: closed")
	// ErrNotSupported: the kernel or device lacks what was asked (zero-copy, a frags
	// program, busy polling, shared UMEM on the same queue).
	ErrNotSupported = errors.New("xsk: not supported")
	// ErrBusy: the queue is bound by another socket (after the rebind retries ran out).
	ErrBusy = errors.New("xsk: queue busy")
	// ErrNoDevice: the interface does not exist.
	ErrNoDevice = errors.New("xsk: no such device")
)
