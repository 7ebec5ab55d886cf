// Package uds is the syscall layer under vhost-user: UNIX stream sockets that carry
// file descriptors (SCM_RIGHTS), socket files with a mode and group and stale-file
// handling, eventfds, and mappings of memory passed as descriptors.
//
// Every descriptor this package returns is close-on-exec and owned by the caller.
package uds

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// MaxFds is the most descriptors one message may carry (vhost-user: 8 memory regions
// for SET_MEM_TABLE, VHOST_MEMORY_BASELINE_NREGIONS).
const MaxFds = 8

// Errors.
var (
	// ErrInUse: the socket path is served by a live process.
	ErrInUse = errors.New("uds: socket path in use by a live listener")
	// ErrNotSocket: the path exists and is not a socket; it is left alone.
	ErrNotSocket = errors.New("uds: path exists and is not a socket")
	// ErrTooManyFds: the peer sent more descriptors than the receiver accepts; the
	// ones that arrived were closed.
	ErrTooManyFds = errors.New("uds: too many file descriptors in message")
)

// Listener is a listening UNIX socket at a path. Its Close removes the path, unless
// the path no longer names this socket.
type Listener struct {
	*net.UnixListener
	path     string
	dev, ino uint64
}

// Close stops listening and removes the socket file if it is still this listener's.
func (l *Listener) Close() error {
	var st unix.Stat_t
	if unix.Lstat(l.path, &st) == nil && st.Dev == l.dev && st.Ino == l.ino {
		os.Remove(l.path)
	}
	return l.UnixListener.Close()
}

// Listen creates a listening socket at path. A stale socket file (nobody accepting on
// it) is removed first; a live one fails with ErrInUse and any other file with
// ErrNotSocket. mode (if non-zero) and group (a name or numeric gid; empty leaves it)
// are applied to the socket file so that unprivileged peers can connect.
//
// The socket is bound and listening, with its mode and group set, under a temporary
// name in the same directory, then renamed to path: a peer that sees the file can
// connect at once (binding at path directly makes the file appear before listen(2),
// and a peer that connects then is refused), and never sees it with the wrong
// permissions. The rename does not replace a file: of two processes that both found
// the path stale, one gets ErrInUse instead of both removing each other's socket.
func Listen(path string, mode os.FileMode, group string) (*Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%w: %s", ErrNotSocket, path)
		}
		c, derr := net.Dial("unix", path)
		if derr == nil {
			c.Close()
		}
		if derr == nil || errors.Is(derr, syscall.EAGAIN) {
			// EAGAIN: a live listener whose accept queue is full.
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		}
		if !errors.Is(derr, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("uds: probing %s: %w", path, derr)
		}
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	tmp := fmt.Sprintf("%s.%x", path, rnd)
	name := tmp
	if len(tmp) >= len(unix.RawSockaddrUnix{}.Path) {
		name = path // no room for a temporary name: bind at path itself
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, err
	}
	l.SetUnlinkOnClose(false)
	fail := func(err error) (*Listener, error) {
		l.Close()
		os.Remove(name)
		return nil, err
	}
	if mode != 0 {
		if err := chmodSocket(name, mode.Perm()); err != nil {
			return fail(err)
		}
	}
	if group != "" {
		gid, err := lookupGroup(group)
		if err == nil {
			err = os.Lchown(name, -1, gid)
		}
		if err != nil {
			return fail(err)
		}
	}
	var st unix.Stat_t
	if err := unix.Lstat(name, &st); err != nil {
		return fail(err)
	}
	if name != path {
		err := unix.Renameat2(unix.AT_FDCWD, name, unix.AT_FDCWD, path, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EINVAL) {
			// A file system without RENAME_NOREPLACE: link(2) does not replace either.
			if err = os.Link(name, path); err == nil {
				os.Remove(name)
			}
		}
		if errors.Is(err, unix.EEXIST) || errors.Is(err, os.ErrExist) {
			return fail(fmt.Errorf("%w: %s (created meanwhile)", ErrInUse, path))
		}
		if err != nil {
			return fail(err)
		}
	}
	return &Listener{UnixListener: l, path: path, dev: st.Dev, ino: st.Ino}, nil
}

// chmodSocket sets the permissions of the socket file name without following a
// symbolic link: one that replaced the socket between bind and chmod (someone with
// write access to the directory) would otherwise have a root back-end change its
// target's mode. fchmodat2 with AT_SYMLINK_NOFOLLOW (Linux 6.6) refuses a link;
// before it, the file is checked to be a socket first, which leaves a window there.
func chmodSocket(name string, mode os.FileMode) error {
	err := unix.Fchmodat(unix.AT_FDCWD, name, uint32(mode), unix.AT_SYMLINK_NOFOLLOW)
	if !errors.Is(err, unix.EOPNOTSUPP) {
		return os.NewSyscallError("fchmodat2", err)
	}
	// A link (which has no mode of its own), or a kernel without fchmodat2.
	fi, err := os.Lstat(name)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%w: %s", ErrNotSocket, name)
	}
	return os.Chmod(name, mode)
}

func lookupGroup(g string) (int, error) {
	if n, err := strconv.Atoi(g); err == nil {
		return n, nil
	}
	gr, err := user.LookupGroup(g)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(gr.Gid)
}

// Conn is a stream socket that carries descriptors. It is safe for one reader and one
// writer at a time.
type Conn struct {
	*net.UnixConn
	oob []byte
}

// NewConn wraps c.
func NewConn(c *net.UnixConn) *Conn {
	return &Conn{UnixConn: c, oob: make([]byte, unix.CmsgSpace(4*MaxFds))}
}

// ReadFull reads exactly len(buf) bytes. Descriptors that arrive with the first bytes
// are returned; the caller owns and must close them. More than MaxFds, or a truncated
// control message, closes what arrived and fails with ErrTooManyFds.
func (c *Conn) ReadFull(buf []byte) (fds []int, err error) {
	done := 0
	for done < len(buf) {
		n, oobn, flags, _, err := c.ReadMsgUnix(buf[done:], c.oob)
		if oobn > 0 {
			got, perr := parseRights(c.oob[:oobn])
			fds = append(fds, got...)
			if perr != nil {
				CloseAll(fds)
				return nil, perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 || len(fds) > MaxFds {
			CloseAll(fds)
			return nil, ErrTooManyFds
		}
		done += n
		if err != nil {
			CloseAll(fds)
			if errors.Is(err, io.EOF) && done > 0 {
				// The runtime wraps it (*net.OpError): compared with ==, a
				// message cut short passed for a clean end of the stream.
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if n == 0 {
			CloseAll(fds)
			return nil, io.ErrUnexpectedEOF
		}
	}
	return fds, nil
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, os.NewSyscallError("parse cmsg", err)
	}
	var fds []int
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET || msgs[i].Header.Type != unix.SCM_RIGHTS {
			continue
		}
		got, err := unix.ParseUnixRights(&msgs[i])
		if err != nil {
			CloseAll(fds)
			return nil, os.NewSyscallError("parse rights", err)
		}
		fds = append(fds, got...)
	}
	return fds, nil
}

// ErrFdsWithoutData: descriptors were given to Write with no bytes to carry them.
var ErrFdsWithoutData = errors.New("uds: descriptors without data to carry them")

// Write sends all of buf, fds attached to its first bytes, and so exactly once. A
// stream socket may take part of a message (a peer slow to read, its buffer full):
// the rest follows without them. Only an error (the deadline, the peer gone) leaves
// a message cut short, and then the stream is unusable. fds with an empty buf fail
// with ErrFdsWithoutData: on a stream socket they need a byte to travel with (the
// runtime would add a zero byte the peer takes for the start of a message).
func (c *Conn) Write(buf []byte, fds ...int) error {
	var oob []byte
	if len(fds) > 0 {
		if len(buf) == 0 {
			return ErrFdsWithoutData
		}
		oob = unix.UnixRights(fds...)
	}
	for {
		n, _, err := c.WriteMsgUnix(buf, oob, nil)
		if err != nil {
			return err
		}
		if n >= len(buf) {
			return nil
		}
		if n <= 0 {
			return io.ErrShortWrite // a stream socket that took nothing and said nothing
		}
		buf, oob = buf[n:], nil // the descriptors went with the first byte
	}
}

// CloseAll closes every descriptor in fds that is not negative.
func CloseAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// Close closes one descriptor.
func Close(fd int) error { return unix.Close(fd) }

// Eventfd returns a new non-blocking, close-on-exec eventfd.
func Eventfd() (int, error) {
	fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	return fd, os.NewSyscallError("eventfd", err)
}

// SetNonblock puts fd in non-blocking mode (O_NONBLOCK on its open file, shared with
// every other descriptor of it).
func SetNonblock(fd int) error {
	return os.NewSyscallError("fcntl", unix.SetNonblock(fd, true))
}

// ErrNotSignalFd: a descriptor passed as an eventfd is of a kind a write may grow
// or block on whatever its flags (a regular file, a directory, a device).
var ErrNotSignalFd = errors.New("uds: descriptor cannot be signalled like an eventfd")

// CheckSignalFd reports whether fd is safe to Signal: an eventfd or another
// anonymous-inode descriptor, a pipe or FIFO, or a socket, on which O_NONBLOCK
// (SetNonblock) bounds every write. A regular file is refused: each write would
// append to it (the pages charged to the writer), and on a FUSE mount the peer
// serves, a write may block however the descriptor's flags are set; devices are
// refused too (a write to one may do anything, or block).
func CheckSignalFd(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	switch st.Mode & unix.S_IFMT {
	case 0, unix.S_IFIFO, unix.S_IFSOCK:
		// 0: anonymous inodes (eventfd, timerfd, ...) have no file type.
		return nil
	case unix.S_IFREG:
		// Should a kernel report anonymous inodes as regular files, their
		// names still say what they are.
		if l, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd)); err == nil && strings.HasPrefix(l, "anon_inode:") {
			return nil
		}
	}
	return fmt.Errorf("%w: file mode %#o", ErrNotSignalFd, st.Mode)
}

// Signal adds 1 to an eventfd. buf is the caller's 8-byte scratch, so that the call
// does not allocate.
func Signal(fd int, buf *[8]byte) error {
	buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7] = 1, 0, 0, 0, 0, 0, 0, 0
	_, err := unix.Write(fd, buf[:])
	if err == unix.EAGAIN {
		return nil // counter saturated: the peer has a wake-up pending anyway
	}
	return err
}

// Drain reads (and so resets) an eventfd's counter, returning it (0 if none).
func Drain(fd int, buf *[8]byte) uint64 {
	n, err := unix.Read(fd, buf[:])
	if err != nil || n != 8 {
		return 0
	}
	return uint64(buf[0]) | uint64(buf[1])<<8 | uint64(buf[2])<<16 | uint64(buf[3])<<24 |
		uint64(buf[4])<<32 | uint64(buf[5])<<40 | uint64(buf[6])<<48 | uint64(buf[7])<<56
}

// WaitReadable blocks until fd is readable or timeoutMs passes (-1: forever).
func WaitReadable(fd int, timeoutMs int) (bool, error) {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(p, timeoutMs)
		if err == unix.EINTR {
			continue
		}
		return n > 0, err
	}
}

// Dup returns a close-on-exec duplicate of fd.
func Dup(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	return nfd, os.NewSyscallError("dup", err)
}

// Pair returns two connected stream sockets (tests, in-process peers).
func Pair() (*Conn, *Conn, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	var conns [2]*Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "uds-pair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				unix.Close(fds[1])
			}
			return nil, nil, err
		}
		conns[i] = NewConn(c.(*net.UnixConn))
	}
	return conns[0], conns[1], nil
}
