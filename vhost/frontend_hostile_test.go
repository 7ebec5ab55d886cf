package vhost

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
	"github.com/dpkit/dpkit/internal/uds"
)

// fakeBack is a scripted vhost-user back-end for front-end tests: it accepts one
// connection at its path and hands every message the front-end sends (descriptors
// closed) to handle, which answers through reply; handle returning false ends the
// reading, leaving the connection open until the test ends.
type fakeBack struct {
	path string
	conn chan *uds.Conn
}

func newFakeBack(t *testing.T, handle func(c *uds.Conn, h header, p []byte) bool) *fakeBack {
	t.Helper()
	b := &fakeBack{path: filepath.Join(shortTempDir(t), "fake.sock"), conn: make(chan *uds.Conn, 1)}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: b.path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	done, quit := make(chan struct{}), make(chan struct{})
	var uc *net.UnixConn
	accepted := make(chan struct{})
	t.Cleanup(func() {
		close(quit)
		ln.Close()
		select {
		case <-accepted:
			uc.Close()
		default:
		}
		<-done
	})
	go func() {
		defer close(done)
		var err error
		uc, err = ln.AcceptUnix()
		if err != nil {
			return
		}
		close(accepted)
		c := uds.NewConn(uc)
		b.conn <- c
		for {
			var hb [hdrSize]byte
			fds, err := c.ReadFull(hb[:])
			uds.CloseAll(fds)
			if err != nil {
				return
			}
			h := decodeHeader(hb[:])
			p := make([]byte, h.size)
			if h.size > 0 {
				fds, err := c.ReadFull(p)
				uds.CloseAll(fds)
				if err != nil {
					return
				}
			}
			if !handle(c, h, p) {
				// Stay connected, silent, until the test ends.
				<-quit
				return
			}
		}
	}()
	return b
}

// fakeReply sends the reply to req with payload.
func fakeReply(c *uds.Conn, req Request, payload []byte) {
	b := make([]byte, hdrSize+len(payload))
	encodeHeader(b, header{req: req, flags: flagVersion | flagReply, size: uint32(len(payload))})
	copy(b[hdrSize:], payload)
	c.Write(b)
}

// TestDialCancelDuringHandshake: a back-end that accepts the connection and never
// answers holds Dial in the handshake; cancelling Dial's context must end it, as it
// ends the connect or the listening accept. Before, only a deadline on the context
// bounded the handshake, so a cancelled Dial went on waiting for 30 s.
func TestDialCancelDuringHandshake(t *testing.T) {
	b := newFakeBack(t, func(c *uds.Conn, h header, p []byte) bool {
		return h.req != ReqGetFeatures // silent from GET_FEATURES on
	})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	t0 := time.Now()
	f, err := Dial(ctx, FrontendOptions{Path: b.path, Pool: sharedPool(t)})
	if err == nil {
		f.Close()
		t.Fatal("Dial succeeded against a silent back-end")
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Dial returned %v after its context was cancelled: %v", d, err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Dial: %v, want it to wrap context.Canceled", err)
	}
}

// honest answers h as a back-end offering features and proto would, acking every
// request that asks for it.
func honest(c *uds.Conn, h header, p []byte, features, proto uint64) {
	switch h.req {
	case ReqGetFeatures:
		fakeReply(c, h.req, u64(features))
		return
	case ReqGetProtocolFeatures:
		fakeReply(c, h.req, u64(proto))
		return
	case ReqGetQueueNum:
		fakeReply(c, h.req, u64(8))
		return
	case ReqGetVringBase:
		st := make([]byte, sizeState)
		copy(st, p[:min(len(p), 4)]) // the ring's index, base 0
		fakeReply(c, h.req, st)
		return
	}
	if h.flags&flagNeedReply != 0 {
		fakeReply(c, h.req, u64(0))
	}
}

// TestDialFailReturnsFrames: a Dial that fails late in the handshake (here the
// back-end refuses SET_VRING_ENABLE, then says nothing more) has posted receive
// buffers but made none available: they are published only once the device is set
// up. Its frames must all be back in the pool, without waiting on the back-end to
// stop rings it never ran. Before, Close asked it to, and a back-end that did not
// answer within a second had the frames left out of the pool, a queue's worth per
// failed Dial.
func TestDialFailReturnsFrames(t *testing.T) {
	for _, packed := range []bool{false, true} {
		t.Run(map[bool]string{false: "split", true: "packed"}[packed], func(t *testing.T) {
			feat := uint64(FeatureVersion1 | FeatureProtocolFeatures)
			if packed {
				feat |= FeatureRingPacked
			}
			b := newFakeBack(t, func(c *uds.Conn, h header, p []byte) bool {
				if h.req == ReqSetVringEnable {
					fakeReply(c, h.req, u64(1))
					return false
				}
				honest(c, h, p, feat, ProtoReplyAck)
				return true
			})
			pool := sharedPool(t)
			t0 := time.Now()
			f, err := Dial(context.Background(), FrontendOptions{Path: b.path, Pool: pool})
			if err == nil {
				f.Close()
				t.Fatal("Dial succeeded though the back-end refused SET_VRING_ENABLE")
			}
			t.Logf("Dial: %v (after %v)", err, time.Since(t0))
			if st := pool.Stats(); st.Free != st.Frames {
				t.Errorf("after the failed Dial %d of %d frames are back in the pool", st.Free, st.Frames)
			}
		})
	}
}

// TestCloseChecksStoppedRing: a GET_VRING_BASE answer naming another ring does not
// confirm that the ring asked about stopped, so Close keeps the receive frames
// posted to it (the back-end may still write them); honest answers free them all.
func TestCloseChecksStoppedRing(t *testing.T) {
	feat := uint64(FeatureVersion1 | FeatureProtocolFeatures)
	for _, wrong := range []bool{false, true} {
		b := newFakeBack(t, func(c *uds.Conn, h header, p []byte) bool {
			if h.req == ReqGetVringBase && wrong {
				fakeReply(c, h.req, make([]byte, sizeState)) // always ring 0
				return true
			}
			honest(c, h, p, feat, ProtoReplyAck)
			return true
		})
		pool := sharedPool(t)
		f, err := Dial(context.Background(), FrontendOptions{Path: b.path, Pool: pool})
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
		st := pool.Stats()
		if back := st.Free == st.Frames; back == wrong {
			t.Errorf("answers for the wrong ring %v: %d of %d frames back after Close", wrong, st.Free, st.Frames)
		}
	}
}

// TestFrontendUnsolicitedPayload: a back-end that sends an unasked message with a
// payload (and a descriptor) takes the device down, but it still answers Close's
// GET_VRING_BASE, so Close gets every frame back and leaves no descriptor open. Before,
// the front-end read only the message's header: its payload was then taken for the
// start of the first answer, the answers no longer matched, and Close left a ring's
// worth of frames out of the pool.
func TestFrontendUnsolicitedPayload(t *testing.T) {
	for _, packed := range []bool{false, true} {
		t.Run(map[bool]string{false: "split", true: "packed"}[packed], func(t *testing.T) {
			feat := uint64(FeatureVersion1 | FeatureProtocolFeatures)
			if packed {
				feat |= FeatureRingPacked
			}
			pool := sharedPool(t)
			fds := testenv.Fds(t)
			t.Run("", func(t *testing.T) {
				conn := make(chan *uds.Conn, 1)
				b := newFakeBack(t, func(c *uds.Conn, h header, p []byte) bool {
					honest(c, h, p, feat, ProtoReplyAck)
					if h.req == ReqSetVringEnable {
						select {
						case conn <- c:
						default:
						}
					}
					return true
				})
				f, err := Dial(context.Background(), FrontendOptions{Path: b.path, Pool: pool})
				if err != nil {
					t.Fatal(err)
				}
				c := <-conn
				// An unasked GET_FEATURES "reply", with a descriptor.
				m := make([]byte, hdrSize+8)
				encodeHeader(m, header{req: ReqGetFeatures, flags: flagVersion | flagReply, size: 8})
				efd, err := uds.Eventfd()
				if err != nil {
					t.Fatal(err)
				}
				err = c.Write(m, efd)
				uds.Close(efd)
				if err != nil {
					t.Fatal(err)
				}
				waitFor(t, "the front-end to mark the back-end down", f.Down)
				if err := f.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
				if st := pool.Stats(); st.Free != st.Frames {
					t.Errorf("%d of %d frames back in the pool after Close", st.Free, st.Frames)
				}
			})
			if n := testenv.Fds(t); n != fds {
				t.Errorf("%d descriptors before, %d after", fds, n)
			}
		})
	}
}
