package mp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// read receives a worker's frames while it has tasks in flight, until its
// connection ends, and then reports why on wc.dead. While the worker is
// idle it sends nothing, and read waits off the socket, for a wake (see
// step) or the worker's exit: the next Apply's caller may then read its
// own result itself (readFor), and save the hand-off from this goroutine
// to it, a thread wake-up that on two cores costs more than the round
// trip itself.
func (s *slot) read(wc *workerConn) {
	exited := wc.child.Done()
	idle := &idleReader{s, wc, exited}
	for {
		if !s.busy(wc) {
			select {
			case <-wc.readWake:
			case <-exited:
			}
		} else {
			select { // it reads now: a wake for this is spent
			case <-wc.readWake:
			default:
			}
		}
		wc.readMu.Lock()
		if wc.readEnd {
			wc.readMu.Unlock()
			return
		}
		s.readFrames(wc, idle)
		wc.readMu.Unlock()
	}
}

// idleReader is enough for a slot's reader: its worker is idle, and alive.
type idleReader struct {
	s      *slot
	wc     *workerConn
	exited <-chan struct{}
}

func (r *idleReader) enough() bool {
	select {
	case <-r.exited:
		return false // read on, to the end of its frames
	default:
		return !r.s.busy(r.wc)
	}
}

// reading says when a reader of a worker has read enough (see readFrames).
type reading interface{ enough() bool }

// busy reports whether wc, the slot's worker, has tasks in flight.
func (s *slot) busy(wc *workerConn) bool {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	return s.wc == wc && len(s.inflight) > 0
}

// readFrames reads and handles frames until r has enough, asked each time every
// frame received is handled, says so, or the connection ends: then it
// reports why on wc.dead, and returns false. The caller holds wc.readMu.
func (s *slot) readFrames(wc *workerConn, r reading) bool {
	for {
		f, err := wc.r.Read()
		if err == nil {
			err = s.handle(wc, f)
		} else if !peerGone(err) && !errors.Is(err, net.ErrClosed) {
			// Bytes that are not a frame: the worker cannot be talked to
			// any more. Kill it now, not when its tasks time out.
			s.protocolError(wc, err)
		}
		if err != nil {
			// Not ready from now on: no task must be sent to a worker
			// that is gone, and be blamed for its end.
			s.p.mu.Lock()
			if s.wc == wc {
				s.state = slotDying
			}
			s.p.mu.Unlock()
			wc.readEnd = true
			wc.dead <- err
			return false
		}
		if wc.r.Buffered() == 0 {
			// Every frame received so far is handled: send the worker
			// what it should run next, all at once.
			s.kick(true)
			if r.enough() {
				return true
			}
		}
	}
}

// wakeReader has the slot's reader read wc, if it waits.
func wakeReader(wc *workerConn) {
	select {
	case wc.readWake <- struct{}{}:
	default:
	}
}

// readFor has an Apply's caller read its own result from its worker, if
// the unit went to an idle worker that nobody reads (see call.claimed).
// It returns false if the caller must wait to be woken instead: someone
// else reads, or the worker's connection ended (its reader reports it).
// r has enough once the call's outcome is in.
func (p *Pool) readFor(c *call, r reading) bool {
	p.mu.Lock()
	c.claimable = false
	s, wc := c.claimed, c.claimedWC
	c.claimed, c.claimedWC = nil, nil
	p.mu.Unlock()
	if s == nil {
		return false
	}
	if !wc.readMu.TryLock() {
		// Whoever holds it reads on while the worker is busy, or looks
		// again after it lets go (see read, and below).
		return false
	}
	if wc.readEnd {
		wc.readMu.Unlock()
		return false
	}
	ok := true
	if !r.enough() { // else the reader was reading anyway, and read it
		var stop func() bool
		if c.ctx.Done() != nil {
			stop = context.AfterFunc(c.ctx, func() { p.cancelCall(c) })
		}
		// The result is usually moments away: poll for it, rather than
		// fall asleep and be woken (see rawio.SpinFor).
		wc.raw.SetPolling(true)
		ok = s.readFrames(wc, r)
		wc.raw.SetPolling(false)
		if stop != nil {
			stop()
		}
	}
	wc.readMu.Unlock()
	// Only now: a caller whose task went to the worker before the unlock
	// found readMu held, and left the reading to whoever held it.
	if ok && s.busy(wc) {
		wakeReader(wc) // tasks of other calls went to the worker meanwhile
	}
	return ok
}

// protocolError kills a worker that cannot be talked to, and records why.
func (s *slot) protocolError(wc *workerConn, err error) {
	s.p.mu.Lock()
	if s.wc == wc && s.kill.cause == causeNone {
		s.kill = killReason{causeProtocol, err}
	}
	s.p.mu.Unlock()
	wc.child.KillGroup()
}

// handle acts on one frame from the worker.
func (s *slot) handle(wc *workerConn, f wire.Frame) error {
	p := s.p
	var res wire.Result
	switch f.Kind {
	case wire.KindResult:
		var err error
		if res, err = wire.ParseResult(f.Payload); err != nil {
			s.protocolError(wc, err)
			return err
		}
	case wire.KindRevoked:
	case wire.KindOverrun:
		return s.overrun(wc, f)
	case wire.KindProgress:
		return s.progress(wc, f)
	default:
		err := fmt.Errorf("%w: unexpected %v frame from worker", wire.ErrMalformed, f.Kind)
		s.protocolError(wc, err)
		return err
	}
	p.mu.Lock()
	u := s.takeLocked(f.ID)
	if u == nil {
		p.mu.Unlock()
		err := fmt.Errorf("%w: %v frame for unknown task %d", wire.ErrMalformed, f.Kind, f.ID)
		s.protocolError(wc, err)
		return err
	}
	if p.opts.MaxWorkerMemory > 0 && res.RSS > uint64(p.opts.MaxWorkerMemory) && s.retire == causeNone {
		s.retire = causeRecycleMemory
	}
	revoked := f.Kind == wire.KindRevoked && u.failed == nil
	if revoked {
		u.reset()
		s.tasks -= u.n // they never ran here
		if err := p.requeueLocked(u); err != nil {
			u.failed, revoked = err, false
		}
	}
	p.mu.Unlock()
	switch {
	case revoked:
		p.wakeAll()
	case u.cause == causeTimeout && u.n == 1 && f.Kind == wire.KindResult && res.N == 1 && len(res.Failures) == 0:
		// The parent's clock said the task ran past its timeout, but it
		// returned a value within the grace: keep it. The parent counts
		// from when it sent the task, so a busy machine's late wake-up of
		// the worker (or of this reader) is in that count; the function
		// itself may have been quick.
		p.release(u, res, nil)
	case u.failed != nil:
		p.release(u, wire.Result{}, u.failed)
	case res.N != u.n:
		p.release(u, wire.Result{}, fmt.Errorf("%w: %d results for a task of %d items", wire.ErrMalformed, res.N, u.n))
	default:
		res.Expand() // N is checked
		p.release(u, res, nil)
	}
	return nil
}

// overrun records that the worker reported an item of its running chunk
// overrunning its timeout; the worker exits, and died fails that item and
// runs the others again.
func (s *slot) overrun(wc *workerConn, f wire.Frame) error {
	p := s.p
	p.mu.Lock()
	var u *unit
	if len(s.inflight) > 0 && s.inflight[0].id == f.ID {
		u = s.inflight[0]
	}
	var k int
	if len(f.Payload) == 4 {
		k = int(binary.BigEndian.Uint32(f.Payload))
	}
	ok := len(f.Payload) == 4 && (u == nil || k < u.n)
	switch {
	case !ok:
	case u == nil:
		// Its result came first: the worker exits for a task that is done,
		// and the one it runs now is not at fault.
		if s.kill.cause == causeNone {
			s.kill, s.killID = killReason{cause: causeTimeout}, f.ID
		}
	case u.failed == nil:
		u.overrun, u.cause = k+1, causeTimeout
		if s.kill.cause == causeNone {
			s.kill, s.killID = killReason{cause: causeTimeout}, u.id
		}
	}
	p.mu.Unlock()
	if !ok {
		err := fmt.Errorf("%w: overrun frame for item %d of task %d", wire.ErrMalformed, k, f.ID)
		s.protocolError(wc, err)
		return err
	}
	return nil
}

// progress passes on how many items of its running chunk the worker has
// done, for the call's Progress.
func (s *slot) progress(wc *workerConn, f wire.Frame) error {
	if len(f.Payload) != 4 {
		err := fmt.Errorf("%w: progress frame of %d bytes", wire.ErrMalformed, len(f.Payload))
		s.protocolError(wc, err)
		return err
	}
	k := int(binary.BigEndian.Uint32(f.Payload))
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	// A report about a unit that is no longer running here (a cancelled
	// one is still in flight) is stale, not wrong: drop it.
	if len(s.inflight) > 0 && s.inflight[0].id == f.ID && k < s.inflight[0].n {
		u := s.inflight[0]
		u.c.sink.progress(u, k)
	}
	return nil
}

// takeLocked removes unit id from the units in flight.
func (s *slot) takeLocked(id uint64) *unit {
	for i, u := range s.inflight {
		if u.id == id {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			if i == 0 {
				now := time.Now()
				s.observeLocked(now.Sub(s.headSince))
				s.headSince = now
			}
			return u
		}
	}
	return nil
}
