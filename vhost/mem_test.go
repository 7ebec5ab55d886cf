package vhost

import (
	"testing"
)

// TestRingRestartsWhenMemoryReturns: a ring stopped because its memory left the
// table runs again once the memory is back, whichever message brings it. QEMU with
// CONFIGURE_MEM_SLOTS replaces a region that changes (virtio-mem resizing) with
// REM_MEM_REG then ADD_MEM_REG; in between the ring cannot start.
func TestRingRestartsWhenMemoryReturns(t *testing.T) {
	for _, back := range []string{"add-mem-reg", "set-mem-table"} {
		t.Run(back, func(t *testing.T) {
			b, path := testBackend(t, nil)
			f := newFakeFront(t, path)
			f.negotiate(FeatureVersion1)
			f.setupQueue(0, 256)
			port := b.Port(0)
			if !port.TxReady() {
				t.Fatal("ring not running after setup")
			}
			reg := make([]byte, sizeMemReg)
			encodeRegion(reg[8:], memRegion{GuestAddr: f.gpa, Size: fakeMemSize, UserAddr: f.uva})
			f.must(ReqRemMemReg, reg)
			if port.TxReady() {
				t.Fatal("ring still running without its memory")
			}
			if back == "add-mem-reg" {
				f.must(ReqAddMemReg, reg, f.fd)
			} else {
				f.must(ReqSetMemTable, f.memTable(), f.fd)
			}
			if !port.TxReady() {
				t.Fatal("ring not restarted after its memory came back")
			}
		})
	}
}

// TestResetRingStaysStopped: after a device reset (SET_STATUS 0) a ring waits for
// a new SET_VRING_KICK; a memory table sent meanwhile (as a front-end sends before
// it configures the rings again) must not start it on the old configuration, which
// would then refuse SET_VRING_NUM as busy.
func TestResetRingStaysStopped(t *testing.T) {
	b, path := testBackend(t, nil)
	f := newFakeFront(t, path)
	f.negotiate(FeatureVersion1)
	f.setupQueue(0, 256)
	port := b.Port(0)
	f.must(ReqSetStatus, u64b(0))
	if port.TxReady() {
		t.Fatal("ring running after a device reset")
	}
	f.must(ReqSetMemTable, f.memTable(), f.fd)
	if port.TxReady() {
		t.Fatal("a memory table started a ring the reset stopped")
	}
	f.must(ReqSetVringNum, stateB(0, 128))
	f.setupQueue(0, 256)
	if !port.TxReady() {
		t.Fatal("ring not running after it was set up again")
	}
}
