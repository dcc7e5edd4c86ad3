package mp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/shmem"
	"github.com/go-mp/mp/internal/wire"
)

// Conn is one end of a two-way connection that carries values of type T,
// as Python's multiprocessing.connection.Connection: what one end Sends,
// the other Recvs, in order. An end of a [Pipe] lives in shared memory and
// passes to other processes like a [SharedMemory]; an end from [Listen] or
// [Dial] is a socket, and stays in the process that has it.
//
// An end from Listen or Dial carries each value encrypted and
// authenticated (see [ListenOptions] for what that protects against):
// its Recv fails with an error matching [ErrAuth], and closes the
// connection, on bytes its peer did not send as they came.
//
// Send, Recv and Poll may be called from several goroutines; two Recvs at
// once each get a whole value, in turn.
type Conn[T any] struct {
	object
	end        int
	send, recv ring
	sock       *sockConn // an end from Listen or Dial
	closed     atomic.Bool
	checked    atomic.Int64 // when Send last saw the peer alive (unix ns)
	// sendGone and recvGone tell Send and Recv that the peer is gone,
	// with their errors (made once, not a closure per value).
	sendGone, recvGone func() error
	peerLost           atomic.Bool // Recv saw the peer closed or dead
}

// The words of a Pipe's segment after its two rings' headers: which
// process holds each end (0 while it is on its way to one), whether each
// end is closed, and which process last passed each end on.
const (
	pipeHolder  = 2 * ringHeader
	pipeClosed  = pipeHolder + 8
	pipePasser  = pipeHolder + 16
	pipeRingLen = 64 << 10
)

// Pipe makes a connected pair of ends, as Python's multiprocessing.Pipe:
// pass one (or both) to other processes. Values cross through shared
// memory, with no system call while both ends are busy; one bigger than
// 32 KiB streams through.
//
// Recv on an end whose peer was closed, or whose peer's process died,
// returns what was sent before, then io.EOF. An end is held by the last
// process it was passed to (or used by): when an end goes to another
// process, Close the copy left behind, as with Python's pipes, so that
// only the process that uses it decides when the peer sees EOF.
//
// Cost: a value crosses through shared memory, with no system call while
// both ends are busy (see BenchmarkPipe in bench/, and bench/RESULTS.md).
func Pipe[T any]() (*Conn[T], *Conn[T], error) {
	if err := shmem.Supported(); err != nil {
		return nil, nil, err
	}
	a, err := newObject[Conn[T]](kindPipe, 4096+2*pipeRingLen)
	if err != nil {
		return nil, nil, err
	}
	a.h.acquire()
	b := &Conn[T]{object: object{h: a.h}}
	b.own = own(b, a.h)
	for i, c := range []*Conn[T]{a, b} {
		c.setEnd(i)
		atomic.StoreUint32(c.holder(i), myPID)
		atomic.StoreUint32(c.send.w(rMaxMessage), uint32(wire.DefaultMaxFrame))
	}
	return a, b, nil
}

func (c *Conn[T]) setEnd(i int) {
	c.end = i
	rings := [2]ring{
		newRing("Pipe", c.h.mem[:ringHeader], c.h.mem[4096:4096+pipeRingLen]),
		newRing("Pipe", c.h.mem[ringHeader:2*ringHeader], c.h.mem[4096+pipeRingLen:]),
	}
	c.send, c.recv = rings[i], rings[1-i]
	c.sendGone, c.recvGone = c.peerGone(errPeerGone), c.peerGone(io.EOF)
}

func (c *Conn[T]) holder(end int) *uint32   { return shmem.Word(c.h.mem, pipeHolder+4*end) }
func (c *Conn[T]) isClosed(end int) *uint32 { return shmem.Word(c.h.mem, pipeClosed+4*end) }

// MarshalCBOR encodes a Pipe end for mp to pass to another process; an
// end from Listen or Dial cannot be passed.
func (c *Conn[T]) MarshalCBOR() ([]byte, error) {
	if c.sock != nil {
		return nil, errors.New("mp: a Conn from Listen or Dial cannot be passed to another process: pass a Pipe end")
	}
	b, err := marshalHandleAux(c.h, c.end)
	if err == nil {
		// On its way: held by no one until the process it goes to decodes
		// it; if that never happens, the process that passed it answers
		// for it (see peerGone).
		atomic.StoreUint32(shmem.Word(c.h.mem, pipePasser+4*c.end), myPID)
		atomic.StoreUint32(c.holder(c.end), 0)
	}
	return b, err
}

// UnmarshalCBOR decodes a Pipe end passed by the parent, in a worker.
func (c *Conn[T]) UnmarshalCBOR(data []byte) error {
	h, w, err := unmarshalHandleWire(data, kindPipe)
	if err != nil {
		return err
	}
	if w.Aux != 0 && w.Aux != 1 {
		return fmt.Errorf("%w: Pipe end %d", wire.ErrMalformed, w.Aux)
	}
	c.h = h
	decoded(c, h)
	c.setEnd(w.Aux)
	atomic.StoreUint32(c.holder(c.end), myPID)
	return nil
}

// use checks that the end is open and marks this process its holder.
func (c *Conn[T]) use(what string) error {
	if c.closed.Load() || c.own.closed() {
		return fmt.Errorf("mp: Conn.%s: %w", what, io.ErrClosedPipe)
	}
	if c.sock == nil {
		if w := c.holder(c.end); atomic.LoadUint32(w) != myPID {
			atomic.StoreUint32(w, myPID)
		}
	}
	return nil
}

// peerGone returns err if the peer end is closed or its holder died.
func (c *Conn[T]) peerGone(err error) func() error {
	return func() error {
		if c.closed.Load() {
			return fmt.Errorf("this end was closed: %w", io.ErrClosedPipe)
		}
		peer := 1 - c.end
		if atomic.LoadUint32(c.isClosed(peer)) == 1 {
			return err
		}
		p := atomic.LoadUint32(c.holder(peer))
		if p == 0 { // on its way to a process: the one that passed it answers for it
			p = atomic.LoadUint32(shmem.Word(c.h.mem, pipePasser+4*peer))
		}
		if p != 0 && p != myPID && !shmem.Alive(int(p)) {
			return err
		}
		return nil
	}
}

// errPeerGone is the error of Send when no one can receive.
var errPeerGone = fmt.Errorf("the other end is closed, or its process died: %w", io.ErrClosedPipe)

// Send sends v to the other end. It waits while the other end is behind
// by more than the connection buffers, as a pipe write does, until ctx
// ends (then it returns ctx's cause; on a Conn from Listen or Dial whose
// value was cut short, the connection is closed). It fails if this end
// is closed or the other end is closed or its process died (both match
// io.ErrClosedPipe), or if v cannot be encoded or is over the message
// size limit (ErrMessageTooLarge).
func (c *Conn[T]) Send(ctx context.Context, v T) error {
	defer runtime.KeepAlive(c) // see object
	if ctx == nil {
		return nilContext("Conn.Send")
	}
	if err := c.use("Send"); err != nil {
		return err
	}
	if c.sock != nil {
		b, err := encodeMessage("Conn.Send", v, c.sock.max)
		if err != nil {
			return err
		}
		return c.sock.send(ctx, b)
	}
	b, err := encodeMessage("Conn.Send", v, int(atomic.LoadUint32(c.send.w(rMaxMessage))))
	if err != nil {
		return err
	}
	gone := c.sendGone
	// Whether the peer lives is asked at most every deadPoll (it reads
	// /proc): a value sent just after the peer died is lost, as one
	// written to a socket is.
	if c.peerLost.Load() || atomic.LoadUint32(c.isClosed(1-c.end)) == 1 {
		return fmt.Errorf("mp: Conn.Send: %w", errPeerGone)
	}
	if now := time.Now().UnixNano(); now-c.checked.Load() > int64(deadPoll) {
		if err := gone(); err != nil {
			return fmt.Errorf("mp: Conn.Send: %w", err)
		}
		c.checked.Store(now)
	}
	if err := c.send.put(ctx, b, gone); err != nil {
		return callError("Conn.Send", err)
	}
	return nil
}

// Recv receives the next value from the other end, waiting until one
// comes or ctx ends (then it returns ctx's cause). Once the other end is
// closed or its process died, and every value it sent has been received,
// it returns io.EOF. If this end is closed, its error matches
// io.ErrClosedPipe. On an end from Listen or Dial, a value over the
// message size limit (ErrMessageTooLarge), a frame the peer did not send
// (ErrAuth), and a ctx that ends in the middle of a value close the
// connection.
func (c *Conn[T]) Recv(ctx context.Context) (T, error) {
	defer runtime.KeepAlive(c) // see object
	var zero T
	if ctx == nil {
		return zero, nilContext("Conn.Recv")
	}
	if err := c.use("Recv"); err != nil {
		return zero, err
	}
	var b []byte
	var err error
	if c.sock != nil {
		b, err = c.sock.recv(ctx)
		if err != nil && c.closed.Load() {
			err = fmt.Errorf("mp: Conn.Recv: %w", io.ErrClosedPipe)
		}
	} else {
		b, err = c.recv.get(ctx, nil, c.recvGone)
		if err == io.EOF {
			c.peerLost.Store(true)
		}
	}
	if err != nil {
		return zero, err
	}
	return decodeMessage[T]("Conn.Recv", b)
}

// Poll reports whether a Recv would return at once (a value, or io.EOF),
// waiting until one comes or ctx ends: then it returns false and ctx's
// cause. With a ctx that has ended already, it only looks.
func (c *Conn[T]) Poll(ctx context.Context) (bool, error) {
	defer runtime.KeepAlive(c) // see object
	if ctx == nil {
		return false, nilContext("Conn.Poll")
	}
	if err := c.use("Poll"); err != nil {
		return false, err
	}
	if c.sock != nil {
		return c.sock.poll(ctx)
	}
	gone := c.recvGone
	for {
		seen := atomic.LoadUint32(c.recv.w(rDataSeq))
		if !c.recv.empty() || gone() != nil {
			return true, nil
		}
		if ctx.Err() != nil {
			return false, context.Cause(ctx)
		}
		c.recv.wait(ctx, rDataSeq, rGetWaiters, seen)
	}
}

// Close closes this end in this process: its Send, Recv and Poll fail
// from then on. If this process holds it (it was not passed on), the other
// end's Recv returns io.EOF once it has received what was sent, and its
// Send fails. Close is idempotent; a Recv waiting in another goroutine
// returns an error matching io.ErrClosedPipe. The end's memory is
// freed once no process can reach it.
func (c *Conn[T]) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	if c.sock != nil {
		return c.sock.close()
	}
	if atomic.LoadUint32(c.holder(c.end)) == myPID {
		atomic.StoreUint32(c.isClosed(c.end), 1)
		c.recv.wake(rSpaceSeq, rPutWaiters) // a peer waiting to send
		c.send.wake(rDataSeq, rGetWaiters)  // a peer waiting to receive
	}
	c.recv.wake(rDataSeq, rGetWaiters) // a Recv of this process, to see it closed
	// The memory stays mapped while the Conn is reachable: another
	// goroutine may be in Recv. A cleanup releases it.
	return nil
}
