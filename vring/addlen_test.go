package vring_test

import (
	"errors"
	"testing"

	"github.com/dpkit/dpkit/vring"
)

// TestDriverAddTotalOver4G: §2.7.5.2 forbids a driver to add a chain longer than
// 2^32 bytes, and a used length is 32 bits. Add and AddIndirect refuse buffers of
// 4 GiB or more with ErrInvalid (a caller error: the queue stays usable) instead
// of publishing a chain the device must refuse, with a writable capacity that
// wrapped around 2^32 (a 4 GiB writable buffer counted as read-only).
func TestDriverAddTotalOver4G(t *testing.T) {
	for _, layout := range layouts {
		t.Run(layout, func(t *testing.T) {
			p := newPair(t, layout, 8, vring.FeatureIndirectDesc)
			a := p.g.Alloc(64, 8)
			over := [][]vring.Seg{
				{{Addr: a, Len: 1 << 31, Write: true}, {Addr: a, Len: 1 << 31, Write: true}},
				{{Addr: a, Len: 1 << 31}, {Addr: a, Len: 1 << 31, Write: true}},
				{{Addr: a, Len: 1<<32 - 1}, {Addr: a, Len: 1}},
			}
			for i, segs := range over {
				if id, err := p.drv.Add(segs); !errors.Is(err, vring.ErrInvalid) {
					t.Errorf("Add %d: id %d err %v, want ErrInvalid", i, id, err)
				}
				ta := p.g.Alloc(16*len(segs), 16)
				tab := vring.IndirectTable{Addr: ta, Host: p.g.Bytes(ta, 16*len(segs))}
				if id, err := p.drv.AddIndirect(segs, tab); !errors.Is(err, vring.ErrInvalid) {
					t.Errorf("AddIndirect %d: id %d err %v, want ErrInvalid", i, id, err)
				}
			}
			if p.drv.Err() != nil || p.drv.Free() != 8 || p.drv.InFlight() != 0 {
				t.Fatalf("after refused adds: err %v free %d inflight %d", p.drv.Err(), p.drv.Free(), p.drv.InFlight())
			}
			// 4 GiB - 1 in total is still a valid chain.
			if _, err := p.drv.Add([]vring.Seg{{Addr: a, Len: 1 << 31, Write: true}, {Addr: a, Len: 1<<31 - 1, Write: true}}); err != nil {
				t.Fatalf("Add of 4 GiB-1: %v", err)
			}
		})
	}
}
