package uds

import (
	"bytes"
	"sync"
	"testing"
	"time"

	"github.com/dpkit/dpkit/internal/testenv"
)

func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

func eventfds(t *testing.T, n int) []int {
	t.Helper()
	fds := make([]int, n)
	for i := range fds {
		fd, err := Eventfd()
		if err != nil {
			t.Fatal(err)
		}
		fds[i] = fd
	}
	return fds
}

// TestWritePartialSendsFdsOnce: a message larger than the socket can take at once
// goes whole, its descriptors once, with its first bytes. Before, Write made one
// sendmsg: when the peer's buffer filled part way through, it returned
// io.ErrShortWrite with the rest unsent, the stream cut inside a message.
func TestWritePartialSendsFdsOnce(t *testing.T) {
	a, b := pair(t)
	before := testenv.Fds(t)
	msg := make([]byte, 4<<20)
	for i := range msg {
		msg[i] = byte(i * 7)
	}
	fds := eventfds(t, 2)
	var (
		wg   sync.WaitGroup
		got  = make([]byte, len(msg))
		head []int
		tail []int
		rerr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		time.Sleep(50 * time.Millisecond) // let the writer fill the socket first
		if head, rerr = b.ReadFull(got[:1]); rerr != nil {
			return
		}
		tail, rerr = b.ReadFull(got[1:])
	}()
	werr := a.Write(msg, fds...)
	if werr != nil {
		a.Close() // unblock the reader
	}
	wg.Wait()
	CloseAll(fds)
	defer CloseAll(head)
	defer CloseAll(tail)
	if werr != nil {
		t.Fatalf("Write of %d bytes with %d fds: %v", len(msg), len(fds), werr)
	}
	if rerr != nil {
		t.Fatal(rerr)
	}
	if len(head) != len(fds) || len(tail) != 0 {
		t.Fatalf("descriptors: %d with the first byte, %d after; want %d, 0", len(head), len(tail), len(fds))
	}
	if !bytes.Equal(got, msg) {
		t.Fatal("message bytes differ")
	}
	CloseAll(head)
	head = nil
	if n := testenv.Fds(t); n != before {
		t.Fatalf("%d descriptors open, %d before", n, before)
	}
}

// TestWriteFdsWithoutBytes: descriptors need a byte to travel with on a stream
// socket; Write refuses them alone rather than let the runtime add a zero byte the
// peer would take for the start of a message.
func TestWriteFdsWithoutBytes(t *testing.T) {
	a, b := pair(t)
	fds := eventfds(t, 1)
	defer CloseAll(fds)
	if err := a.Write(nil, fds...); err == nil {
		t.Fatal("Write of descriptors without bytes accepted")
	}
	if err := a.Write([]byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	var buf [3]byte
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := b.ReadFull(buf[:])
	CloseAll(got)
	if err != nil || buf != [3]byte{1, 2, 3} || len(got) != 0 {
		t.Fatalf("read %v with %d fds, %v; want [1 2 3], 0 fds", buf, len(got), err)
	}
}
