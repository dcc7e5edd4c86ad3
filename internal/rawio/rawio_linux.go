//go:build linux

package rawio

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Conn is a Unix socket, or a pipe (NewFile), whose reads and writes do
// not wake the system monitor. One goroutine at a time may read, and one
// at a time may write. A socket's deadlines and other methods are the
// UnixConn's; a pipe has only Read, Write, Writev, SetPolling and Close
// (its deadlines are its File's).
type Conn struct {
	*net.UnixConn
	rc syscall.RawConn

	// A pipe's (NewFile), in place of the UnixConn, and whether Close
	// closed it: its reads then fail with net.ErrClosed, as a socket's do.
	file   *os.File
	closed atomic.Bool

	// The state of the read in progress, kept here so that the functions
	// given to rc need not be allocated for each read.
	readFn  func(fd uintptr) bool
	rbuf    []byte
	roob    []byte
	rmsg    bool
	rn      int
	roobn   int
	rflags  int
	rerrno  syscall.Errno
	msg     syscall.Msghdr
	iov     syscall.Iovec
	writeFn func(fd uintptr) bool
	wbufs   [][]byte
	wiov    []syscall.Iovec
	wn      int64
	werrno  syscall.Errno
	one     [1][]byte

	// Polling before a wait (see spin): whether reads poll, where the read
	// in progress is, when its polling ends, and how many pollings in a
	// row found nothing.
	noPoll  bool
	rspin   spinState
	spinEnd time.Time
	misses  int
	skipped int
}

// New returns c read and written without waking the system monitor. It
// falls back to c's own methods if c gives no raw access.
func New(c *net.UnixConn) *Conn {
	rc, err := c.SyscallConn()
	if err != nil {
		return &Conn{UnixConn: c}
	}
	rw := &Conn{UnixConn: c, rc: rc}
	rw.readFn = rw.read
	rw.writeFn = rw.write
	return rw
}

// NewFile returns f, a pipe, read and written raw. Only Read, Write,
// Writev, SetPolling and Close may be called on the result, which owns f.
func NewFile(f *os.File) *Conn {
	rw := &Conn{file: f}
	rc, err := f.SyscallConn()
	if err != nil {
		return rw
	}
	rw.rc = rc
	rw.readFn = rw.read
	rw.writeFn = rw.write
	return rw
}

// Close closes the socket or the pipe. A read in progress, or to come,
// fails with net.ErrClosed.
func (c *Conn) Close() error {
	if c.file == nil {
		return c.UnixConn.Close()
	}
	c.closed.Store(true)
	return c.file.Close()
}

// Read reads into p.
func (c *Conn) Read(p []byte) (int, error) {
	if c.rc == nil {
		if c.file != nil {
			return c.file.Read(p)
		}
		return c.UnixConn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.rbuf, c.rmsg, c.rspin = p, false, spinFirst
	err := c.rc.Read(c.readFn)
	n, errno := c.rn, c.rerrno
	c.rbuf, c.rn, c.rerrno = nil, 0, 0
	switch {
	case err != nil && c.closed.Load():
		return 0, net.ErrClosed
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, os.NewSyscallError("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// ReadMsgUnix reads into b, and the control messages that come with it
// into oob. It returns no address.
func (c *Conn) ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error) {
	if c.rc == nil || len(b) == 0 || len(oob) == 0 {
		return c.UnixConn.ReadMsgUnix(b, oob)
	}
	c.rbuf, c.roob, c.rmsg, c.rspin = b, oob, true, spinFirst
	err = c.rc.Read(c.readFn)
	n, oobn, flags, errno := c.rn, c.roobn, c.rflags, c.rerrno
	c.rbuf, c.roob, c.rn, c.roobn, c.rflags, c.rerrno = nil, nil, 0, 0, 0, 0
	switch {
	case err != nil:
		return 0, 0, 0, nil, err
	case errno != 0:
		return 0, 0, 0, nil, os.NewSyscallError("recvmsg", errno)
	case n == 0 && oobn == 0:
		return 0, 0, 0, nil, io.EOF
	}
	return n, oobn, flags, nil, nil
}

// read is the function given to rc.Read: false asks it to wait until the
// socket can be read.
func (c *Conn) read(fd uintptr) bool {
	touch()
	for {
		var r uintptr
		var errno syscall.Errno
		if c.rmsg {
			c.iov.Base = &c.rbuf[0]
			c.iov.SetLen(len(c.rbuf))
			c.msg = syscall.Msghdr{Iov: &c.iov, Iovlen: 1, Control: &c.roob[0]}
			c.msg.SetControllen(len(c.roob))
			// unix's number, not syscall's: 386 has none in syscall,
			// which goes through socketcall there.
			r, _, errno = syscall.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&c.msg)), syscall.MSG_CMSG_CLOEXEC)
		} else {
			r, _, errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&c.rbuf[0])), uintptr(len(c.rbuf)))
		}
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if c.spin() {
				continue
			}
			return false
		case 0:
			if c.rspin == spinning {
				c.misses = 0 // the polling paid off
			}
			c.rn = int(r)
			if c.rmsg {
				c.roobn, c.rflags = int(c.msg.Controllen), int(c.msg.Flags)
			}
		default:
			c.rerrno = errno
		}
		return true
	}
}

// Polling: a read that finds nothing to read polls the socket again, for
// up to SpinFor, before it waits for the runtime's poller to wake it.
// Falling asleep and being woken costs each side of a round trip a switch
// of its CPU to another thread or to idle and back, and on a virtual
// machine the wake-up of an idle virtual CPU; a peer that answers within
// SpinFor is read without either. In one measurement on two cores a bare
// round trip between two processes took 35 µs with waits and 7 µs with
// polling, and an Apply 33 µs and 12 µs.
//
// The cost is CPU: at most SpinFor per read that would wait. A read
// polls with runtime.Gosched between tries, so the goroutines of its own
// process run while it polls (a worker runs its tasks with GOMAXPROCS 1);
// other processes run where the machine has a free CPU, or by preempting
// it. After maxMisses pollings in a row that found nothing (a peer that is
// slow to answer, or a machine too busy for it to answer in time) a
// connection stops polling, and tries again only every probeEvery-th wait,
// so that it does not burn CPU where polling does not help. A deadline
// that passes, or a Close, while a read polls takes effect when the
// polling ends.
const (
	SpinFor    = 20 * time.Microsecond
	maxMisses  = 4
	probeEvery = 16
)

// SetPolling sets whether a read that finds nothing to read polls before
// it waits; a new Conn's reads poll. Only a goroutine that may read may
// call it.
func (c *Conn) SetPolling(on bool) { c.noPoll = !on }

type spinState uint8

const (
	spinFirst spinState = iota // no try of the read has found nothing yet
	spinning                   // polling, until spinEnd
	spinOver                   // done polling: wait
)

// spin is called when a try of the read in progress finds nothing to read,
// and reports whether to try again rather than wait.
func (c *Conn) spin() bool {
	switch c.rspin {
	case spinFirst:
		if c.noPoll {
			c.rspin = spinOver
			return false
		}
		if c.misses >= maxMisses {
			c.skipped++
			if c.skipped%probeEvery != 0 {
				c.rspin = spinOver
				return false
			}
		}
		c.rspin, c.spinEnd = spinning, time.Now().Add(SpinFor)
	case spinning:
		if !time.Now().Before(c.spinEnd) {
			c.rspin = spinOver
			c.misses = min(c.misses+1, maxMisses)
			return false
		}
	default:
		return false
	}
	runtime.Gosched()
	return true
}

// Write writes p.
func (c *Conn) Write(p []byte) (int, error) {
	if c.rc == nil {
		if c.file != nil {
			return c.file.Write(p)
		}
		return c.UnixConn.Write(p)
	}
	c.one[0] = p
	n, err := c.Writev(c.one[:])
	c.one[0] = nil
	return int(n), err
}

// Writev writes bufs, in order, with as few system calls as it can.
func (c *Conn) Writev(bufs [][]byte) (int64, error) {
	if c.rc == nil {
		nb := net.Buffers(bufs)
		if c.file != nil {
			return nb.WriteTo(c.file)
		}
		return nb.WriteTo(c.UnixConn)
	}
	c.wbufs, c.wn = bufs, 0
	err := c.rc.Write(c.writeFn)
	n, errno := c.wn, c.werrno
	clear(c.wiov[:cap(c.wiov)])
	c.wbufs, c.wn, c.werrno = nil, 0, 0
	if err == nil && errno != 0 {
		err = os.NewSyscallError("writev", errno)
	}
	return n, err
}

// maxIov is how many buffers one writev takes (the kernel's IOV_MAX).
const maxIov = 1024

// write is the function given to rc.Write: false asks it to wait until
// the socket can be written.
func (c *Conn) write(fd uintptr) bool {
	touch()
	for {
		for len(c.wbufs) > 0 && len(c.wbufs[0]) == 0 {
			c.wbufs = c.wbufs[1:]
		}
		if len(c.wbufs) == 0 {
			return true
		}
		c.wiov = c.wiov[:0]
		for _, b := range c.wbufs {
			if len(c.wiov) == maxIov {
				break
			}
			if len(b) > 0 {
				v := syscall.Iovec{Base: &b[0]}
				v.SetLen(len(b))
				c.wiov = append(c.wiov, v)
			}
		}
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&c.wiov[0])), uintptr(len(c.wiov)))
		switch errno {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		case 0:
		default:
			c.werrno = errno
			return true
		}
		n := int64(r)
		c.wn += n
		for n > 0 {
			if int64(len(c.wbufs[0])) <= n {
				n -= int64(len(c.wbufs[0]))
				c.wbufs = c.wbufs[1:]
			} else {
				c.wbufs[0] = c.wbufs[0][n:]
				n = 0
			}
		}
	}
}

// The keeper: while messages flow, a timer bounds the system monitor's
// sleep. The monitor sleeps until the next timer when it finds every
// goroutine idle, and is woken early only by an ordinary system call.
const (
	cold      = iota // no timer: the monitor may sleep long
	touched          // a message since the timer last fired
	untouched        // the timer runs, and no message since it last fired
)

var keeper struct {
	state atomic.Int32
	once  sync.Once
	timer atomic.Pointer[time.Timer]
}

// touch marks a message, and wakes the monitor if it may be asleep long.
func touch() {
	if keeper.state.Load() == touched {
		return
	}
	if keeper.state.Swap(touched) != cold {
		return
	}
	keeper.once.Do(func() {
		t := time.AfterFunc(time.Hour, tick)
		t.Stop()
		keeper.timer.Store(t)
	})
	keeper.timer.Load().Reset(KeepAwake)
	// An ordinary system call: the runtime wakes its monitor on the way in.
	syscall.Syscall(syscall.SYS_GETPPID, 0, 0, 0)
}

// tick is the timer's: it goes on while messages flow.
func tick() {
	if keeper.state.CompareAndSwap(touched, untouched) {
		keeper.timer.Load().Reset(KeepAwake)
		return
	}
	keeper.state.CompareAndSwap(untouched, cold)
}
