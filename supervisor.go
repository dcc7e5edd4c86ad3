package mp

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// slot is one worker place in a pool: its supervisor goroutine starts a
// worker, feeds it tasks, watches its deadlines and memory, and replaces it
// when it dies or is retired.
//
// A slot's states (slotState), as its supervisor moves it through them:
//
//	starting  exec, handshake, Init (start, wc set once the process runs);
//	          a failure backs off and starts again
//	serving   tasks are sent (step) and frames read (read); retire set
//	          means no new task, and a restart once idle
//	dying     the worker's connection ended or it was killed: its units
//	          are settled (died), and the slot starts again
//	stopped   the pool closed: the supervisor returns
type slot struct {
	p      *Pool
	n      int
	wake   chan struct{} // poked when there may be something to do
	sendMu sync.Mutex    // held from putting units in flight (step) to writing their frames

	// Guarded by p.mu.
	wc        *workerConn
	state     slotState
	inflight  []*unit // sent to the worker, in the order sent; [0] is running
	headSince time.Time
	// seenCancels is the pool's cancels when watchLocked last looked at
	// every unit in flight; rescan asks it to look again (units were
	// stolen).
	seenCancels uint64
	rescan      bool
	tasks       int           // tasks (items) sent to this worker
	retire      cause         // why the worker is to be replaced once idle
	kill        killReason    // why the worker was killed
	killID      uint64        // the task it was killed for
	avgTask     time.Duration // a moving average of how long its tasks take, for its depth

	frames     []frame     // step's, guarded by sendMu
	deferred   []frame     // frames a reader left for the supervisor to send; guarded by sendMu
	deferredWC *workerConn // the worker they are for

	forgetMu sync.Mutex
	forgets  []uint64 // handles closed, for the worker to drop
}

// slotState is where a slot is in its worker's life (see slot).
type slotState uint8

const (
	slotStarting slotState = iota // no worker yet, or one in its handshake and Init
	slotServing                   // handshake and Init done, and its reader runs
	slotDying                     // its worker's connection ended: it is not to be sent tasks
	slotStopped                   // the pool closed
)

func (st slotState) String() string {
	switch st {
	case slotStarting:
		return "starting"
	case slotServing:
		return "serving"
	case slotDying:
		return "dying"
	case slotStopped:
		return "stopped"
	}
	return fmt.Sprintf("slotState(%d)", uint8(st))
}

func (s *slot) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// supervise keeps a worker running in the slot until the pool closes. The
// first start's outcome goes to started, for NewPool. A worker that fails
// to start is tried again after a backoff that doubles up to maxBackoff,
// for as long as the pool is open: a pool whose workers cannot start (an
// Init that needs a database that is down) fails calls fast meanwhile (see
// startFailed), and recovers by itself once a worker starts.
func (s *slot) supervise(started chan<- error) {
	const maxBackoff = time.Second
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
			if p.isClosing() {
				return
			}
			p.startFailed(err)
			p.log.Warn("mp: worker failed to start", "slot", s.n, "err", err)
			fails++
			select {
			case <-time.After(min(25*time.Millisecond<<min(fails, 16), maxBackoff)):
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
	o := p.opts.Worker
	if o.GOMAXPROCS == 0 && !hasEnv(o.Env, "GOMAXPROCS") {
		o.GOMAXPROCS = 1
	}
	wc, err := startWorker(o, hello)
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		wc.kill()
		return nil, ErrPoolClosed
	}
	s.wc, s.tasks, s.retire, s.kill, s.killID = wc, 0, causeNone, killReason{}, 0
	p.mu.Unlock()
	err = wc.handshake(p.opts.Worker.startTimeout())
	if err == nil && p.opts.Init.fn != "" {
		err = s.runInit(wc)
	}
	p.mu.Lock()
	if err != nil {
		s.wc = nil
	} else {
		p.startFails, p.broken = 0, nil // a crash loop is over
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
	err := wc.sendHandles(in.handles, nil) // held until Close: never forgotten
	if err == nil {
		err = wc.w.Write(wire.KindTask, 0, head, in.args)
	}
	var f wire.Frame
	if err == nil {
		timeout := s.p.opts.Worker.startTimeout()
		wc.child.Out.SetReadDeadline(time.Now().Add(timeout))
		f, err = wc.r.Read()
		wc.child.Out.SetReadDeadline(time.Time{})
		if errors.Is(err, os.ErrDeadlineExceeded) {
			wc.kill()
			return fmt.Errorf("%w: Init %s did not finish within WorkerOptions.StartTimeout (%v)", ErrWorkerStart, in.fn, timeout)
		}
	}
	if err != nil && !peerGone(err) {
		// It lives, but cannot be sent Init: do not wait for it to exit.
		wc.kill()
		return fmt.Errorf("%w: sending Init %s to worker %d: %w", ErrWorkerStart, in.fn, wc.child.PID(), err)
	}
	if err != nil {
		exit := wc.exitError(killReason{})
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
	kind    wire.Kind
	id      uint64
	head    []byte
	body    []byte
	handles []*handle // whose descriptors the worker needs first
	u       *unit     // a task's
}

// serve runs the supervisor loop for a started worker until the worker
// dies or is retired. It returns false when the pool is closing.
func (s *slot) serve(wc *workerConn) bool {
	p := s.p
	wc.readWake, wc.dead = make(chan struct{}, 1), make(chan error, 1)
	dead := wc.dead
	go s.read(wc)
	// Ready (counted in Stats, eligible for tasks it would steal) only
	// once it is served: its reader runs.
	p.mu.Lock()
	s.state = slotServing
	p.mu.Unlock()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var mem memSample
		if p.hardMemory > 0 {
			mem = s.sampleMemory(wc)
		}
		s.sendMu.Lock()
		d := s.step(time.Now(), mem)
		s.send(wc, d.frames)
		clear(d.frames)
		s.sendMu.Unlock()
		for _, u := range d.drop {
			p.release(u, wire.Result{}, u.failed)
		}
		if d.kill {
			wc.child.KillGroup()
		}
		if d.retire {
			wc.close()
			wakeReader(wc)
			<-dead
			s.died(wc, nil)
			return true
		}
		timer.Reset(d.next)
		select {
		case <-s.wake:
		case <-timer.C:
		case err := <-dead:
			s.died(wc, err)
			return !p.isClosing()
		case <-p.done:
			s.died(wc, s.stop(wc, dead))
			return false
		}
	}
}

// closeGrace is how long an idle worker has to exit on its own when its
// pool closes, before it is killed.
const closeGrace = time.Second

// stop ends the worker of a closing pool and returns why its connection
// ended. A busy worker is killed; an idle one gets EOF, which makes it exit
// as a program does (see Close), and is killed only if it has not within
// closeGrace.
func (s *slot) stop(wc *workerConn, dead <-chan error) error {
	s.p.mu.Lock()
	busy := len(s.inflight) > 0
	s.p.mu.Unlock()
	if busy || wc.child.Conn.CloseWrite() != nil {
		wc.child.KillGroup()
		return <-dead
	}
	t := time.NewTimer(closeGrace)
	defer t.Stop()
	select {
	case err := <-dead:
		return err
	case <-t.C:
		wc.child.KillGroup()
		return <-dead
	}
}

// died handles the end of a worker: err is why its connection ended (nil
// for a worker retired on purpose). The tasks it held fail, run again, or
// go back to the queue.
func (s *slot) died(wc *workerConn, err error) {
	p := s.p
	p.mu.Lock()
	kill, killedID := s.kill, s.killID
	p.mu.Unlock()
	exit := wc.exitError(kill)
	wc.close()

	p.mu.Lock()
	inflight := s.inflight
	s.inflight, s.wc, s.state = nil, nil, slotStarting
	if p.closing {
		s.state = slotStopped
	}
	cause := s.retire
	if err != nil {
		cause = exitCause(exit)
	}
	closing := p.closing
	if !closing {
		p.stats.Restarts++
		p.stats.RestartCauses[cause.String()]++
	}
	failed, requeue := p.settleLocked(inflight, exit, killedID)
	p.mu.Unlock()

	switch {
	case closing:
		p.log.Info("mp: worker stopped", "slot", s.n, "pid", exit.PID, "err", exit)
	case err != nil:
		p.log.Warn("mp: worker died", "slot", s.n, "pid", exit.PID, "cause", cause, "err", exit, "tasks_lost", len(failed), "tasks_requeued", len(requeue))
	default:
		p.log.Info("mp: worker retired", "slot", s.n, "pid", exit.PID, "cause", cause)
	}
	for _, f := range failed {
		p.release(f.u, wire.Result{}, f.err)
	}
	p.wakeAll()
}

// failure is a unit to release with an error.
type failure struct {
	u   *unit
	err error
}

// settleLocked decides the fate of the units a dead worker held, in the
// order it was sent them (so inflight[0] is the one it was running): each
// fails, or goes back to the queue whole or in parts.
func (p *Pool) settleLocked(inflight []*unit, exit *ExitError, killedID uint64) (failed []failure, requeue []*unit) {
	for i, u := range inflight {
		switch {
		case u.failed != nil:
			failed = append(failed, failure{u, u.failed})
		case u.overrun > 0 && !p.closing:
			// The worker reported item k overrunning: it alone fails.
			k := u.overrun - 1
			failed = append(failed, failure{p.replaceLocked(u, u.cut(k, k+1))[0], timeoutError(u.c.timeout)})
			if k > 0 {
				requeue = append(requeue, p.replaceLocked(u, u.cut(0, k))...)
			}
			if k+1 < u.n {
				requeue = append(requeue, p.replaceLocked(u, u.cut(k+1, u.n))...)
			}
			p.replaceLocked(u)
		case p.closing:
			failed = append(failed, failure{u, ErrPoolClosed})
		case u.lost:
			// Sent to a worker that had died: it never had it.
			u.reset()
			requeue = append(requeue, u)
		case i > 0, killedID != 0 && u.id != killedID:
			// It never started, or it started only after the task the worker
			// was killed for had finished: either way not at fault.
			u.reset()
			requeue = append(requeue, u)
		case raceEnabled && exit.ExitCode() == raceExitCode:
			// The race detector stopped the worker: the report is the
			// outcome, and running the items again might not race.
			failed = append(failed, failure{u, exit})
		case u.n > 1:
			requeue = append(requeue, p.replaceLocked(u, u.split()...)...)
			p.replaceLocked(u)
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
	return failed, requeue
}

// replaceLocked counts parts, which stand in for the unit u, as submitted
// units of u's call, and returns them. Called once more with no parts, it
// counts u itself as gone: it will never be released.
func (p *Pool) replaceLocked(u *unit, parts ...*unit) []*unit {
	n := len(parts)
	if n == 0 {
		n = -1
	}
	p.outstanding += n
	u.c.sink.grow(n)
	if len(parts) == 0 {
		u.c.sink.forget(u)
		u.dropHandles()
	}
	return parts
}

// exitCause says why a worker ended, for Stats.
func exitCause(exit *ExitError) cause {
	switch {
	case exit.kill.cause != causeNone:
		return exit.kill.cause
	case exit.Signal() != nil:
		return causeSignal
	}
	return causeExit
}

// hasEnv reports whether env sets key.
func hasEnv(env []string, key string) bool {
	for _, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == key {
			return true
		}
	}
	return false
}
