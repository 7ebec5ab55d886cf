package vhost

import (
	"errors"
	"testing"
)

// TestSetStatusWide: the device status is 8 bits (VIRTIO 1.2 §2.1); a SET_STATUS
// word with higher bits set is refused, as DPDK's vhost does, and changes nothing.
// Truncated to its low byte, 0x100 read as a device reset and stopped every ring,
// and 0x10f was reported back by GET_STATUS as 0x0f.
func TestSetStatusWide(t *testing.T) {
	b, f := oneQueue(t, FeatureVersion1, 256)
	port := b.Port(0)
	f.must(ReqSetStatus, u64b(0x0f))
	for _, v := range []uint64{0x100, 0x10f, 1 << 63} {
		if err := f.send(ReqSetStatus, u64b(v), true); !errors.Is(err, errNack) {
			t.Errorf("SET_STATUS %#x: %v, want a nack", v, err)
		}
		if !port.TxReady() {
			t.Fatalf("SET_STATUS %#x stopped the ring", v)
		}
		if s := f.get(ReqGetStatus, nil); s != 0x0f {
			t.Errorf("GET_STATUS after SET_STATUS %#x: %#x, want 0xf", v, s)
		}
	}
}
