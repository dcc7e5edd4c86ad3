//go:build !unix

package wire

import (
	"errors"
	"net"
)

var errNoFDs = errors.New("mp: passing descriptors is not supported here")

// SendFDs fails: there is no SCM_RIGHTS here.
func SendFDs(c *net.UnixConn, ids []uint64, fds []int) error { return errNoFDs }

// FDReader reads a Unix socket; no descriptors arrive here.
type FDReader struct{ conn MsgConn }

// MsgConn is a Unix socket.
type MsgConn interface {
	Read(p []byte) (int, error)
}

// NewFDReader returns an FDReader of c.
func NewFDReader(c MsgConn) *FDReader { return &FDReader{conn: c} }

func (r *FDReader) Read(p []byte) (int, error) { return r.conn.Read(p) }

// Take fails: no descriptors arrive here.
func (r *FDReader) Take(n int) ([]int, error) { return nil, errNoFDs }
