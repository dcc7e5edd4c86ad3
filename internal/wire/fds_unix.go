//go:build unix

package wire

import (
	"fmt"
	"net"
	"sync"
	"syscall"
)

// SendFDs writes a KindFDs frame for ids to c, with fds attached.
func SendFDs(c *net.UnixConn, ids []uint64, fds []int) error {
	frame := FDFrame(ids)
	n, oobn, err := c.WriteMsgUnix(frame, syscall.UnixRights(fds...), nil)
	if err == nil && (n != len(frame) || oobn == 0) {
		err = fmt.Errorf("mp: sending %d descriptors: a short write (%d of %d bytes)", len(fds), n, len(frame))
	}
	return err
}

// FDReader reads a Unix socket and keeps the descriptors that arrive with
// its bytes, in order, for the KindFDs frames that name them. Put a Reader
// on top of it.
type FDReader struct {
	conn MsgConn
	oob  []byte

	mu  sync.Mutex
	fds []int
}

// MsgConn is a Unix socket that reads control messages with its bytes, as
// *net.UnixConn does.
type MsgConn interface {
	ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error)
}

// NewFDReader returns an FDReader of c.
func NewFDReader(c MsgConn) *FDReader {
	return &FDReader{conn: c, oob: make([]byte, syscall.CmsgSpace(4*MaxFDs*4))}
}

func (r *FDReader) Read(p []byte) (int, error) {
	n, oobn, flags, _, err := r.conn.ReadMsgUnix(p, r.oob)
	if oobn > 0 {
		r.keep(r.oob[:oobn])
	}
	if err == nil && flags&syscall.MSG_CTRUNC != 0 {
		// Descriptors were dropped (the process is out of them): the
		// frames that name them would get others'. Stop here.
		return n, fmt.Errorf("mp: descriptors from the parent were lost (MSG_CTRUNC): is the worker out of file descriptors?")
	}
	return n, err
}

func (r *FDReader) keep(oob []byte) {
	msgs, err := syscall.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := syscall.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			syscall.CloseOnExec(fd)
		}
		r.mu.Lock()
		r.fds = append(r.fds, fds...)
		r.mu.Unlock()
	}
}

// Take returns the next n descriptors received, oldest first, or an error
// if fewer arrived (then it takes none).
func (r *FDReader) Take(n int) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.fds) < n {
		return nil, fmt.Errorf("%w: a frame names %d descriptors, %d arrived", ErrMalformed, n, len(r.fds))
	}
	fds := append([]int(nil), r.fds[:n]...)
	r.fds = r.fds[n:]
	return fds, nil
}
