package vhost

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"time"
)

// Faults on guest memory.
//
// The back-end maps the files a front-end passes (SET_MEM_TABLE, ADD_MEM_REG,
// SET_LOG_BASE). uds.MapFd checks that a file holds the whole range and seals it
// against shrinking where the file allows that (memfds made with MFD_ALLOW_SEALING,
// as QEMU's are). Other files cannot be sealed: hugetlbfs files, as DPDK's
// virtio-user passes them, and memfds made without sealing. The front-end can truncate
// those at any moment, and the back-end's next access past the new end raises SIGBUS,
// which kills a Go process by default. DPDK's vhost is exposed the same way.
//
// dpkit turns such a fault into an error for the device that caused it. Every access
// to guest memory runs with the runtime's panic-on-fault set
// (runtime/debug.SetPanicOnFault) under a recover that checks the faulting address
// lies in that device's mappings; a fault anywhere else is a bug and still crashes.
//   - In the datapath (Port.Rx, Port.Tx) the burst ends: Rx gives its frames back
//     to the pool and returns 0, Tx returns 0 and the packets stay the caller's. The
//     ring is marked faulted (Rx and Tx return 0 from then on), a drop is counted,
//     the front-end's error eventfd is signalled, and the control goroutine is woken
//     to drop the device.
//   - On the control goroutine, a message whose handler faults drops the connection
//     with ErrGuestFault, and a ring that faults while it is stopped keeps the base
//     it had.
//
// The cost on the datapath is two runtime calls and an open-coded defer per burst.

// faultAddr returns the address of a memory fault, if v (a recovered panic value) is
// one: the runtime's error for a fault at a non-nil address has an Addr method.
func faultAddr(v any) (uintptr, bool) {
	e, ok := v.(runtime.Error)
	if !ok {
		return 0, false
	}
	a, ok := e.(interface{ Addr() uintptr })
	if !ok {
		return 0, false
	}
	return a.Addr(), true
}

// owns reports whether v is a fault inside the guest memory or dirty log the ring
// uses.
func (r *ring) owns(v any) bool {
	a, ok := faultAddr(v)
	if !ok {
		return false
	}
	if r.mem != nil {
		for _, g := range r.mem.Regions() {
			if onPages(g.Host, a) {
				return true
			}
		}
	}
	return r.log != nil && onPages(r.log.bits, a)
}

// owns reports whether v is a fault inside the device's guest memory or dirty log.
func (d *device) owns(v any) bool {
	a, ok := faultAddr(v)
	if !ok {
		return false
	}
	for _, s := range d.mem.slots {
		if onPages(s.m.Mem, a) {
			return true
		}
	}
	return d.log != nil && onPages(d.log.bits, a)
}

// guard runs f, on the control goroutine, with a fault inside memory that owns
// accepts turned into ErrGuestFault.
func guard(owns func(any) bool, f func()) (err error) {
	prev := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(prev)
		if v := recover(); v != nil {
			if !owns(v) {
				panic(v)
			}
			err = fmt.Errorf("%w: %v", ErrGuestFault, v)
		}
	}()
	f()
	return nil
}

// dropFaulted has the control goroutine drop the device after a datapath fault: its
// read of the next message fails at once, and serveDevice returns ErrGuestFault.
func (d *device) dropFaulted() {
	if d.faulted.CompareAndSwap(false, true) && d.conn != nil {
		d.conn.SetReadDeadline(time.Unix(1, 0))
	}
}
