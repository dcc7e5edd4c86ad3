package mp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// slot is one worker place in a pool: its supervisor goroutine starts a
// worker, feeds it tasks, watches its deadlines and memory, and replaces it
// when it dies or is retired.
type slot struct {
	p    *Pool
	n    int
	wake chan struct{} // poked when there may be something to do

	// Guarded by p.mu.
	wc        *workerConn
	ready     bool    // handshake and Init done
	inflight  []*unit // sent to the worker, in the order sent; [0] is running
	headSince time.Time
	tasks     int    // tasks sent to this worker
	retire    string // why the worker is to be replaced once idle
	kill      string // why the worker was killed
	killID    uint64 // the task it was killed for
}

func (s *slot) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// supervise keeps a worker running in the slot until the pool closes. The
// first start's outcome goes to started, for NewPool.
func (s *slot) supervise(started chan<- error) {
	p := s.p
	defer p.wg.Done()
	first := true
	for fails := 0; ; {
		wc, err := s.start()
		if first {
			started <- err
			first = false
		}
		if err != nil {
			if p.isClosing() || p.startFailed(err) {
				return
			}
			p.log.Warn("mp: worker failed to start", "slot", s.n, "err", err)
			fails++
			select {
			case <-time.After(min(25*time.Millisecond<<fails, 2*time.Second)):
			case <-p.done:
				return
			}
			continue
		}
		fails = 0
		if !s.serve(wc) {
			return
		}
	}
}

func (p *Pool) isClosing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closing
}

// start starts a worker, completes its handshake and runs Init.
func (s *slot) start() (*workerConn, error) {
	p := s.p
	hello := wire.NewHello(p.fingerprint)
	hello.Name = fmt.Sprintf("PoolWorker-%d", p.workerSeq.Add(1))
	hello.ReportRSS = p.opts.MaxWorkerMemory > 0
	wc, err := startWorker(p.opts.Worker, hello)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		wc.kill()
		return nil, ErrPoolClosed
	}
	s.wc, s.tasks, s.retire, s.kill, s.killID = wc, 0, "", "", 0
	p.mu.Unlock()
	err = wc.handshake(p.opts.Worker.startTimeout())
	if err == nil && p.opts.Init.fn != "" {
		err = s.runInit(wc)
	}
	p.mu.Lock()
	if err != nil {
		s.wc = nil
	} else {
		s.ready = true
		p.startFails = 0
	}
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	p.log.Info("mp: worker started", "slot", s.n, "pid", wc.child.PID(), "name", hello.Name)
	return wc, nil
}

// runInit runs the pool's Init function in a new worker.
func (s *slot) runInit(wc *workerConn) error {
	in := s.p.opts.Init
	head := wire.AppendTaskHeader(nil, wire.Task{Func: in.fn, N: 1})
	err := wc.w.Write(wire.KindTask, 0, head, in.args)
	var f wire.Frame
	if err == nil {
		timeout := s.p.opts.Worker.startTimeout()
		wc.child.Conn.SetReadDeadline(time.Now().Add(timeout))
		f, err = wc.r.Read()
		wc.child.Conn.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			wc.kill()
			return fmt.Errorf("%w: Init %s did not finish within WorkerOptions.StartTimeout (%v)", ErrWorkerStart, in.fn, timeout)
		}
	}
	if err != nil {
		exit := wc.exitError("")
		wc.kill()
		return fmt.Errorf("%w: worker %d died running Init %s: %w", ErrWorkerStart, exit.PID, in.fn, exit)
	}
	res, err := wire.ParseResult(f.Payload)
	if err == nil && f.Kind != wire.KindResult {
		err = fmt.Errorf("%w: expected a result, got a %v frame", wire.ErrMalformed, f.Kind)
	}
	if err == nil && len(res.Failures) > 0 {
		err = failureError(res.Failures[0])
	}
	if err != nil {
		wc.kill()
		return fmt.Errorf("%w: Init %s failed: %w", ErrWorkerStart, in.fn, err)
	}
	return nil
}

// frame is a frame the supervisor is to send.
type frame struct {
	kind wire.Kind
	id   uint64
	head []byte
	body []byte
}

// serve runs the supervisor loop for a started worker until the worker
// dies or is retired. It returns false when the pool is closing.
func (s *slot) serve(wc *workerConn) bool {
	p := s.p
	dead := make(chan error, 1)
	go s.read(wc, dead)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var mem memSample
		if p.hardMemory > 0 {
			mem = s.sampleMemory(wc)
		}
		frames, drop, kill, retire, next := s.step(time.Now(), mem)
		for _, u := range drop {
			p.release(u, wire.Result{}, u.failed)
		}
		for _, f := range frames {
			if err := wc.w.Write(f.kind, f.id, f.head, f.body); err != nil {
				// If the worker is dead, the reader sees it. If the frame
				// could not be sent, kill the worker, so that the tasks it
				// holds are not waited for forever.
				if !peerGone(err) {
					s.protocolError(wc, err)
				}
				break
			}
		}
		if kill {
			wc.child.KillGroup()
		}
		if retire {
			wc.child.Conn.Close()
			<-dead
			s.died(wc, nil)
			return true
		}
		timer.Reset(next)
		select {
		case <-s.wake:
		case <-timer.C:
		case err := <-dead:
			s.died(wc, err)
			return !p.isClosing()
		case <-p.done:
			wc.child.KillGroup()
			s.died(wc, <-dead)
			return false
		}
	}
}

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

// read receives a worker's frames until its connection ends, and then
// reports why on dead.
func (s *slot) read(wc *workerConn, dead chan<- error) {
	for {
		f, err := wc.r.Read()
		if err == nil {
			err = s.handle(wc, f)
		}
		if err != nil {
			dead <- err
			return
		}
		s.poke()
	}
}

// protocolError kills a worker that cannot be talked to, and records why.
func (s *slot) protocolError(wc *workerConn, err error) {
	s.p.mu.Lock()
	if s.kill == "" {
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

// takeLocked removes unit id from the units in flight.
func (s *slot) takeLocked(id uint64) *unit {
	for i, u := range s.inflight {
		if u.id == id {
			s.inflight = append(s.inflight[:i], s.inflight[i+1:]...)
			if i == 0 {
				s.headSince = time.Now()
			}
			return u
		}
	}
	return nil
}

// died handles the end of a worker: err is why its connection ended (nil
// for a worker retired on purpose). The tasks it held fail, run again, or
// go back to the queue.
func (s *slot) died(wc *workerConn, err error) {
	p := s.p
	p.mu.Lock()
	reason, killedID := s.kill, s.killID
	p.mu.Unlock()
	exit := wc.exitError(reason)
	wc.child.Conn.Close()

	p.mu.Lock()
	inflight := s.inflight
	s.inflight, s.wc, s.ready = nil, nil, false
	cause := s.retire
	if err != nil {
		cause = exitCause(exit)
	}
	if !p.closing {
		p.stats.Restarts++
		p.stats.RestartCauses[cause]++
	}
	type failure struct {
		u   *unit
		err error
	}
	var failed []failure
	var requeue []*unit
	for i, u := range inflight {
		switch {
		case u.failed != nil:
			failed = append(failed, failure{u, u.failed})
		case u.overrun > 0 && !p.closing:
			k := u.overrun - 1
			failed = append(failed, failure{u.cut(k, k+1), timeoutError(u.c.timeout)})
			if k > 0 {
				requeue = append(requeue, u.cut(0, k))
			}
			if k+1 < u.n {
				requeue = append(requeue, u.cut(k+1, u.n))
			}
			parts := 1 + min(k, 1) + min(u.n-k-1, 1)
			p.outstanding += parts - 1
			u.c.sink.grow(parts - 1)
		case p.closing:
			failed = append(failed, failure{u, ErrPoolClosed})
		case i > 0, killedID != 0 && u.id != killedID:
			// It never started, or it started only after the task the worker
			// was killed for had finished: either way not at fault.
			u.reset()
			requeue = append(requeue, u)
		case u.n > 1:
			parts := u.split()
			p.outstanding += len(parts) - 1
			u.c.sink.grow(len(parts) - 1)
			requeue = append(requeue, parts...)
		case u.attempt < p.opts.Retries:
			u.attempt++
			u.reset()
			requeue = append(requeue, u)
		default:
			failed = append(failed, failure{u, exit})
		}
	}
	if err := p.requeueLocked(requeue...); err != nil {
		for _, u := range requeue {
			failed = append(failed, failure{u, err})
		}
		requeue = nil
	}
	p.mu.Unlock()

	if err != nil {
		p.log.Warn("mp: worker died", "slot", s.n, "pid", exit.PID, "cause", cause, "err", exit, "tasks_lost", len(failed), "tasks_requeued", len(requeue))
	} else {
		p.log.Info("mp: worker retired", "slot", s.n, "pid", exit.PID, "cause", cause)
	}
	for _, f := range failed {
		p.release(f.u, wire.Result{}, f.err)
	}
	p.wakeAll()
}

// exitCause names why a worker ended, for Stats.
func exitCause(exit *ExitError) string {
	switch {
	case strings.HasPrefix(exit.Reason, "protocol"):
		return "protocol"
	case exit.Reason != "":
		return exit.Reason
	case exit.Signal() != nil:
		return "signal"
	}
	return "exit"
}
