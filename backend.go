package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"github.com/go-mp/mp/internal/seam"
	"github.com/go-mp/mp/internal/wire"
)

func init() {
	seam.NewPool = func(ctx context.Context, opts any, b seam.Backend) (any, error) {
		o, ok := opts.(PoolOptions)
		if !ok {
			return nil, fmt.Errorf("mp: the options of a pool with a backend are a %T, not PoolOptions", opts)
		}
		p, err := newPool(ctx, o, b)
		if err != nil {
			return nil, err // not a nil *Pool in a non-nil any
		}
		return p, nil
	}
	seam.RunBatch = func(ctx context.Context, pool any, b *seam.Batch) ([]byte, error) {
		p, ok := pool.(*Pool)
		if !ok {
			return nil, fmt.Errorf("mp: RunBatch on a %T, not a *Pool", pool)
		}
		return runBatch(ctx, p, b)
	}
	seam.Registered = func(name string) bool {
		_, ok := lookupHandler(name)
		return ok
	}
	seam.Fingerprint = freeze
}

// remote is the runner of a pool with a backend (natspool's): a
// dispatcher goroutine hands queued units to the backend, up to its
// capacity.
type remote struct {
	p       *Pool
	backend seam.Backend
	wake    chan struct{}               // wakes the dispatcher
	tasks   map[*seam.Batch]*remoteTask // the batches the backend runs; guarded by p.mu
}

// remoteTask is the pool's side of a batch the backend runs.
type remoteTask struct {
	b *seam.Batch
	u *unit
	// Guarded by the pool's mutex: the dispatcher is handing the batch to
	// Run, and it was cancelled meanwhile (the dispatcher cancels it after
	// Run).
	running, cancelled bool
}

func newRemote(p *Pool, b seam.Backend) *remote {
	r := &remote{p: p, backend: b, wake: make(chan struct{}, 1), tasks: make(map[*seam.Batch]*remoteTask)}
	p.wg.Add(1)
	go r.dispatch()
	return r
}

func (r *remote) check(u *unit) error {
	if len(u.handles) > 0 {
		return fmt.Errorf("mp: a %v cannot go to the workers of a natspool pool, which may be on other machines: shared objects are for this machine's processes", u.handles[0].kind)
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
		var run []*remoteTask
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
			t := seam.NewBatch(r.done)
			t.ID, t.Func, t.Items, t.Args, t.Attempt = p.nextID, u.c.fn, u.n, u.args, u.attempt
			t.Deadline, t.Timeout = u.c.deadline, u.c.timeout
			rt := &remoteTask{b: t, u: u, running: true}
			r.tasks[t] = rt
			run = append(run, rt)
		}
		p.mu.Unlock()
		for _, u := range drop {
			p.release(u, wire.Result{}, context.Cause(u.c.ctx))
		}
		for _, rt := range run {
			r.backend.Run(rt.b)
			p.mu.Lock()
			rt.running = false
			cancel := rt.cancelled
			p.mu.Unlock()
			if cancel {
				r.backend.Cancel(rt.b)
			}
		}
	}
}

// done releases the unit of t with its outcome, unless the pool released
// it already (cancelled, or closed).
func (r *remote) done(t *seam.Batch, result []byte, err error) {
	p := r.p
	p.mu.Lock()
	rt, ok := r.tasks[t]
	delete(r.tasks, t)
	p.mu.Unlock()
	if !ok {
		return
	}
	u := rt.u
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
	var tasks []*seam.Batch
	for t, rt := range r.tasks {
		if match == nil || match(rt.u.c) {
			delete(r.tasks, t)
			units = append(units, rt.u)
			if rt.running {
				rt.cancelled = true // the dispatcher cancels it once Run returns
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
	for _, rt := range r.tasks {
		st.TasksRunning += rt.u.n
	}
}

func (r *remote) close() { r.backend.Close() }

// outcomeResult starts the outcome of a task run by runBatch: a result
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
	Protocol string // what the worker sent, if it was killed for breaking the protocol
	Sentinel string
	Host     string
}

// runBatch runs a batch that a backend carried here on p, this machine's
// pool, as a local call would, with all of p's isolation (a crash fails
// only this task, TaskTimeout kills it, and so on), and returns its
// outcome, encoded for Batch.Done on the other side. t is the batch as the
// submitting pool made it (its ID, Func, Items, Args, Deadline, Timeout)
// with Attempt counting the times it was carried here before; its
// function sees ID and Attempt in its TaskInfo. A zero Timeout is p's
// TaskTimeout. The error is for a task that could not be started at all
// (p is closed, or Func is not registered here); the outcome carries the
// task's own failures.
func runBatch(ctx context.Context, p *Pool, t *seam.Batch) ([]byte, error) {
	if ctx == nil {
		return nil, nilContext("RunBatch")
	}
	fn, items, args, deadline, timeout := t.Func, t.Items, t.Args, t.Deadline, t.Timeout
	if items < 1 {
		return nil, fmt.Errorf("mp: RunBatch: %d items", items)
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

// rawCollector is the sink of runBatch: it gathers the parts of its one
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
		if exit.kill.cause == causeProtocol {
			o.Protocol = trimPrefix(exit.kill.err)
		}
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
		exit := &ExitError{PID: o.PID, Output: o.Output, Reason: o.Reason, Host: o.Host,
			remote: &remoteExit{code: o.Code, signal: syscall.Signal(o.Signal)}}
		if o.Protocol != "" {
			exit.kill = killReason{causeProtocol, errors.New(o.Protocol)}
		}
		return exit
	case "timeout":
		return &prefixedError{prefix: "mp: ", err: errors.New(trimPrefix(errors.New(o.Msg))), sentinel: ErrTaskTimeout}
	case "deadline":
		return context.DeadlineExceeded
	case "canceled":
		return context.Canceled
	}
	return &RemoteError{Type: "error", Msg: o.Msg, sentinel: o.Sentinel}
}

// decodeOutcome decodes what runBatch returned for a task of n items.
func decodeOutcome(b []byte, n int) (wire.Result, error) {
	if len(b) == 0 || b[0] != outcomeResult {
		return wire.Result{}, fmt.Errorf("%w: a task outcome that is not mp's", wire.ErrMalformed)
	}
	res, err := wire.ParseResult(b[1:])
	if err == nil && res.N != n {
		err = fmt.Errorf("%w: %d results for %d items", wire.ErrMalformed, res.N, n)
	}
	if err == nil {
		res.Expand()
	}
	return res, err
}
