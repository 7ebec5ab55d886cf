package vhost

import "errors"

// Sentinel errors, usable with errors.Is.
var (
	// ErrProtocol: a malformed message (bad version, size, descriptor count, unknown
	// request). The connection is dropped.
	ErrProtocol = errors.New("vhost: protocol error")
	// ErrInvalid: a well-formed message with values the back-end refuses (an index
	// out of range, a bad queue size, an address that does not translate).
	ErrInvalid = errors.New("vhost: invalid request")
	// ErrNotNegotiated: a request that needs a feature the front-end did not negotiate.
	ErrNotNegotiated = errors.New("vhost: feature not negotiated")
	// ErrBusy: a request that needs a stopped queue arrived while the queue runs.
	ErrBusy = errors.New("vhost: queue is running")
	// ErrOptions: invalid Options.
	ErrOptions = errors.New("vhost: invalid options")
	// ErrClosed: the backend or port is closed.
	ErrClosed = errors.New("vhost: closed")
	// ErrGuestFault: reading or writing the front-end's shared memory faulted. The
	// front-end truncated a file it shared while the back-end had it mapped (the
	// kernel then raises SIGBUS on the pages past the new end). The device is dropped.
	ErrGuestFault = errors.New("vhost: front-end memory access faulted")
)
