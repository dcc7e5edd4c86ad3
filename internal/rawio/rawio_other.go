//go:build !linux

package rawio

import (
	"errors"
	"net"
	"os"
)

// Conn is a Unix socket, or a pipe. Here its reads and writes are the
// UnixConn's or the File's own.
type Conn struct {
	*net.UnixConn
	f *os.File
}

// New returns c.
func New(c *net.UnixConn) *Conn { return &Conn{UnixConn: c} }

// NewFile returns f, a pipe. Only Read, Write, Writev, SetPolling and
// Close may be called on the result, which owns f.
func NewFile(f *os.File) *Conn { return &Conn{f: f} }

// Close closes the socket or the pipe. A read in progress, or to come,
// fails with net.ErrClosed.
func (c *Conn) Close() error {
	if c.f != nil {
		return c.f.Close()
	}
	return c.UnixConn.Close()
}

// Read reads into p.
func (c *Conn) Read(p []byte) (int, error) {
	if c.f != nil {
		n, err := c.f.Read(p)
		if errors.Is(err, os.ErrClosed) {
			err = net.ErrClosed
		}
		return n, err
	}
	return c.UnixConn.Read(p)
}

// Write writes p.
func (c *Conn) Write(p []byte) (int, error) {
	if c.f != nil {
		return c.f.Write(p)
	}
	return c.UnixConn.Write(p)
}

// Writev writes bufs, in order.
func (c *Conn) Writev(bufs [][]byte) (int64, error) {
	nb := net.Buffers(bufs)
	if c.f != nil {
		return nb.WriteTo(c.f)
	}
	return nb.WriteTo(c.UnixConn)
}

// SetPolling does nothing here: reads do not poll before they wait.
func (c *Conn) SetPolling(on bool) {}
