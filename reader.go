package mp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// read receives a worker's frames until its connection ends, and then
// reports why on dead.
func (s *slot) read(wc *workerConn, dead chan<- error) {
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
				s.ready = false
			}
			s.p.mu.Unlock()
			dead <- err
			return
		}
		if wc.r.Buffered() == 0 {
			// Every frame received so far is handled: send the worker
			// what it should run next, all at once.
			s.kick(true)
		}
	}
}

// protocolError kills a worker that cannot be talked to, and records why.
func (s *slot) protocolError(wc *workerConn, err error) {
	s.p.mu.Lock()
	if s.wc == wc && s.kill == "" {
		s.kill = "protocol error: " + trimPrefix(err)
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
	if p.opts.MaxWorkerMemory > 0 && res.RSS > uint64(p.opts.MaxWorkerMemory) && s.retire == "" {
		s.retire = "recycle-memory"
	}
	revoked := f.Kind == wire.KindRevoked && u.failed == nil
	if revoked {
		u.reset()
		s.tasks-- // it never ran here
		if err := p.requeueLocked(u); err != nil {
			u.failed, revoked = err, false
		}
	}
	p.mu.Unlock()
	switch {
	case revoked:
		p.wakeAll()
	case u.cause == "timeout" && u.n == 1 && f.Kind == wire.KindResult && res.N == 1 && len(res.Failures) == 0:
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
		if s.kill == "" {
			s.kill, s.killID = "timeout", f.ID
		}
	case u.failed == nil:
		u.overrun, u.cause = k+1, "timeout"
		if s.kill == "" {
			s.kill, s.killID = "timeout", u.id
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
