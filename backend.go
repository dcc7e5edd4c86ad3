package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// A Backend runs a pool's tasks somewhere other than in worker processes
// of the pool's own: on other machines, through a message broker (package
// natspool). Give one to NewPool in PoolOptions.Backend, and every call
// (Map, Imap, Apply, ...) works as with local workers: the pool still cuts
// the input into tasks, queues them fairly between calls, bounds the queue,
// orders and collects the results, and reports progress; the backend only
// carries each task to a worker and its outcome back.
//
// The worker that gets a task runs it with [RunTask] on a local pool, so
// that it has all of a local pool's isolation, and the backend returns
// what RunTask returned. The pool calls Run and Cancel from any goroutine.
type Backend interface {
	// Capacity is how many tasks the backend takes at once: the pool keeps
	// up to that many running. It is called once, by NewPool.
	Capacity() int
	// Run starts t. The backend calls t.Done exactly once, from any
	// goroutine, with what RunTask returned on the worker, or with an
	// error if the task could not be run (its workers were lost, say).
	Run(t *Task)
	// Cancel asks the backend to stop t, which the pool has failed with its
	// call's cause. The pool calls it only after Run(t) has returned. t.Done
	// may still follow; the pool ignores it.
	Cancel(t *Task)
	// Close stops the backend, once the pool has failed what was running.
	Close() error
}

// Task is one task of a pool that has a Backend: a chunk of consecutive
// items of a call, encoded.
type Task struct {
	ID       uint64        // unique among the pool's tasks
	Func     string        // the registered function
	Items    int           // how many items Args holds: 1, or a chunk's length
	Args     []byte        // the items, encoded
	Attempt  int           // 0 the first time it is run
	Deadline time.Time     // the call's deadline, if any
	Timeout  time.Duration // PoolOptions.TaskTimeout, per item; 0 if none

	r    *remote
	once sync.Once
	// Guarded by the pool's mutex: the dispatcher is handing t to Run, and
	// t was cancelled meanwhile (the dispatcher cancels it after Run).
	running, cancelled bool
}

// Done hands the task's outcome to its pool: result is what RunTask
// returned on the worker, or err says why there is none. Only the first
// call counts.
func (t *Task) Done(result []byte, err error) {
	t.once.Do(func() { t.r.done(t, result, err) })
}

// remote is the runner of a pool with a Backend: a dispatcher goroutine
// hands queued units to the backend, up to its capacity.
type remote struct {
	p       *Pool
	backend Backend
	wake    chan struct{}   // wakes the dispatcher
	tasks   map[*Task]*unit // the tasks the backend runs; guarded by p.mu
}

func newRemote(p *Pool, b Backend) *remote {
	r := &remote{p: p, backend: b, wake: make(chan struct{}, 1), tasks: make(map[*Task]*unit)}
	p.wg.Add(1)
	go r.dispatch()
	return r
}

func (r *remote) check(u *unit) error {
	if len(u.handles) > 0 {
		return fmt.Errorf("mp: a %v cannot go to the workers of a pool with a Backend, which may be on other machines: shared objects are for this machine's processes", u.handles[0].kind)
	}
	return nil
}

// kick wakes the dispatcher.
func (r *remote) kick() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// dispatch hands queued units to the backend, up to its capacity, until
// the pool closes.
func (r *remote) dispatch() {
	p := r.p
	defer p.wg.Done()
	for {
		select {
		case <-r.wake:
		case <-p.done:
			return
		}
		var run []*Task
		var drop []*unit
		p.mu.Lock()
		for len(r.tasks) < p.opts.Workers && !p.closing {
			u := p.popLocked()
			if u == nil {
				break
			}
			if u.c.ctx.Err() != nil { // queued after its call was cancelled
				drop = append(drop, u)
				continue
			}
			p.nextID++
			t := &Task{ID: p.nextID, Func: u.c.fn, Items: u.n, Args: u.args, Attempt: u.attempt,
				Deadline: u.c.deadline, Timeout: u.c.timeout, r: r, running: true}
			r.tasks[t] = u
			run = append(run, t)
		}
		p.mu.Unlock()
		for _, u := range drop {
			p.release(u, wire.Result{}, context.Cause(u.c.ctx))
		}
		for _, t := range run {
			r.backend.Run(t)
			p.mu.Lock()
			t.running = false
			cancel := t.cancelled
			p.mu.Unlock()
			if cancel {
				r.backend.Cancel(t)
			}
		}
	}
}

// done releases the unit of t with its outcome, unless the pool released
// it already (cancelled, or closed).
func (r *remote) done(t *Task, result []byte, err error) {
	p := r.p
	p.mu.Lock()
	u, ok := r.tasks[t]
	delete(r.tasks, t)
	p.mu.Unlock()
	if !ok {
		return
	}
	var res wire.Result
	if err == nil {
		res, err = decodeOutcome(result, u.n)
	}
	p.release(u, res, err)
	r.kick()
}

// stopLocked takes the tasks of the calls that match (of every call, if
// match is nil) away from the backend: the pool releases their units, then
// stop cancels them.
func (r *remote) stopLocked(match func(*call) bool) (units []*unit, stop func()) {
	var tasks []*Task
	for t, u := range r.tasks {
		if match == nil || match(u.c) {
			delete(r.tasks, t)
			units = append(units, u)
			if t.running {
				t.cancelled = true // the dispatcher cancels it once Run returns
			} else {
				tasks = append(tasks, t)
			}
		}
	}
	return units, func() {
		for _, t := range tasks {
			r.backend.Cancel(t)
		}
		r.kick()
	}
}

func (r *remote) countLocked(st *Stats) {
	st.Workers = r.p.opts.Workers
	for _, u := range r.tasks {
		st.TasksRunning += u.n
	}
}

func (r *remote) close() { r.backend.Close() }

// outcomeResult starts the outcome of a task run by RunTask: a result
// body follows, where the items whose worker died, or that ran past their
// timeout, fail with StatusLost.
const outcomeResult = 'R'

// outcomeErr is how the failure of a unit on a worker host crosses (in a
// StatusLost item): enough to make the same error types on the other side.
type outcomeErr struct {
	Kind     string // "exit", "timeout", "canceled", "deadline" or "other"
	Msg      string
	PID      int
	Code     int // exit code, or -1
	Signal   int // the signal's number, if one killed it
	Output   []byte
	Reason   string
	Sentinel string
	Host     string
}

// RunTask runs a task that a Backend carried here on p, this machine's
// pool, as a local call would, with all of p's isolation (a crash fails
// only this task, TaskTimeout kills it, and so on), and returns its
// outcome, encoded for Task.Done on the other side. t is the task as the
// submitting pool made it (its ID, Func, Items, Args, Deadline, Timeout)
// with Attempt counting the times it was carried here before; its
// function sees ID and Attempt in its TaskInfo. A zero Timeout is p's
// TaskTimeout. The error is for a task that could not be started at all
// (p is closed, or Func is not registered here); the outcome carries the
// task's own failures.
func RunTask(ctx context.Context, p *Pool, t *Task) ([]byte, error) {
	if ctx == nil {
		return nil, nilContext("RunTask")
	}
	fn, items, args, deadline, timeout := t.Func, t.Items, t.Args, t.Deadline, t.Timeout
	if items < 1 {
		return nil, fmt.Errorf("mp: RunTask: %d items", items)
	}
	if _, ok := lookupHandler(fn); !ok {
		return nil, fmt.Errorf("%w: %q, on this worker host", ErrNotRegistered, fn)
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	if timeout == 0 {
		timeout = p.opts.TaskTimeout
	}
	c := &rawCollector{done: make(chan struct{})}
	c.fn, c.timeout = fn, timeout
	c.ref, c.attempt = max(t.ID, 1), t.Attempt
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	defer c.cancel(nil)
	c.deadline, _ = c.ctx.Deadline()
	c.sink = c
	c.handles = false
	c.stopWatch = context.AfterFunc(c.ctx, func() { p.cancelCall(&c.call) })
	defer c.stopWatch()
	u := newUnit(&c.call, 0, items, rawEncoder(args, items), 0)
	u.args = args
	c.pending = 1
	if _, err := p.submit(ctx, []*unit{u}, false); err != nil {
		return nil, err
	}
	<-c.done
	if c.err != nil {
		return nil, c.err
	}
	b := append([]byte{outcomeResult}, wire.AppendResultHeader(nil, c.res)...)
	return append(b, c.res.Values...), nil
}

// rawEncoder splits a chunk's encoded items, for a chunk whose worker died
// (see unit.split): it re-encodes a part of the CBOR array.
func rawEncoder(args []byte, items int) func(off, n int) ([]byte, []*handle, error) {
	if items == 1 {
		return func(off, n int) ([]byte, []*handle, error) { return args, nil, nil }
	}
	return func(off, n int) ([]byte, []*handle, error) {
		all, err := wire.SplitArray(args)
		if err != nil {
			return nil, nil, err
		}
		if off+n > len(all) {
			return nil, nil, fmt.Errorf("%w: %d items, not %d", wire.ErrMalformed, len(all), items)
		}
		if n == 1 {
			return all[off], nil, nil
		}
		b, err := wire.MarshalAny(all[off : off+n])
		return b, nil, err
	}
}

// rawCollector is the sink of RunTask: it gathers the parts of its one
// unit (a chunk may be split and run again) into one result.
type rawCollector struct {
	call
	mu      sync.Mutex
	pending int
	parts   map[int]wire.Result // by first item
	res     wire.Result
	err     error
	done    chan struct{}
}

func (c *rawCollector) resolve(u *unit, res wire.Result, err error) {
	if err != nil {
		// The unit's own failure (its worker died, it ran past its
		// timeout): a failure of each of its items, as the other side's
		// pool would see it.
		info, _ := wire.MarshalAny(describeOutcome(err))
		res = wire.Result{N: u.n}
		for i := range u.n {
			res.Failures = append(res.Failures, wire.Failure{Index: i, Status: wire.StatusLost, Info: info})
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.pending--
	if c.parts == nil {
		c.parts = make(map[int]wire.Result)
	}
	c.parts[u.index] = res
	if c.pending == 0 {
		c.res, c.err = joinParts(c.parts)
		close(c.done)
	}
}

func (c *rawCollector) grow(units int) {
	c.mu.Lock()
	c.pending += units
	c.mu.Unlock()
}

func (c *rawCollector) progress(u *unit, k int) {}
func (c *rawCollector) forget(u *unit)          {}

// joinParts makes one result of the results of consecutive parts of a
// chunk, by their first item.
func joinParts(parts map[int]wire.Result) (wire.Result, error) {
	if len(parts) == 1 {
		for _, r := range parts {
			return r, nil
		}
	}
	var out wire.Result
	var values []wire.RawMessage
	for i := 0; ; {
		r, ok := parts[i]
		if !ok {
			break
		}
		for _, f := range r.Failures {
			f.Index += i
			out.Failures = append(out.Failures, f)
		}
		switch {
		case len(r.Failures) == r.N:
			for range r.N {
				values = append(values, wire.RawMessage{0xf6}) // null: a zero value
			}
		case r.N == 1:
			values = append(values, wire.RawMessage(r.Values))
		default:
			vs, err := wire.SplitArray(r.Values)
			if err != nil {
				return out, err
			}
			values = append(values, vs...)
		}
		out.N += r.N
		i += r.N
	}
	b, err := wire.MarshalAny(values)
	out.Values = b
	return out, err
}

// describeOutcome is how a unit's failure crosses from a worker host.
func describeOutcome(err error) outcomeErr {
	o := outcomeErr{Kind: "other", Msg: err.Error(), Code: -1}
	var exit *ExitError
	switch {
	case errors.As(err, &exit):
		o.Kind, o.PID, o.Code, o.Output, o.Reason = "exit", exit.PID, exit.ExitCode(), exit.Output, exit.Reason
		if sig, ok := exit.Signal().(syscall.Signal); ok {
			o.Signal = int(sig)
		}
		o.Host, _ = os.Hostname()
	case errors.Is(err, ErrTaskTimeout):
		o.Kind = "timeout"
	case errors.Is(err, context.DeadlineExceeded):
		o.Kind = "deadline"
	case errors.Is(err, context.Canceled):
		o.Kind = "canceled"
	default:
		o.Sentinel = describeError(err).Sentinel
	}
	return o
}

// error makes the error a unit's failure on a worker host was, with its
// type: an *ExitError, ErrTaskTimeout, a context error.
func (o outcomeErr) error() error {
	switch o.Kind {
	case "exit":
		return &ExitError{PID: o.PID, Output: o.Output, Reason: o.Reason, Host: o.Host,
			remote: &remoteExit{code: o.Code, signal: syscall.Signal(o.Signal)}}
	case "timeout":
		return &prefixedError{prefix: "mp: ", err: errors.New(trimPrefix(errors.New(o.Msg))), sentinel: ErrTaskTimeout}
	case "deadline":
		return context.DeadlineExceeded
	case "canceled":
		return context.Canceled
	}
	return &RemoteError{Type: "error", Msg: o.Msg, sentinel: o.Sentinel}
}

// decodeOutcome decodes what RunTask returned for a task of n items.
func decodeOutcome(b []byte, n int) (wire.Result, error) {
	if len(b) == 0 || b[0] != outcomeResult {
		return wire.Result{}, fmt.Errorf("%w: a task outcome that is not mp's", wire.ErrMalformed)
	}
	res, err := wire.ParseResult(b[1:])
	if err == nil && res.N != n {
		err = fmt.Errorf("%w: %d results for %d items", wire.ErrMalformed, res.N, n)
	}
	return res, err
}
