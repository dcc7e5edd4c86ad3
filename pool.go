package mp

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/seam"
	"github.com/go-mp/mp/internal/wire"
)

// Pool is a set of worker processes that run registered functions: the
// [Map], [MapAll], [MapAsync], [Imap], [ImapUnordered], [Apply] and
// [ApplyAsync] calls take a *Pool. It is safe for concurrent use by many
// calls at once; they share its workers, each task going to the next free
// worker.
//
// A worker that dies (a crash, os.Exit, a kill, a fatal runtime error)
// fails only the tasks it held, and is replaced; a task past its deadline
// is killed with its worker, which is replaced too. The pool never hangs
// and never breaks for a dead worker. While no worker is ready and new ones
// keep failing to start (see [PoolOptions.Init]), calls fail at once with
// [ErrWorkerStart]; the pool keeps trying, and recovers when one starts.
//
// A pool must be closed with Close or Shutdown, which stop its workers.
//
// What the machinery costs, against Python's multiprocessing on the same
// machine, is measured by the benchmarks in bench/ (BenchmarkMap,
// BenchmarkApply and others, each with its Python twin): see the README's
// table.
type Pool struct {
	// How the pool is put together. Calls (call.go, map.go, apply.go) cut
	// their input into units, submit them to the pool's queue (runqueue.go)
	// and receive their outcomes through their sink. A runner takes the queued
	// units: the pool's own workers, or, with a backend (natspool), a
	// dispatcher that hands them to the backend (backend.go). For its own
	// workers, one supervisor goroutine per slot (supervisor.go) starts its
	// worker, sends it tasks and replaces it; one reader goroutine per live
	// worker (reader.go) handles the frames the worker sends; the decisions of
	// what to send, cancel, revoke or kill are made in one place, slot.step
	// (schedule.go), under the pool's mutex.
	//
	// Locking: p.mu guards the fields after it, every slot's fields marked so,
	// and the flight state of every unit in flight. The lock order is p.mu,
	// then a call's collector.mu: never take p.mu while holding a collector's
	// lock. Outcomes are never resolved under p.mu: release unlocks before it
	// calls the sink, so a caller woken by its outcome can call into the pool
	// at once.

	// Set by NewPool, then never changed: read without the lock.
	opts        PoolOptions
	fingerprint string
	log         *slog.Logger
	depth       int           // tasks in flight per worker to start with (see depthLocked), and Imap's window per worker / 4
	grace       time.Duration // between a cancel frame and the kill
	hardMemory  int64
	run         runner        // where units run: the pool's workers (its slots), or a backend
	slots       []*slot       // one per worker; complete before any supervisor starts; none with a backend
	done        chan struct{} // closed when Close starts
	wg          sync.WaitGroup
	workerSeq   atomic.Int64
	closeOnce   sync.Once

	mu          sync.Mutex
	queue       runQueue      // units waiting for a worker, one FIFO per call
	roomMade    chan struct{} // closed when units leave the queue, if a call waits for room
	nextID      uint64        // the last task ID given to a unit sent
	outstanding int           // units submitted and not released
	draining    bool          // Shutdown: no new calls
	closing     bool          // Close: everything stops
	drained     chan struct{} // closed when draining and outstanding is 0
	broken      error         // set while workers keep failing to start
	startFails  int           // starts failed in a row
	stats       Stats
	cancels     uint64 // counts the cancels of calls (see watchLocked)

	wmu     sync.Mutex
	watches map[context.Context]*ctxWatch // of ApplyAsync calls in progress, by their ctx
}

// A runner runs the units a pool queues: the pool's own worker processes
// (workers: a slot and a supervisor each, supervisor.go, schedule.go,
// reader.go), or a backend (remote, backend.go). The calls, and the
// pool's front (its queue, submit, release, drain, Close and Stats), are
// the same for both.
type runner interface {
	// check says why u cannot run here, if it cannot.
	check(u *unit) error
	// kick says units were queued.
	kick()
	// stopLocked, under p.mu, takes the running units of the calls that
	// match (of every call, if match is nil: the pool closes) away from
	// the runner, for the pool to release; stop, called after, has them
	// stopped where they run.
	stopLocked(match func(*call) bool) (units []*unit, stop func())
	// countLocked adds the runner's workers and running items to st.
	countLocked(st *Stats)
	// close ends the runner, once its goroutines have returned.
	close()
}

// workers is the runner of a pool with worker processes of its own.
type workers struct{ p *Pool }

func (w workers) check(*unit) error { return nil }
func (w workers) kick()             { w.p.kickAll() }
func (w workers) close()            {}

func (w workers) stopLocked(match func(*call) bool) ([]*unit, func()) {
	if match == nil {
		for _, s := range w.p.slots {
			if s.wc != nil && (s.state != slotServing || len(s.inflight) > 0) {
				// Busy, or still starting (a handshake, an Init): killed
				// now. Its supervisor stops an idle one gently.
				s.wc.child.KillGroup()
			}
		}
		return nil, func() {}
	}
	return nil, w.p.wakeAll // the supervisors cancel the units whose ctx ended
}

func (w workers) countLocked(st *Stats) {
	for _, s := range w.p.slots {
		if s.state == slotServing {
			st.Workers++
		}
		for _, u := range s.inflight {
			st.TasksRunning += u.n
		}
	}
}

// Stats is a snapshot of a pool's counters, as [Pool.Stats] returns it.
// Task counts are of tasks (items), never of batches: a batch of 10 tasks
// that succeeds adds 10 to TasksDone.
type Stats struct {
	Workers       int            // workers alive and ready
	TasksDone     int64          // items that returned a value
	TasksFailed   int64          // items that failed, for any reason
	TasksRunning  int            // items sent to workers and not yet back
	TasksQueued   int            // items waiting for a worker
	Restarts      int            // workers started to replace one that died or was retired
	RestartCauses map[string]int // why, by cause: "exit", "signal", "timeout", "cancel", "memory", "protocol", "max-tasks", "recycle-memory"
}

// NewPool starts a pool of worker processes and waits until every worker
// has completed its handshake and its Init. ctx bounds this start-up only;
// it is not kept. It returns [ErrNoMain] if Main was not called, and an
// error wrapping [ErrWorkerStart] if a worker could not be started or its
// Init failed; then no process is left behind. An option this system
// cannot honour (the memory limits, off Linux) is an error matching
// [errors.ErrUnsupported].
//
// Starting a pool costs about what starting its workers does, side by
// side; a binary built with CGO_ENABLED=0, which needs no dynamic loader,
// starts them faster (see BenchmarkPoolStart in bench/, and the README's
// table).
func NewPool(ctx context.Context, opts PoolOptions) (*Pool, error) {
	return newPool(ctx, opts, nil)
}

// newPool makes a pool whose workers are processes of its own, or, with a
// backend, one whose batches the backend runs (natspool.NewPool). Then
// Workers is the backend's capacity, and the options about local workers
// (Worker, MaxTasksPerWorker, memory limits, Init) are the worker hosts'
// business: they are ignored here.
func newPool(ctx context.Context, opts PoolOptions, backend seam.Backend) (*Pool, error) {
	if ctx == nil {
		return nil, nilContext("NewPool")
	}
	fp, err := ready()
	if err != nil {
		return nil, err
	}
	if err := opts.check(); err != nil {
		return nil, err
	}
	if backend == nil { // else its workers run elsewhere
		if err := opts.unsupported(thisPlatform); err != nil {
			return nil, err
		}
	}
	if opts.Init.err != nil {
		return nil, fmt.Errorf("mp: NewPool: Init: %w", opts.Init.err)
	}
	for i, h := range opts.Init.handles {
		if !h.acquire() { // held until Close, for every worker's Init
			releaseAll(opts.Init.handles[:i])
			return nil, fmt.Errorf("mp: NewPool: Init: the %v passed to Bind is closed", h.kind)
		}
	}
	if backend != nil {
		opts.Workers = max(backend.Capacity(), 1)
	}
	if opts.Workers == 0 {
		opts.Workers = CPUCount()
	}
	p := &Pool{
		opts:        opts,
		fingerprint: fp,
		log:         opts.Logger,
		depth:       2,
		grace:       100 * time.Millisecond,
		hardMemory:  opts.WorkerMemoryLimit,
		done:        make(chan struct{}),
	}
	if p.hardMemory == 0 {
		p.hardMemory = 2 * opts.MaxWorkerMemory
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.stats.RestartCauses = make(map[string]int)
	if backend != nil {
		p.run = newRemote(p, backend)
		return p, nil
	}
	p.run = workers{p}
	// p.slots is complete before any supervisor starts, and never changes
	// after: supervisors read every slot (to find an idle one, to steal).
	p.slots = make([]*slot, opts.Workers)
	for i := range p.slots {
		p.slots[i] = &slot{p: p, n: i, wake: make(chan struct{}, 1)}
	}
	started := make(chan error, opts.Workers)
	p.wg.Add(len(p.slots))
	for _, s := range p.slots {
		go s.supervise(started)
	}
	for range opts.Workers {
		select {
		case err = <-started:
		case <-ctx.Done():
			err = fmt.Errorf("mp: NewPool: %w", context.Cause(ctx))
		}
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// Close stops every worker now and waits for them to exit. A worker running
// a task is killed, with its process group and descendants; an idle worker
// is told to exit, and killed if it has not within a second, so that it
// can end as a program does (flushing coverage and race-detector data, and
// killing what its tasks started). Tasks queued or running fail with
// [ErrPoolClosed], and so do calls made afterwards. Close is idempotent and
// safe to call concurrently; it always returns nil.
func (p *Pool) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closing, p.draining = true, true
		queued := p.queue.removeAll()
		p.dequeuedLocked()
		running, stop := p.run.stopLocked(nil)
		p.mu.Unlock()
		close(p.done)
		for _, u := range append(queued, running...) {
			p.release(u, wire.Result{}, ErrPoolClosed)
		}
		stop()
		p.wg.Wait()
		p.run.close()
		releaseAll(p.opts.Init.handles)
	})
	return nil
}

// Shutdown stops the pool gracefully: calls made afterwards fail with
// [ErrPoolClosed], work already submitted runs to completion, and then the
// workers exit. (A Map or Imap that is still waiting for room in a bounded
// queue, see [PoolOptions.MaxQueued], has not submitted all of its work: it
// fails with ErrPoolClosed, and what it queued is cancelled.) If ctx ends first, Shutdown closes the pool as Close does
// (failing what is left) and returns ctx's error. Like http.Server's
// Shutdown, it blocks until the pool is closed either way. A nil ctx is an
// error, and leaves the pool open.
//
// A service shuts down in this order: stop taking requests (its
// http.Server's Shutdown), then Shutdown the pool with the time it can
// give: what is queued and running finishes, and what has not when ctx
// ends is killed and fails with ErrPoolClosed. To drop queued work instead
// of draining it, cancel the contexts of the calls that queued it, or Close.
func (p *Pool) Shutdown(ctx context.Context) error {
	if ctx == nil {
		return nilContext("Shutdown") // and the pool goes on: nothing is lost
	}
	p.mu.Lock()
	p.draining = true
	if p.drained == nil {
		p.drained = make(chan struct{})
		if p.outstanding == 0 {
			close(p.drained)
		}
	}
	drained := p.drained
	p.mu.Unlock()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = context.Cause(ctx)
	}
	p.Close()
	return err
}

// Stats returns a snapshot of the pool's counters. It does not block on
// running tasks.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.stats
	st.RestartCauses = maps.Clone(p.stats.RestartCauses)
	st.TasksQueued = p.queue.items
	p.run.countLocked(&st)
	return st
}

// Workers returns the number of workers the pool keeps running.
func (p *Pool) Workers() int { return p.opts.Workers }

// fitting returns how many of units, from the first, fit in free items of
// the queue. Into an empty queue, the first unit goes whatever its size:
// a batch larger than MaxQueued would otherwise never be queued.
func fitting(units []*unit, free int, empty bool) int {
	k := 0
	for _, u := range units {
		if u.n > free && !(k == 0 && empty) {
			break
		}
		free -= u.n
		k++
	}
	return k
}

// itemsOf counts the items of units.
func itemsOf(units []*unit) int {
	n := 0
	for _, u := range units {
		n += u.n
	}
	return n
}

// submit queues the units of a call and returns how many it queued. It
// fails if the pool is closed or broken. Where PoolOptions.MaxQueued
// bounds the queue, it queues what fits and waits for room for the rest
// while ctx lives; with nowait, it queues all of units or, if they do not
// fit, none and fails with ErrQueueFull.
func (p *Pool) submit(ctx context.Context, units []*unit, nowait bool) (queued int, err error) {
	for _, u := range units {
		if err := p.run.check(u); err != nil {
			return 0, err
		}
	}
	for len(units) > 0 {
		p.mu.Lock()
		switch {
		case p.draining:
			p.mu.Unlock()
			return queued, ErrPoolClosed
		case p.broken != nil:
			err := p.broken
			p.mu.Unlock()
			return queued, err
		}
		room := len(units)
		if max := p.opts.MaxQueued; max > 0 {
			room = fitting(units, max-p.queue.items, p.queue.len() == 0)
		}
		if nowait && room < len(units) {
			n := p.queue.items
			p.mu.Unlock()
			return queued, fmt.Errorf("%w: %d tasks queued, room for %d more of the %d-task MaxQueued, and this call has %d",
				ErrQueueFull, n, max(p.opts.MaxQueued-n, 0), p.opts.MaxQueued, itemsOf(units))
		}
		if room > 0 {
			p.queue.push(units[:room]...)
			p.outstanding += room
			queued += room
			units = units[room:]
		}
		var roomMade chan struct{}
		if len(units) > 0 {
			if p.roomMade == nil {
				p.roomMade = make(chan struct{})
			}
			roomMade = p.roomMade
		}
		p.mu.Unlock()
		if room > 0 {
			p.run.kick()
		}
		if roomMade == nil {
			return queued, nil
		}
		select {
		case <-roomMade:
		case <-ctx.Done():
			return queued, context.Cause(ctx)
		case <-p.done:
			return queued, ErrPoolClosed
		}
	}
	return queued, nil
}

// dequeuedLocked tells the calls waiting for room in the queue that some
// was made.
func (p *Pool) dequeuedLocked() {
	if p.roomMade != nil {
		close(p.roomMade)
		p.roomMade = nil
	}
}

// requeueLocked puts units back at the front of the queue, in order. If
// the pool is closing or broken, no worker will take them: it returns the
// error they must be released with instead, and the caller releases them.
func (p *Pool) requeueLocked(units ...*unit) error {
	switch {
	case len(units) == 0:
		return nil
	case p.closing:
		return ErrPoolClosed
	case p.broken != nil:
		return p.broken
	}
	p.queue.pushFront(units...)
	return nil
}

func (p *Pool) popLocked() *unit {
	u := p.queue.pop()
	if u != nil {
		p.dequeuedLocked()
	}
	return u
}

// release hands a unit's outcome to its call. Every submitted unit is
// released exactly once.
func (p *Pool) release(u *unit, res wire.Result, err error) {
	u.dropHandles()
	p.mu.Lock()
	p.outstanding--
	if err != nil {
		p.stats.TasksFailed += int64(u.n)
	} else {
		p.stats.TasksFailed += int64(len(res.Failures))
		p.stats.TasksDone += int64(u.n - len(res.Failures))
	}
	if p.outstanding == 0 && p.drained != nil {
		select {
		case <-p.drained:
		default:
			close(p.drained)
		}
	}
	p.mu.Unlock()
	u.c.sink.resolve(u, res, err)
}

// cancelCall fails the queued units of c with its context's cause, and has
// the workers running its other units cancel them.
func (p *Pool) cancelCall(c *call) {
	p.mu.Lock()
	queued := p.queue.removeCall(c)
	p.cancelLocked(queued, func(x *call) bool { return x == c })
}

// cancelLocked fails the queued units, and those of the calls that match,
// with their calls' context's cause, and has the workers running their
// other units cancel them. It unlocks p.mu.
func (p *Pool) cancelLocked(queued []*unit, match func(*call) bool) {
	p.cancels++
	p.dequeuedLocked()
	running, stop := p.run.stopLocked(match)
	p.mu.Unlock()
	for _, u := range append(queued, running...) {
		p.release(u, wire.Result{}, context.Cause(u.c.ctx))
	}
	stop()
}

// A ctxWatch cancels the ApplyAsync calls in progress on its context when
// it ends: one context.AfterFunc for them all. (One each costs an insert
// into and a delete from the context's map of children per call: with
// 50,000 calls on one context, the parent's hottest spot.)
type ctxWatch struct {
	ctx   context.Context
	calls int
	stop  func() bool
}

// watch counts one more call in progress on ctx, which must be of a
// comparable type, and returns its watch; or nil if ctx cannot be a map
// key after all (a comparable struct whose interface field holds a slice).
func (p *Pool) watch(ctx context.Context) (w *ctxWatch) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	defer func() {
		if recover() != nil {
			w = nil
		}
	}()
	w = p.watches[ctx]
	if w == nil {
		if p.watches == nil {
			p.watches = make(map[context.Context]*ctxWatch)
		}
		// The callback captures nw, not w: the deferred recover assigns w,
		// so a callback that captured it would move it to the heap on
		// every call, found or not.
		nw := &ctxWatch{ctx: ctx}
		p.watches[ctx] = nw
		nw.stop = context.AfterFunc(ctx, func() { p.ctxDone(nw) })
		w = nw
	}
	w.calls++
	return w
}

// unwatch counts one call on w's context less.
func (p *Pool) unwatch(w *ctxWatch) {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	if w.calls--; w.calls == 0 && p.watches[w.ctx] == w {
		delete(p.watches, w.ctx)
		w.stop()
	}
}

// ctxDone cancels the calls made with w's context, which has ended.
func (p *Pool) ctxDone(w *ctxWatch) {
	p.wmu.Lock()
	if p.watches[w.ctx] == w {
		delete(p.watches, w.ctx)
	}
	p.wmu.Unlock()
	match := func(c *call) bool { return c.ctx == w.ctx }
	p.mu.Lock()
	p.cancelLocked(p.queue.removeWhere(match), match)
}

func (p *Pool) wakeAll() {
	for _, s := range p.slots {
		s.poke()
	}
}

// startFailed counts a worker that failed to start. After crashLoop
// failures in a row the pool is broken: what is queued fails, and calls
// fail at once with the last start error (wrapping ErrWorkerStart), rather
// than wait for workers that may never come. Supervisors keep trying, and
// the first worker that starts mends the pool.
func (p *Pool) startFailed(err error) {
	const crashLoop = 5
	p.mu.Lock()
	p.startFails++
	var failed []*unit
	if p.startFails >= crashLoop && !p.anyReadyLocked() {
		p.broken = fmt.Errorf("%w: %d workers in a row failed to start (the pool keeps trying); the last: %w", ErrWorkerStart, p.startFails, err)
		failed = p.queue.removeAll()
		p.dequeuedLocked() // calls waiting for room fail now, not at their deadline
	}
	broken := p.broken
	p.mu.Unlock()
	for _, u := range failed {
		p.release(u, wire.Result{}, broken)
	}
}

// anyReadyLocked reports whether some worker is ready to take tasks.
func (p *Pool) anyReadyLocked() bool {
	for _, s := range p.slots {
		if s.state == slotServing {
			return true
		}
	}
	return false
}
