package mp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/session"
	"github.com/go-mp/mp/internal/wire"
)

// defaultHandshakeTimeout is ListenOptions.HandshakeTimeout's default, and
// the bound of Dial's handshake when its ctx has no deadline.
const defaultHandshakeTimeout = 5 * time.Second

// ListenOptions configures Listen. The zero value listens on a Unix
// socket, or on a loopback TCP address, with the key alone, and the
// defaults below.
//
// What protects a connection: the key, which both sides must have, is
// proved both ways before any value is read, and every value after that
// is encrypted and authenticated (AES-256-GCM) with keys drawn from the
// key and that handshake, in order: whoever relays or watches the bytes
// can neither read a value, nor inject, alter, replay or reorder one. It
// can still cut the connection (Recv then returns io.EOF, as if the peer
// had closed it), and see how many values cross and their sizes. TLS adds what the key alone cannot: a watcher of the handshake
// of a key that is not random could guess it offline (a 16-byte random
// key cannot be guessed), anyone who learns the key later can read what
// was recorded (TLS keeps past sessions secret), and a certificate says
// who the server is.
type ListenOptions struct {
	// TLS, if not nil, runs each connection over TLS with this config,
	// which must hold the server's certificate (Certificates or
	// GetCertificate); the key is proved inside TLS, as without it.
	// Clients must Dial with TLS too.
	TLS *tls.Config
	// AllowWithoutTLS lets Listen take a TCP address that is not loopback
	// (another interface, or all of them: ":8000") without TLS. Without
	// it, Listen refuses that, as the key alone protects a connection
	// that leaves the machine less than TLS does (see above). Unix
	// sockets and loopback addresses need neither.
	AllowWithoutTLS bool
	// MaxMessageSize limits each value received (and sent) on the
	// connections, encoded: a peer that sends more has its connection
	// closed. Zero means 64 MiB; the most is 2 GiB. Give Dial the same.
	MaxMessageSize int
	// MaxHandshakes caps the connections being authenticated at once.
	// When it is reached, a new connection closes the one that has been
	// authenticating longest, at once: a crowd of silent clients holds no
	// more than MaxHandshakes goroutines and descriptors, and to keep a
	// client with the key out it must open MaxHandshakes connections
	// within that client's handshake (a round trip and a half), not
	// merely hold them. Zero means 64.
	MaxHandshakes int
	// HandshakeTimeout bounds each connection's authentication: a client
	// that connects and does not prove the key within it is dropped.
	// Zero means 5 s.
	HandshakeTimeout time.Duration
}

func (o ListenOptions) maxHandshakes() int {
	if o.MaxHandshakes > 0 {
		return o.MaxHandshakes
	}
	return 64
}

func (o ListenOptions) handshakeTimeout() time.Duration {
	if o.HandshakeTimeout > 0 {
		return o.HandshakeTimeout
	}
	return defaultHandshakeTimeout
}

// DialOptions configures Dial. The zero value dials without TLS, with a
// 64 MiB message limit.
type DialOptions struct {
	// TLS, if not nil, runs the connection over TLS with this config, to
	// a Listener that has TLS. If its ServerName is empty, the host of
	// the address is the name the server's certificate must have.
	TLS *tls.Config
	// MaxMessageSize limits each value received (and sent), encoded, as
	// ListenOptions.MaxMessageSize does. Zero means 64 MiB; the most is
	// 2 GiB.
	MaxMessageSize int
}

// maxMessage is a message size limit in force: max, or its default,
// within what the wire format can carry.
func maxMessage(max int) int {
	if max <= 0 {
		return wire.DefaultMaxFrame
	}
	return min(max, wire.MaxFrameLimit-session.Overhead)
}

// Listener accepts connections from other processes, as Python's
// multiprocessing.connection.Listener: over a Unix or TCP socket, each
// authenticated by a key both sides have, then encrypted and
// authenticated value by value (see ListenOptions for what that protects
// against). The processes need not be started by mp, nor run on the same
// machine.
//
// Clients are authenticated concurrently: one that is slow, silent,
// sends garbage or has the wrong key does not hold up the others, and is
// dropped (after ListenOptions.HandshakeTimeout, at most). Its methods
// are safe for concurrent use.
type Listener[T any] struct {
	ln    net.Listener
	key   []byte
	opts  ListenOptions
	conns chan *Conn[T]
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup

	mu      sync.Mutex
	shaking map[net.Conn]uint64 // connections being authenticated, by the order they came in
	next    uint64
}

// checkNetwork refuses networks other than stream sockets.
func checkNetwork(what, network string) error {
	switch network {
	case "unix", "tcp", "tcp4", "tcp6":
		return nil
	}
	return fmt.Errorf("mp: %s: network %q: use \"unix\", \"tcp\", \"tcp4\" or \"tcp6\"", what, network)
}

// Listen listens on address ("unix" or "tcp" network, as net.Listen) for
// connections authenticated by key, which must be at least 16 bytes (32
// random bytes from crypto/rand are best): a shorter one is refused. A
// TCP address that is not loopback is refused unless opts has TLS or
// AllowWithoutTLS. A Unix socket's file is removed by Close.
func Listen[T any](network, address string, key []byte, opts ListenOptions) (*Listener[T], error) {
	if err := checkNetwork("Listen", network); err != nil {
		return nil, err
	}
	if err := session.CheckKey(key); err != nil {
		return nil, fmt.Errorf("mp: Listen: %w", err)
	}
	ln, err := net.Listen(network, address)
	if err != nil {
		return nil, fmt.Errorf("mp: Listen: %w", err)
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() && opts.TLS == nil && !opts.AllowWithoutTLS {
		ln.Close()
		return nil, fmt.Errorf("mp: Listen: %s is not a loopback address, and connections from other machines need TLS: set ListenOptions.TLS, or ListenOptions.AllowWithoutTLS to rely on the key alone (see ListenOptions), or listen on 127.0.0.1", address)
	}
	l := &Listener[T]{
		ln: ln, key: append([]byte(nil), key...), opts: opts,
		conns: make(chan *Conn[T]), done: make(chan struct{}),
		shaking: make(map[net.Conn]uint64),
	}
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
		l.admit(nc)
		l.wg.Add(1)
		go l.authenticate(nc)
	}
}

// admit counts nc among the connections being authenticated, first
// closing the oldest of them if there are MaxHandshakes already.
//
// Tsunami stone: close the oldest, not the newcomer (issue 18). Refusing
// newcomers lets MaxHandshakes silent clients, renewed every
// HandshakeTimeout, keep every client with the key out.
func (l *Listener[T]) admit(nc net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.shaking) >= l.opts.maxHandshakes() {
		var oldest net.Conn
		for c, n := range l.shaking {
			if oldest == nil || n < l.shaking[oldest] {
				oldest = c
			}
		}
		oldest.Close()
		delete(l.shaking, oldest)
	}
	l.shaking[nc] = l.next
	l.next++
}

// authenticate runs nc's handshake, and hands the connection to Accept.
func (l *Listener[T]) authenticate(nc net.Conn) {
	defer l.wg.Done()
	sc, err := l.handshake(nc)
	l.mu.Lock()
	_, kept := l.shaking[nc] // not closed to make room meanwhile
	delete(l.shaking, nc)
	l.mu.Unlock()
	if err != nil || !kept {
		nc.Close()
		return
	}
	select {
	case l.conns <- newSockConn[T](sc):
	case <-l.done:
		sc.close()
	}
}

func (l *Listener[T]) handshake(nc net.Conn) (*sockConn, error) {
	nc.SetDeadline(time.Now().Add(l.opts.handshakeTimeout()))
	var rw net.Conn = nc
	if l.opts.TLS != nil {
		rw = tls.Server(nc, l.opts.TLS)
	}
	s, err := session.Server(rw, l.key, maxMessage(l.opts.MaxMessageSize))
	if err != nil {
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return &sockConn{nc: rw, s: s, max: maxMessage(l.opts.MaxMessageSize)}, nil
}

// Accept waits for the next authenticated connection, until ctx ends
// (then it returns ctx's cause) or the listener is closed (net.ErrClosed).
// The caller must Close the Conn.
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

// Dial connects to a Listener at address, authenticating with key (at
// least 16 bytes, as for Listen), until ctx ends; if ctx has no deadline,
// the handshake after connecting is given 5 s. The error matches ErrAuth
// if the keys differ, or if one side has TLS and the other not. opts must
// agree with the listener's: TLS on both or neither, the same
// MaxMessageSize.
func Dial[T any](ctx context.Context, network, address string, key []byte, opts DialOptions) (*Conn[T], error) {
	if ctx == nil {
		return nil, nilContext("Dial")
	}
	if err := checkNetwork("Dial", network); err != nil {
		return nil, err
	}
	if err := session.CheckKey(key); err != nil {
		return nil, fmt.Errorf("mp: Dial: %w", err)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("mp: Dial: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, defaultHandshakeTimeout,
			fmt.Errorf("mp: Dial %s: no handshake within %v: is an mp Listener there, with TLS if this side has it?", address, defaultHandshakeTimeout))
		defer cancel()
	}
	rw := nc
	if opts.TLS != nil {
		cfg := opts.TLS
		if cfg.ServerName == "" && network != "unix" {
			cfg = cfg.Clone()
			cfg.ServerName, _, _ = net.SplitHostPort(address)
		}
		rw = tls.Client(nc, cfg)
	}
	stop := interrupt(ctx, nc, nc.SetDeadline)
	max := maxMessage(opts.MaxMessageSize)
	s, err := session.Client(rw, key, max)
	if stop() {
		err = context.Cause(ctx) // even if it was done: it may have been cut short
	}
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("mp: Dial %s: %w", address, err)
	}
	return newSockConn[T](&sockConn{nc: rw, s: s, max: max}), nil
}
