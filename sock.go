package mp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/session"
)

// sockConn is the socket under a Conn from Listen or Dial: values sealed
// in frames (see internal/session), on a socket or over TLS.
type sockConn struct {
	nc  net.Conn // the socket, or the TLS connection over it
	max int      // the message size limit, both ways

	sendMu sync.Mutex // held by a send: s's sending half
	recvMu sync.Mutex // held by a recv or poll: s's receiving half
	s      *session.Conn
}

func newSockConn[T any](s *sockConn) *Conn[T] { return &Conn[T]{sock: s} }

// interrupt has nc's operations that set (a deadline setter of nc) covers
// fail once ctx ends. Its stop function ends that, and reports whether
// ctx interrupted; once it returns, the deadline is as it was, and no
// longer touched.
func interrupt(ctx context.Context, nc net.Conn, set func(time.Time) error) (stop func() bool) {
	if ctx.Done() == nil {
		return func() bool { return false }
	}
	fired := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		defer close(fired)
		set(time.Unix(1, 0))
	})
	return func() bool {
		if after() {
			return false
		}
		<-fired // it ran, or runs: let it finish before the deadline is reset
		set(time.Time{})
		return true
	}
}

// send sends one value's encoded bytes, until ctx ends.
func (s *sockConn) send(ctx context.Context, b []byte) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	stop := interrupt(ctx, s.nc, s.nc.SetWriteDeadline)
	err := s.s.Write(b)
	if stop() && err != nil {
		err = context.Cause(ctx)
	}
	if err != nil {
		if tl, ok := errors.AsType[*session.TooLargeError](err); ok {
			return fmt.Errorf("%w: Conn.Send: %v", ErrMessageTooLarge, tl)
		}
		if s.s.SendBroken() {
			// Part of a frame went out: the stream cannot be resumed.
			s.nc.Close()
			return fmt.Errorf("mp: Conn.Send: %w, in the middle of a value; the connection is closed", err)
		}
		return fmt.Errorf("mp: Conn.Send: %w", err)
	}
	return nil
}

// recv reads one value's bytes, until ctx ends.
func (s *sockConn) recv(ctx context.Context) ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	stop := interrupt(ctx, s.nc, s.nc.SetReadDeadline)
	b, err := s.s.Read()
	cut := stop() && errors.Is(err, os.ErrDeadlineExceeded)
	if cut {
		err = context.Cause(ctx)
	}
	switch {
	case err == nil:
		return b, nil
	case !s.s.Broken() && errors.Is(err, io.EOF):
		return nil, io.EOF
	case !s.s.Broken() && cut:
		return nil, err
	case !s.s.Broken():
		return nil, fmt.Errorf("mp: Conn.Recv: %w", err)
	}
	// Part of a frame was read, or a frame failed: the stream cannot be
	// resumed.
	s.nc.Close()
	if tl, ok := errors.AsType[*session.TooLargeError](err); ok {
		return nil, fmt.Errorf("%w: Conn.Recv: the other end sent %v; the connection is closed", ErrMessageTooLarge, tl)
	}
	if errors.Is(err, ErrAuth) {
		return nil, fmt.Errorf("mp: Conn.Recv: %w; the connection is closed", err)
	}
	return nil, fmt.Errorf("mp: Conn.Recv: %w, in the middle of a value; the connection is closed", err)
}

// poll waits for a value's bytes to begin to arrive (or the connection's
// end), until ctx ends.
func (s *sockConn) poll(ctx context.Context) (bool, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.s.Buffered() || s.s.Broken() {
		return true, nil
	}
	if ctx.Err() != nil {
		// A deadline in the past fails a read before it looks: give it a
		// moment to take what the kernel has.
		s.nc.SetReadDeadline(time.Now().Add(time.Millisecond))
		err := s.s.Wait()
		s.nc.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, context.Cause(ctx)
		}
		return true, nil
	}
	stop := interrupt(ctx, s.nc, s.nc.SetReadDeadline)
	err := s.s.Wait()
	if stop() && errors.Is(err, os.ErrDeadlineExceeded) {
		return false, context.Cause(ctx)
	}
	return true, nil // a value, or the EOF or error Recv returns
}

func (s *sockConn) close() error { return s.nc.Close() }
