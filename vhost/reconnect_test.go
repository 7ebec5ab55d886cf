package vhost

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/uds"
	"github.com/dpkit/dpkit/pmd"
)

// TestClientReconnectBackoff: in client mode, a front-end that accepts and hangs up
// at once gets the back-off, not a redial loop: with ReconnectMin 100 ms, a handful
// of connections in half a second (there were about 19000).
func TestClientReconnectBackoff(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "fe.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	b, _ := testBackend(t, func(o *Options) {
		o.Path, o.Client = path, true
		o.ReconnectMin, o.ReconnectMax = 100*time.Millisecond, time.Second
	})
	// From the first connection on (however late a loaded machine runs it), half a
	// second holds the first three: at 0, 100 and 300 ms.
	waitFor(t, "the first connection", func() bool { return accepted.Load() >= 1 })
	time.Sleep(500 * time.Millisecond)
	b.Close()
	if n := accepted.Load(); n > 6 {
		t.Fatalf("%d connections in 500 ms with a 100 ms back-off doubling", n)
	}
}

// TestDialFailMQ: a back-end that refuses SET_VRING_ADDR while a two-pair front-end
// sets up its first queue pair makes Dial fail with an error; its cleanup, with the
// second pair never made, must not panic.
func TestDialFailMQ(t *testing.T) {
	path := filepath.Join(shortTempDir(t), "be.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		conn := uds.NewConn(c)
		defer conn.Close()
		var hb [hdrSize]byte
		for {
			fds, err := conn.ReadFull(hb[:])
			if err != nil {
				return
			}
			h := decodeHeader(hb[:])
			p := make([]byte, h.size)
			if h.size > 0 {
				more, err := conn.ReadFull(p)
				fds = append(fds, more...)
				if err != nil {
					uds.CloseAll(fds)
					return
				}
			}
			uds.CloseAll(fds)
			var out []byte
			switch h.req {
			case ReqGetFeatures:
				out = u64(FeatureVersion1 | FeatureMQ | FeatureProtocolFeatures)
			case ReqGetProtocolFeatures:
				out = u64(ProtoMQ | ProtoReplyAck)
			case ReqGetQueueNum:
				out = u64(2)
			default:
				if h.flags&flagNeedReply == 0 {
					continue
				}
				out = u64(0)
				if h.req == ReqSetVringAddr {
					out = u64(1) // refused
				}
			}
			conn.Write(encodeReply(h.req, out))
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	f, err := Dial(ctx, FrontendOptions{Path: path, Pool: sharedPool(t), QueuePairs: 2})
	if err == nil {
		f.Close()
		t.Fatal("Dial succeeded against a back-end that refused SET_VRING_ADDR")
	}
}

// TestReconnectBounds: a back-off minimum above its maximum is refused, and a
// minimum above the default maximum (2 s) is not cut to it.
func TestReconnectBounds(t *testing.T) {
	o := Options{Path: "x", Pool: &pmd.Pool{}, ReconnectMin: 3 * time.Second, ReconnectMax: time.Second}
	if err := o.Validate(); !errors.Is(err, ErrOptions) {
		t.Fatalf("min 3 s, max 1 s: %v, want ErrOptions", err)
	}
	o.ReconnectMax = 0
	if err := o.Validate(); err != nil {
		t.Fatalf("min 3 s, default max: %v", err)
	}
	if d := o.reconnectMax(); d != 3*time.Second {
		t.Fatalf("default max with min 3 s = %v, want 3 s", d)
	}
}
