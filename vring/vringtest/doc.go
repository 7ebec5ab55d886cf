// Package vringtest is a driver-side (and device-side) mock for virtqueues:
// it lays out split and packed rings in fake guest memory and writes
// arbitrary, possibly hostile, descriptors, indices and used entries with
// plain stores, so that tests and fuzzers in any package can exercise a
// vring device or driver without a guest.
//
// The mock is not safe for concurrent use; it writes shared fields with
// plain stores and is meant for single-goroutine tests. Helpers panic on
// misuse by the test itself (allocation exhausted), never on ring content.
//
// Layout: NewGuest builds region A (rings, buffers, indirect tables; bump
// allocated with Alloc) and region B, separated by an unmapped gap, so tests
// can aim descriptors at the gap (Gap), across a region end (AEnd) or at a
// second region. NewSplit/NewPacked place a ring in A and expose its
// translated areas (Ring) for vring.New* plus raw accessors:
//
//	mock driver:  SetDesc, Chain, Indirect, Offer, SetAvailIdx, SetUsedEvent, ...
//	mock device:  PutUsed, SetUsedIdx, SetDeviceEvent, ...
//	observers:    UsedIdx, UsedElem, AvailEvent, DriverEvent, GetDesc, ...
package vringtest
