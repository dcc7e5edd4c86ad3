package mp

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// ErrAuth is matched by the error of Dial when the listener does not
// accept its key, or does not prove that it has the same one.
var ErrAuth = errors.New("mp: authentication failed")

// HandshakeTimeout bounds a connection's authentication, on both sides:
// a client that connects and says nothing is dropped after it.
const HandshakeTimeout = 5 * time.Second

// connMagic opens the handshake: the protocol and its version.
const connMagic = "mp-conn-1"

// Listener accepts connections from other processes, as Python's
// multiprocessing.connection.Listener: over a Unix or TCP socket, each
// authenticated by a key both sides have, with a challenge and response
// (HMAC-SHA256) each way, before any value is decoded. The processes need
// not be started by mp, nor run on the same machine.
//
// Clients are authenticated concurrently: one that is slow, silent,
// sends garbage or has the wrong key does not hold up the others, and is
// dropped (after HandshakeTimeout, at most).
type Listener[T any] struct {
	ln    net.Listener
	key   []byte
	conns chan *Conn[T]
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	shaking map[net.Conn]bool // connections being authenticated
}

// Listen listens on address ("unix" or "tcp" network, as net.Listen) for
// connections authenticated by key. A key should be at least 16 random
// bytes; an empty one is refused. A Unix socket's file is removed by Close.
func Listen[T any](network, address string, key []byte) (*Listener[T], error) {
	if len(key) == 0 {
		return nil, errors.New("mp: Listen: an empty key: give both sides the same secret bytes")
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("mp: Listen: %w", err)
	}
	l := &Listener[T]{ln: ln, key: append([]byte(nil), key...), conns: make(chan *Conn[T]), done: make(chan struct{})}
	l.wg.Add(1)
	go l.serve()
	return l, nil
}

func (l *Listener[T]) serve() {
	defer l.wg.Done()
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			select {
			case <-l.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors, say: try again
			continue
		}
		l.mu.Lock()
		if l.shaking == nil {
			l.shaking = make(map[net.Conn]bool)
		}
		l.shaking[nc] = true
		l.mu.Unlock()
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			err := handshake(nc, l.key, true)
			l.mu.Lock()
			delete(l.shaking, nc)
			l.mu.Unlock()
			if err != nil {
				nc.Close()
				return
			}
			c := newSockConn[T](nc)
			select {
			case l.conns <- c:
			case <-l.done:
				nc.Close()
			}
		}()
	}
}

// Accept waits for the next authenticated connection, until ctx ends
// (then it returns ctx's cause) or the listener is closed (net.ErrClosed).
func (l *Listener[T]) Accept(ctx context.Context) (*Conn[T], error) {
	if ctx == nil {
		return nil, nilContext("Listener.Accept")
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, fmt.Errorf("mp: Listener.Accept: %w", net.ErrClosed)
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// Addr returns the address it listens on.
func (l *Listener[T]) Addr() net.Addr { return l.ln.Addr() }

// Close stops listening; connections not yet accepted are closed, those
// accepted are not. Close is idempotent.
func (l *Listener[T]) Close() error {
	var err error
	l.once.Do(func() {
		close(l.done)
		err = l.ln.Close()
		l.mu.Lock()
		for nc := range l.shaking {
			nc.Close()
		}
		l.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

// Dial connects to a Listener at address, authenticating with key, until
// ctx ends. The error matches ErrAuth if the keys differ.
func Dial[T any](ctx context.Context, network, address string, key []byte) (*Conn[T], error) {
	if ctx == nil {
		return nil, nilContext("Dial")
	}
	if len(key) == 0 {
		return nil, errors.New("mp: Dial: an empty key: give both sides the same secret bytes")
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("mp: Dial: %w", err)
	}
	stop := interrupt(ctx, nc, true)
	err = handshake(nc, key, false)
	if stop() {
		err = context.Cause(ctx) // even if it was done: it may have been cut short
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("mp: Dial %s: %w", address, err)
	}
	return newSockConn[T](nc), nil
}

// handshake authenticates a new connection, both ways: each side sends a
// random challenge, and proves it has the key by the HMAC of the other's.
// The server speaks first; it refuses a wrong answer with a 0 byte.
func handshake(nc net.Conn, key []byte, server bool) error {
	nc.SetDeadline(time.Now().Add(HandshakeTimeout))
	defer nc.SetDeadline(time.Time{})
	mac := func(role string, challenge []byte) []byte {
		m := hmac.New(sha256.New, key)
		m.Write([]byte(connMagic + role))
		m.Write(challenge)
		return m.Sum(nil)
	}
	mine := make([]byte, 32)
	rand.Read(mine)
	if server {
		if _, err := nc.Write(append([]byte(connMagic), mine...)); err != nil {
			return err
		}
		in := make([]byte, 64) // its proof, its challenge
		if _, err := io.ReadFull(nc, in); err != nil {
			return err
		}
		if !hmac.Equal(in[:32], mac("client", mine)) {
			nc.Write([]byte{0})
			return ErrAuth
		}
		_, err := nc.Write(append([]byte{1}, mac("server", in[32:])...))
		return err
	}
	in := make([]byte, len(connMagic)+32)
	if _, err := io.ReadFull(nc, in); err != nil {
		return fmt.Errorf("reading the listener's challenge: %w", err)
	}
	if string(in[:len(connMagic)]) != connMagic {
		return fmt.Errorf("%w: the other side does not speak mp's protocol", ErrAuth)
	}
	if _, err := nc.Write(append(mac("client", in[len(connMagic):]), mine...)); err != nil {
		return err
	}
	var ok [1]byte
	if _, err := io.ReadFull(nc, ok[:]); err != nil || ok[0] != 1 {
		return fmt.Errorf("%w: the listener refused the key", ErrAuth)
	}
	proof := make([]byte, 32)
	if _, err := io.ReadFull(nc, proof); err != nil {
		return err
	}
	if !hmac.Equal(proof, mac("server", mine)) {
		return fmt.Errorf("%w: the listener does not have the key", ErrAuth)
	}
	return nil
}

// interrupt has a read (or, with all, every operation) on nc fail once ctx
// ends. Its stop function ends that, and reports whether ctx interrupted;
// once it returns, nc's deadline is as it was, and no longer touched.
func interrupt(ctx context.Context, nc net.Conn, all bool) (stop func() bool) {
	fired := make(chan struct{})
	after := context.AfterFunc(ctx, func() {
		defer close(fired)
		if all {
			nc.SetDeadline(time.Unix(1, 0))
		} else {
			nc.SetReadDeadline(time.Unix(1, 0))
		}
	})
	return func() bool {
		if after() {
			return false
		}
		<-fired // it ran, or runs: let it finish before the deadline is reset
		if all {
			nc.SetDeadline(time.Time{})
		} else {
			nc.SetReadDeadline(time.Time{})
		}
		return true
	}
}

// sockConn is the socket under a Conn from Listen or Dial: values framed
// by a 4-byte length.
type sockConn struct {
	nc     net.Conn
	maxMsg int

	sendMu sync.Mutex
	hdr    [4]byte

	recvMu sync.Mutex
	br     *bufio.Reader
}

func newSockConn[T any](nc net.Conn) *Conn[T] {
	c := &Conn[T]{sock: &sockConn{nc: nc, maxMsg: wire.DefaultMaxFrame, br: bufio.NewReader(nc)}}
	return c
}

func (s *sockConn) send(v any) error {
	b, err := encodeMessage("Conn.Send", v, s.maxMsg)
	if err != nil {
		return err
	}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	binary.BigEndian.PutUint32(s.hdr[:], uint32(len(b)))
	bufs := net.Buffers{s.hdr[:], b}
	if _, err := bufs.WriteTo(s.nc); err != nil {
		return fmt.Errorf("mp: Conn.Send: %w", err)
	}
	return nil
}

// recvBytes reads one value's bytes, until ctx ends.
func (s *sockConn) recvBytes(ctx context.Context) ([]byte, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	stop := interrupt(ctx, s.nc, false)
	defer stop()
	var hdr [4]byte
	if k, err := io.ReadFull(s.br, hdr[:]); err != nil {
		if k > 0 {
			// Part of a header was read: the stream cannot be resumed.
			s.nc.Close()
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("mp: Conn.Recv: %w", err)
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > s.maxMsg {
		s.nc.Close()
		return nil, fmt.Errorf("%w: Conn.Recv: the other end sent %d bytes, over the limit of %d; the connection is closed", ErrMessageTooLarge, n, s.maxMsg)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.br, b); err != nil {
		// Part of a value was read: the stream cannot be resumed.
		s.nc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mp: Conn.Recv: %w, in the middle of a value; the connection is closed", context.Cause(ctx))
		}
		return nil, fmt.Errorf("mp: Conn.Recv: %w", io.ErrUnexpectedEOF)
	}
	return b, nil
}

func sockRecv[T any](s *sockConn, ctx context.Context) (T, error) {
	b, err := s.recvBytes(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	return decodeMessage[T]("Conn.Recv", b)
}

func (s *sockConn) poll(timeout time.Duration) (bool, error) {
	s.recvMu.Lock()
	defer s.recvMu.Unlock()
	if s.br.Buffered() > 0 {
		return true, nil
	}
	s.nc.SetReadDeadline(time.Now().Add(timeout))
	defer s.nc.SetReadDeadline(time.Time{})
	_, err := s.br.Peek(1)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return false, nil
	}
	return true, nil // a value, or the EOF or error Recv returns
}

func (s *sockConn) close() error { return s.nc.Close() }
