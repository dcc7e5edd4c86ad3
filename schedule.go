package mp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// plan is what step decided the slot's worker is to be sent and what is
// to be done with it.
type plan struct {
	wc     *workerConn   // the worker the frames are for; nil if the slot has none serving
	frames []frame       // to send, in order: new tasks, cancellations, revocations
	drop   []*unit       // to release with their failed error: they ended before they were sent
	kill   bool          // kill the worker
	retire bool          // the worker is to be retired: it is idle
	next   time.Duration // how long the supervisor may sleep before it steps again
}

// step decides, under the pool's lock, what the supervisor does next:
// frames to send (new tasks, cancellations, revocations), whether to kill
// or retire the worker, and how long it may sleep.
//
// It does nothing (its plan has a nil wc) if the slot has no worker
// serving. The caller must hold s.sendMu, so that frames reach the worker
// in the order step put their units in flight.
func (s *slot) step(now time.Time, mem memSample) (d plan) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	d.next = time.Hour
	if s.state != slotServing {
		return d
	}
	wc := s.wc
	d.wc = wc
	// The frames go into the slot's own buffer: the caller holds sendMu
	// until they are sent, and the next step reuses it.
	frames := s.frames[:0]
	defer func() { s.frames, d.frames = frames, frames }()
	if s.retire == causeNone && p.opts.MaxTasksPerWorker > 0 && s.tasks >= p.opts.MaxTasksPerWorker {
		s.retire = causeMaxTasks
	}
	for s.retire == causeNone && len(s.inflight) < s.depthLocked() {
		if len(s.inflight) > 0 && p.idleLocked(s) {
			// Do not queue a task behind a running one while another
			// worker is idle, or starting: it goes to that worker instead.
			// (Queued here, behind a long task, it would start after
			// later ones that the other worker takes from the queue.)
			break
		}
		u := p.popLocked()
		if u == nil {
			break
		}
		if u.failed == nil && u.c.ctx.Err() != nil {
			u.failed = context.Cause(u.c.ctx)
		}
		if u.failed != nil {
			d.drop = append(d.drop, u)
			continue
		}
		p.nextID++
		u.id = p.nextID
		if u.ref == 0 {
			u.ref = u.id
		}
		if ref := u.c.ref; ref != 0 {
			wire.SetTaskRef(u.head, ref, u.c.attempt+u.attempt)
		} else {
			wire.SetTaskRef(u.head, u.ref, u.attempt)
		}
		if len(s.inflight) == 0 {
			s.headSince = now
			// The worker was idle, and nobody reads it (see read): its
			// reader is woken, or an Apply's caller, who looks next,
			// reads its own result.
			if u.c.claimable {
				u.c.claimable = false
				u.c.claimed, u.c.claimedWC = s, wc
			} else {
				wakeReader(wc)
			}
		}
		s.inflight = append(s.inflight, u)
		s.tasks += u.n
		frames = append(frames, frame{kind: wire.KindTask, id: u.id, head: u.head, body: u.args, handles: u.handles, u: u})
		if p.opts.MaxTasksPerWorker > 0 && s.tasks >= p.opts.MaxTasksPerWorker {
			s.retire = causeMaxTasks
		}
	}
	frames = s.watchLocked(now, mem, frames, &d.kill, &d.next)
	switch {
	case d.kill:
	case s.retire != causeNone:
		d.retire = len(s.inflight) == 0
	case len(s.inflight) == 0:
		p.stealLocked(s)
	}
	return d
}

// kick does at once, on the calling goroutine (a caller that queued work,
// or the reader that got a result), what the slot's supervisor would do
// when poked: send the worker what it should run next. That saves a
// hand-off to the supervisor, and the thread wake-up that goes with it, on
// every task. The supervisor is poked only for what it alone does: arm a
// timer for a deadline or a memory sample, kill or retire the worker, or
// send what kick could not because the supervisor was sending.
func (s *slot) kick(fromReader bool) {
	if !s.sendMu.TryLock() {
		s.poke()
		return
	}
	d := s.step(time.Now(), memSample{})
	var err error
	deferred := false
	switch {
	case d.wc == nil:
	case fromReader && framesSize(d.frames) > readerWriteMax:
		// The reader must not block on a long write while the worker
		// waits for it to read: the supervisor writes these.
		s.deferred, s.deferredWC, deferred = append(s.deferred, d.frames...), d.wc, true
	default:
		err = s.send(d.wc, d.frames)
	}
	clear(d.frames) // keep no task's bytes alive
	s.sendMu.Unlock()
	for _, u := range d.drop {
		s.p.release(u, wire.Result{}, u.failed)
	}
	if d.wc == nil || err != nil || deferred || d.kill || d.retire || d.next < time.Hour {
		s.poke()
	}
}

// forget has the slot's worker drop handle id, which its maker closed.
func (s *slot) forget(id uint64) {
	s.forgetMu.Lock()
	s.forgets = append(s.forgets, id)
	s.forgetMu.Unlock()
	s.poke()
}

// sendForgets adds the frames that have the worker drop closed handles it
// has. The caller holds sendMu.
func (s *slot) sendForgets(wc *workerConn) error {
	s.forgetMu.Lock()
	ids := s.forgets
	s.forgets = nil
	s.forgetMu.Unlock()
	var theirs []uint64
	for _, id := range ids {
		if wc.sentHandles[id] {
			theirs = append(theirs, id)
			delete(wc.sentHandles, id)
		}
	}
	for len(theirs) > 0 {
		n := min(len(theirs), wire.MaxFDs)
		frame := wire.FDFrame(theirs[:n])
		if err := wc.w.Add(wire.KindForget, 0, frame[wire.HeaderSize:]); err != nil {
			return err
		}
		theirs = theirs[n:]
	}
	return nil
}

// readerWriteMax is the most a reader writes to its worker itself: the
// worker's socket takes that much at once even while it is busy.
const readerWriteMax = 32 << 10

func framesSize(frames []frame) int {
	n := 0
	for _, f := range frames {
		n += wire.HeaderSize + len(f.head) + len(f.body)
	}
	return n
}

// send writes frames to the worker, in order. If one cannot be written to
// a live worker, the worker is killed, so that the tasks it holds are not
// waited for forever; a dead worker's reader reports its end. The caller
// holds s.sendMu.
func (s *slot) send(wc *workerConn, frames []frame) error {
	if len(s.deferred) > 0 { // frames a reader left: they go first
		deferred := s.deferred
		s.deferred = nil
		if s.deferredWC == wc {
			frames = append(deferred, frames...)
		}
	}
	err := s.sendForgets(wc)
	for _, f := range frames {
		if err != nil {
			break
		}
		if len(f.handles) > 0 {
			if err = wc.sendHandles(f.handles, s); err != nil {
				break
			}
		}
		if err = wc.w.Add2(f.kind, f.id, f.head, f.body); err != nil {
			break
		}
	}
	if ferr := wc.w.Flush(); err == nil {
		err = ferr
	}
	switch {
	case err == nil:
	case peerGone(err) || errors.Is(err, net.ErrClosed):
		s.lost(wc, frames)
	default:
		s.protocolError(wc, err)
	}
	return err
}

// lost marks the tasks of frames, which could not be written because the
// worker was gone, as never delivered: its death is not theirs to answer
// for, and they run again elsewhere (see settleLocked).
func (s *slot) lost(wc *workerConn, frames []frame) {
	s.p.mu.Lock()
	defer s.p.mu.Unlock()
	if s.wc != wc {
		return // settled already
	}
	for _, f := range frames {
		if f.u != nil && slices.Contains(s.inflight, f.u) {
			f.u.lost = true
		}
	}
}

// kickAll kicks the slots in turn while work is queued, but those whose
// workers hold all they may: each of those takes more when a result comes
// (its reader kicks it), and a kick would only find it full. (Many calls
// submitted at once, ApplyAsync in a loop, would kick full slots for each.)
func (p *Pool) kickAll() {
	for _, s := range p.slots {
		p.mu.Lock()
		empty := p.queue.len() == 0
		full := s.state == slotServing && len(s.inflight) >= s.depthLocked()
		p.mu.Unlock()
		if empty {
			return
		}
		if !full {
			s.kick(false)
		}
	}
}

// watchLocked checks the units in flight for cancellation, deadlines and
// memory, and adds the frames that act on them.
//
// Only the head (the unit the worker runs) has a deadline; the units
// queued behind it are looked at only after a call was cancelled, or some
// were stolen: a step per result would otherwise go through up to 64
// contexts.
func (s *slot) watchLocked(now time.Time, mem memSample, frames []frame, kill *bool, next *time.Duration) []frame {
	p := s.p
	all := s.seenCancels != p.cancels || s.rescan
	s.seenCancels, s.rescan = p.cancels, false
	for i, u := range s.inflight {
		if i > 0 && !all {
			break
		}
		if u.failed == nil && !u.splitting {
			if u.c.ctx.Err() != nil {
				u.failed, u.cause = context.Cause(u.c.ctx), causeCancel
			} else if i == 0 && u.c.timeout > 0 && !now.Before(s.headSince.Add(u.budget())) {
				u.cause = causeTimeout
				if u.n > 1 {
					// The worker did not report the item at fault: its
					// items are run again in smaller chunks. No cancel
					// frame: each item has its own deadline in the worker.
					u.splitting = true
				} else {
					u.failed = timeoutError(u.c.timeout)
				}
			}
		}
		if i > 0 {
			if (u.failed != nil || u.stolen) && !u.revokeSent {
				u.revokeSent = true
				frames = append(frames, frame{kind: wire.KindRevoke, id: u.id})
			}
			continue
		}
		if (u.failed != nil || u.splitting) && u.killAt.IsZero() {
			// The grace lets a function that heeds its context return, and
			// its worker live on.
			u.killAt = now.Add(p.grace)
			if u.failed != nil {
				frames = append(frames, frame{kind: wire.KindCancel, id: u.id})
			}
		}
		switch {
		case !u.killAt.IsZero() && !now.Before(u.killAt):
			*kill, s.kill, s.killID = true, killReason{cause: u.cause}, u.id
		case !u.killAt.IsZero():
			*next = min(*next, u.killAt.Sub(now))
		case u.c.timeout > 0:
			*next = min(*next, s.headSince.Add(u.budget()).Sub(now))
		}
	}
	if len(s.inflight) > 0 && p.hardMemory > 0 && !*kill {
		if u := s.inflight[0]; u.id == mem.head && mem.rss > uint64(p.hardMemory) {
			rss := mem.rss
			switch {
			case u.failed != nil, u.splitting:
			case u.n > 1:
				// The parent cannot tell which item of the chunk grew: the
				// chunk is split, as for a crash (see settleLocked), so
				// that the item at fault fails alone, and its chunk-mates
				// run again.
				u.cause = causeMemory
			default:
				u.failed = fmt.Errorf("%w: worker %d reached %d bytes, over the %d-byte WorkerMemoryLimit", ErrMemoryLimit, s.wc.child.PID(), rss, p.hardMemory)
				u.cause = causeMemory
			}
			*kill, s.kill, s.killID = true, killReason{cause: u.cause}, u.id
		}
		*next = min(*next, 50*time.Millisecond)
	}
	return frames
}

// memSample is a worker's resident set size, and the task it was running
// when it was read: the size is read outside the pool's lock, and only
// blames that task if it still runs.
type memSample struct {
	rss  uint64
	head uint64
}

func (s *slot) sampleMemory(wc *workerConn) memSample {
	s.p.mu.Lock()
	var head uint64
	if len(s.inflight) > 0 {
		head = s.inflight[0].id
	}
	s.p.mu.Unlock()
	if head == 0 {
		return memSample{}
	}
	return memSample{rss: worker.RSS(wc.child.PID()), head: head}
}

// idleLocked reports whether a worker other than s's is ready and idle, or
// starting while starts succeed: one that can take a task at once, or soon.
func (p *Pool) idleLocked(s *slot) bool {
	for _, o := range p.slots {
		if o == s || o.retire != causeNone {
			continue
		}
		if o.state == slotServing && len(o.inflight) == 0 {
			return true
		}
		if o.state != slotServing && p.startFails == 0 && !p.closing {
			return true // starting, or about to: workers are not failing to start
		}
	}
	return false
}

// stealLocked lets the idle slot s take tasks that another worker holds
// queued behind a running one: that worker is asked to revoke the later
// half of them, and those it has not started come back to the queue for s.
// So a slow task never holds queued ones back while a worker is idle.
func (p *Pool) stealLocked(s *slot) {
	for _, o := range p.slots {
		if o == s || len(o.inflight) < 2 {
			continue
		}
		took := false
		queued := o.inflight[1:]
		for _, u := range queued[len(queued)/2:] {
			if u.stolen || u.revokeSent || u.failed != nil {
				continue
			}
			u.stolen, took = true, true
		}
		if took {
			o.rescan = true
			o.poke()
			return
		}
	}
}

// Depth: how many tasks a worker holds at once, the one it runs and those
// queued behind it, so that it never waits for the parent between two. It
// adapts to how long the worker's tasks take: as many as run in
// depthBudget (so that a task queued in a worker waits no longer than
// that), between minDepth and maxDepth.
const (
	minDepth    = 2
	maxDepth    = 64
	depthBudget = time.Millisecond
)

// depthLocked returns how many tasks the slot's worker may hold.
func (s *slot) depthLocked() int {
	if s.avgTask <= 0 {
		return minDepth
	}
	return int(min(max(depthBudget/s.avgTask, minDepth), maxDepth))
}

// observeLocked records how long the task at the head of the worker took,
// from when it became the head (sent to an idle worker, or the one before
// it returned) to its result.
func (s *slot) observeLocked(took time.Duration) {
	took = max(took, time.Microsecond)
	if s.avgTask == 0 {
		s.avgTask = took
		return
	}
	s.avgTask += (took - s.avgTask) / 8
}
