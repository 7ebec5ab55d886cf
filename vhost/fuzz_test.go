package vhost

import (
	"testing"

	"github.com/dpkit/dpkit/internal/uds"
)

// FuzzDispatch decodes a stream of messages from the input and dispatches each on one
// device, as the socket loop does: header, payload, and a descriptor count taken from
// the input (memfds, so SET_MEM_TABLE and ADD_MEM_REG can map them). Nothing may panic
// and no descriptor may stay open once the device is torn down.
func FuzzDispatch(f *testing.F) {
	seed := func(msgs ...[]byte) []byte {
		var b []byte
		for _, m := range msgs {
			b = append(b, m...)
		}
		return b
	}
	raw := func(req Request, flags uint32, nfds byte, p []byte) []byte {
		b := make([]byte, hdrSize+1+len(p))
		encodeHeader(b, header{req: req, flags: flags, size: uint32(len(p))})
		b[hdrSize] = nfds
		copy(b[hdrSize+1:], p)
		return b
	}
	table := make([]byte, sizeMemTable+regionSize)
	le.PutUint32(table, 1)
	encodeRegion(table[8:], memRegion{GuestAddr: 0, Size: 1 << 16, UserAddr: 0x10000})
	addr := make([]byte, sizeAddr)
	le.PutUint64(addr[8:], 0x10000)
	le.PutUint64(addr[16:], 0x11000)
	le.PutUint64(addr[24:], 0x12000)
	f.Add(seed(
		raw(ReqGetFeatures, 1, 0, nil),
		raw(ReqSetFeatures, 1, 0, u64(FeatureVersion1|FeatureProtocolFeatures)),
		raw(ReqSetProtocolFeatures, 1, 0, u64(ProtoReplyAck|ProtoConfigureMemSlots)),
		raw(ReqSetMemTable, 9, 1, table),
		raw(ReqSetVringNum, 9, 0, stateB(0, 64)),
		raw(ReqSetVringAddr, 9, 0, addr),
		raw(ReqSetVringEnable, 9, 0, stateB(0, 1)),
		raw(ReqSetVringKick, 9, 0, u64(vringNoFd)),
		raw(ReqGetVringBase, 1, 0, stateB(0, 0)),
	))
	f.Add(seed(raw(ReqAddMemReg, 9, 1, append(make([]byte, 8), table[8:]...)), raw(ReqRemMemReg, 9, 0, append(make([]byte, 8), table[8:]...))))
	f.Add(seed(raw(ReqSetLogBase, 1, 1, make([]byte, 16)), raw(ReqSetInflightFd, 1, 1, make([]byte, 24))))
	f.Add(seed(raw(ReqSetStatus, 9, 0, u64(0x0f)), raw(ReqSetStatus, 9, 0, u64(0x100)), raw(ReqGetStatus, 1, 0, nil)))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := openFds(t)
		d := newDevice(&Options{QueuePairs: 2})
		defer func() {
			d.teardown()
			if n := openFds(t); n != before {
				t.Errorf("%d descriptors open after teardown, %d before", n, before)
			}
		}()
		for len(data) >= hdrSize+1 {
			h := decodeHeader(data)
			nfds := int(data[hdrSize] % 4)
			data = data[hdrSize+1:]
			if h.size > uint32(len(data)) || h.size > maxPayload {
				return
			}
			p := data[:h.size]
			data = data[h.size:]
			fds := make([]int, nfds)
			for i := range fds {
				fd, err := uds.MemfdWithSize("fuzz", 1<<16)
				if err != nil {
					t.Fatal(err)
				}
				fds[i] = fd
			}
			res := d.dispatch(&message{hdr: h, payload: p, fds: fds})
			if res.fatal != nil {
				return
			}
		}
	})
}

// FuzzServe feeds a raw byte stream (any framing, any sizes) to the connection loop
// over a socket pair: it must end cleanly, never panic or hang.
func FuzzServe(f *testing.F) {
	h := make([]byte, hdrSize)
	encodeHeader(h, header{req: ReqGetFeatures, flags: flagVersion})
	f.Add(h)
	encodeHeader(h, header{req: ReqSetFeatures, flags: flagVersion, size: 8})
	f.Add(append(h, 0, 0, 0, 0, 1, 0, 0, 0))
	encodeHeader(h, header{req: ReqSetMemTable, flags: flagVersion, size: 1 << 30})
	f.Add(h)
	f.Fuzz(func(t *testing.T, data []byte) {
		a, b, err := uds.Pair()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		go func() {
			a.Write(data)
			a.CloseWrite()
			// Drain replies so the server never blocks writing them.
			var sink [4096]byte
			for {
				if _, err := a.Read(sink[:]); err != nil {
					return
				}
			}
		}()
		d := newDevice(&Options{QueuePairs: 1})
		serveDevice(b, d)
		d.teardown()
		b.Close()
	})
}

// FuzzServeFds feeds the connection loop a stream cut into sends of the input's
// choosing, each with descriptors attached (memfds or eventfds, up to more than a
// message may carry): it must end cleanly, and once the device is torn down no
// descriptor the peer sent may stay open. Each record of the input is a descriptor
// byte (count in bits 0-3, memfds if bit 7 is set), a length byte and that many
// bytes of the stream.
func FuzzServeFds(f *testing.F) {
	rec := func(nfds byte, p []byte) []byte { return append([]byte{nfds, byte(len(p))}, p...) }
	hdr := func(req Request, flags, size uint32) []byte {
		b := make([]byte, hdrSize)
		encodeHeader(b, header{req: req, flags: flags, size: size})
		return b
	}
	table := make([]byte, sizeMemTable+regionSize)
	le.PutUint32(table, 1)
	encodeRegion(table[8:], memRegion{GuestAddr: 0, Size: 1 << 16, UserAddr: 0x10000})
	f.Add(append(rec(0x81, hdr(ReqSetMemTable, flagVersion, uint32(len(table)))), rec(0, table)...))
	f.Add(append(rec(8, hdr(ReqSetMemTable, flagVersion, uint32(len(table)))), rec(1, table)...))
	f.Add(rec(9, hdr(ReqGetFeatures, flagVersion, 0)))
	f.Add(append(rec(1, hdr(ReqSetVringKick, flagVersion, 8)[:5]), rec(1, append(hdr(ReqSetVringKick, flagVersion, 8)[5:], u64(0)...))...))
	f.Add(append(rec(1, hdr(ReqSetLogFd, flagVersion, 0)), rec(2, hdr(ReqSetStatus, flagVersion|flagNeedReply, 8))...))
	f.Fuzz(func(t *testing.T, data []byte) {
		before := openFds(t)
		a, b, err := uds.Pair()
		if err != nil {
			t.Fatal(err)
		}
		peerErr := make(chan error, 1)
		go func() {
			var err error
			for d := data; len(d) >= 2 && err == nil; {
				nfds, memfds, n := int(d[0]&0xf), d[0]&0x80 != 0, int(d[1])
				d = d[2:]
				n = min(n, len(d))
				chunk := d[:n]
				d = d[n:]
				fds := make([]int, 0, nfds)
				for range nfds {
					var fd int
					if memfds {
						fd, err = uds.MemfdWithSize("fuzz", 1<<16)
					} else {
						fd, err = uds.Eventfd()
					}
					if err != nil {
						break
					}
					fds = append(fds, fd)
				}
				if err == nil && len(chunk) > 0 {
					a.Write(chunk, fds...) // the back-end may have hung up
				}
				uds.CloseAll(fds)
			}
			a.CloseWrite()
			// Drain replies so the server never blocks writing them.
			var sink [4096]byte
			for {
				if _, rerr := a.Read(sink[:]); rerr != nil {
					break
				}
			}
			a.Close() // before the report: the count after must not race with it
			peerErr <- err
		}()
		d := newDevice(&Options{QueuePairs: 1})
		serveDevice(b, d)
		d.teardown()
		b.Close()
		if err := <-peerErr; err != nil {
			t.Fatal(err)
		}
		if n := openFds(t); n != before {
			t.Fatalf("%d descriptors open after the connection, %d before", n, before)
		}
	})
}
