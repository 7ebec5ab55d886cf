package xsk

import (
	"errors"
	"testing"
)

// TestSharedBindMode: a socket sharing a UMEM (XDP_SHARED_UMEM) takes the UMEM's
// copy or zero-copy mode from the kernel, whatever it asks. Config.Bind BindZeroCopy
// requires zero-copy, so on a copy-mode UMEM it must fail, not come back bound in
// copy mode; before, the shared bind ignored Config.Bind altogether.
func TestSharedBindMode(t *testing.T) {
	e := newEnv(t, 2, 0)
	// No Fatal or Skip inside: the function runs on the namespace's own goroutine.
	e.inA(t, func() error {
		u, err := NewUMEM(UMEMOptions{})
		if err != nil {
			return err
		}
		defer u.Close()
		first, err := NewPort(u, e.v.IndexA, Config{Queue: 0, Bind: BindCopy}, 0)
		if err != nil {
			return err
		}
		defer first.Close()
		if first.Socket().ZeroCopy() {
			return errors.New("veth bound zero-copy in copy mode")
		}
		p, err := NewPort(u, e.v.IndexA, Config{Queue: 1, Bind: BindZeroCopy}, 1)
		if err == nil {
			zc := p.Socket().ZeroCopy()
			p.Close()
			t.Errorf("BindZeroCopy on a copy-mode UMEM succeeded (zero-copy %v)", zc)
		} else if !errors.Is(err, ErrOptions) {
			t.Errorf("BindZeroCopy on a copy-mode UMEM: %v, want ErrOptions", err)
		}
		// Copy and auto are what the UMEM gives.
		for _, m := range []BindMode{BindCopy, BindAuto} {
			p, err := NewPort(u, e.v.IndexA, Config{Queue: 1, Bind: m}, 1)
			if err != nil {
				t.Errorf("%v on a copy-mode UMEM: %v", m, err)
				continue
			}
			p.Close()
		}
		return nil
	})
}
