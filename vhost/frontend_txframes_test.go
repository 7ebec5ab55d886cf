package vhost

import (
	"context"
	"testing"

	"github.com/dpkit/dpkit/pmd"
)

// TestFrontendCloseReturnsTxFrames: frames the front-end posted on its transmit
// queue and the back-end never took (its application does not poll), single
// packets and the extra frames of chains alike, are back in the pool after Close,
// whether the front-end closes first or the back-end hangs up before. The
// front-end never disables a ring on its own (SET_VRING_ENABLE 0); Close is where
// they come back.
func TestFrontendCloseReturnsTxFrames(t *testing.T) {
	for _, backendFirst := range []bool{false, true} {
		for _, dis := range []uint64{0, FeatureRingPacked} {
			b, path := testBackend(t, nil)
			pool := sharedPool(t)
			f, err := Dial(context.Background(), FrontendOptions{Path: path, Pool: pool, QueueSize: 64, DisableFeatures: dis})
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "queues", b.ready)
			fr := make([]pmd.Frame, 40)
			fr = fr[:pool.Get(fr)]
			pk := make([]pmd.Pkt, len(fr))
			for i := range fr {
				pk[i] = pmd.Pkt{Frame: fr[i], Off: uint16(pool.Headroom()), Len: 100}
				if i >= 20 && i%4 != 3 {
					pk[i].Flags |= pmd.PktMore // chains of four from the 21st on
				}
			}
			s := f.Port(0).Tx(pk)
			pool.Put(frames(pk[s:]))
			if s != len(pk) {
				t.Errorf("backendFirst=%v disable=%#x: Tx took %d of %d", backendFirst, dis, s, len(pk))
			}
			if backendFirst {
				b.Close()
				waitFor(t, "the front-end to see the hang-up", f.Down)
			}
			if err := f.Close(); err != nil {
				t.Errorf("backendFirst=%v disable=%#x: Close: %v", backendFirst, dis, err)
			}
			if st := pool.Stats(); st.Free != st.Frames {
				t.Errorf("backendFirst=%v disable=%#x: %d of %d frames back in the pool after Close", backendFirst, dis, st.Free, st.Frames)
			}
			b.Close()
		}
	}
}
