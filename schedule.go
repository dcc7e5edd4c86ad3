package mp

import (
	"context"
	"fmt"
	"time"

	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// step decides, under the pool's lock, what the supervisor does next:
// frames to send (new tasks, cancellations, revocations), whether to kill
// or retire the worker, and how long it may sleep.
func (s *slot) step(now time.Time, mem memSample) (frames []frame, drop []*unit, kill, retire bool, next time.Duration) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.retire == "" && p.opts.MaxTasksPerWorker > 0 && s.tasks >= p.opts.MaxTasksPerWorker {
		s.retire = "max-tasks"
	}
	for s.retire == "" && len(s.inflight) < p.depth {
		if len(s.inflight) > 0 && p.idleLocked(s) {
			// Do not queue a task behind a running one while another
			// worker is idle: it goes to that worker instead.
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
			drop = append(drop, u)
			continue
		}
		p.nextID++
		u.id = p.nextID
		if len(s.inflight) == 0 {
			s.headSince = now
		}
		s.inflight = append(s.inflight, u)
		s.tasks++
		frames = append(frames, frame{kind: wire.KindTask, id: u.id, head: u.head, body: u.args})
		if p.opts.MaxTasksPerWorker > 0 && s.tasks >= p.opts.MaxTasksPerWorker {
			s.retire = "max-tasks"
		}
	}
	next = time.Hour
	frames = s.watchLocked(now, mem, frames, &kill, &next)
	switch {
	case kill:
	case s.retire != "":
		retire = len(s.inflight) == 0
	case len(s.inflight) == 0:
		p.stealLocked(s)
	}
	return frames, drop, kill, retire, next
}

// watchLocked checks the units in flight for cancellation, deadlines and
// memory, and adds the frames that act on them.
func (s *slot) watchLocked(now time.Time, mem memSample, frames []frame, kill *bool, next *time.Duration) []frame {
	p := s.p
	for i, u := range s.inflight {
		if u.failed == nil && !u.splitting {
			if u.c.ctx.Err() != nil {
				u.failed, u.cause = context.Cause(u.c.ctx), "cancel"
			} else if i == 0 && u.c.timeout > 0 && !now.Before(s.headSince.Add(u.budget())) {
				u.cause = "timeout"
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
			*kill, s.kill, s.killID = true, u.cause, u.id
		case !u.killAt.IsZero():
			*next = min(*next, u.killAt.Sub(now))
		case u.c.timeout > 0:
			*next = min(*next, s.headSince.Add(u.budget()).Sub(now))
		}
	}
	if len(s.inflight) > 0 && p.hardMemory > 0 && !*kill {
		if u := s.inflight[0]; u.id == mem.head && mem.rss > uint64(p.hardMemory) {
			rss := mem.rss
			if u.failed == nil {
				u.failed = fmt.Errorf("%w: worker %d reached %d bytes, over the %d-byte WorkerMemoryLimit", ErrMemoryLimit, s.wc.child.PID(), rss, p.hardMemory)
				u.cause = "memory"
			}
			*kill, s.kill, s.killID = true, u.cause, u.id
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

// idleLocked reports whether a worker other than s's is ready and idle.
func (p *Pool) idleLocked(s *slot) bool {
	for _, o := range p.slots {
		if o != s && o.ready && len(o.inflight) == 0 && o.retire == "" {
			return true
		}
	}
	return false
}

// stealLocked lets the idle slot s take a task that another worker holds
// queued behind a running one: that worker is asked to revoke it, and if it
// has not started it, it comes back to the queue for s. So a slow task never
// holds a queued one back while a worker is idle.
func (p *Pool) stealLocked(s *slot) {
	for _, o := range p.slots {
		if o == s || len(o.inflight) < 2 {
			continue
		}
		u := o.inflight[len(o.inflight)-1]
		if u.stolen || u.revokeSent || u.failed != nil {
			continue
		}
		u.stolen = true
		o.poke()
		return
	}
}
