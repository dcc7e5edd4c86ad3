//go:build !linux

package rawio

import "net"

// Conn is a Unix socket. Here its reads and writes are the UnixConn's own.
type Conn struct {
	*net.UnixConn
}

// New returns c.
func New(c *net.UnixConn) *Conn { return &Conn{UnixConn: c} }

// Writev writes bufs, in order.
func (c *Conn) Writev(bufs [][]byte) (int64, error) {
	nb := net.Buffers(bufs)
	return nb.WriteTo(c.UnixConn)
}

// SetPolling does nothing here: reads do not poll before they wait.
func (c *Conn) SetPolling(on bool) {}
