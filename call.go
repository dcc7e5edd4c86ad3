package mp

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/go-mp/mp/internal/wire"
	"github.com/go-mp/mp/internal/worker"
)

// call is one Map, Imap or Apply call in a pool: the context its tasks run
// under, and where their outcomes go.
type call struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	fn       string
	timeout  time.Duration
	deadline time.Time
	sink     interface {
		resolve(u *unit, res wire.Result, err error)
		grow(units int)          // the call has this many more units pending
		progress(u *unit, k int) // the first k items of running unit u are done
		forget(u *unit)          // u was replaced by other units: its progress is void
	}
	stopWatch func() bool
	// ref and attempt, for a call that runs a batch a backend carried here
	// (runBatch): what its function sees as its TaskInfo.
	ref     uint64
	attempt int
	nowait  bool // fail with ErrQueueFull rather than wait for room in the queue
	handles bool // its argument type may hold shared objects
	// An Apply's caller reads its own result from the worker, rather than
	// be woken by the slot's reader: claimable until it first looks
	// (readFor), and claimed by the slot, idle until then, that its unit
	// went to. Guarded by Pool.mu.
	claimable bool
	claimed   *slot
	claimedWC *workerConn
	// queued is &queue while the call has units in its pool's runQueue,
	// nil while it has none. Guarded by Pool.mu.
	queued *callUnits
	queue  callUnits
}

// unit is one task: a chunk of consecutive items of a call.
//
// A unit's life, and who owns it at each step:
//
//	made      by its call (newUnit, cut, split): immutable fields set, not yet counted
//	queued    in the pool's runQueue, counted in Pool.outstanding (submit, requeue)
//	in flight in slot.inflight, sent to one worker; its flight state guarded by Pool.mu
//	  -> released  its outcome passed to the call's sink (Pool.release), exactly once
//	  -> queued    again, not at fault: revoked or stolen before it ran, or behind the
//	               task its worker was killed for (flight reset, attempt kept)
//	  -> replaced  by smaller units (split or cut) when its worker died under it or an
//	               item overran; it is then never released (Pool.replaceLocked)
//
// A unit is in exactly one of the queue, one slot's inflight, or gone.
type unit struct {
	c     *call
	index int // of its first item in the call's input
	n     int
	head  []byte // the task frame's header
	args  []byte // the encoded arguments
	// encode encodes items [off, off+n) of the input it was made from,
	// for split; the unit's are from base on. (One function for all the
	// units of an input: no closure per unit.)
	encode func(off, n int) ([]byte, []*handle, error)
	base   int
	// handles are the shared objects its arguments pass, each referenced
	// by the unit until it is released or replaced (see dropHandles).
	handles []*handle
	attempt int
	headBuf [64]byte // head's array, if it fits
	ref     uint64   // the ID its function sees (TaskInfo), given when first sent

	flight // guarded by the pool's mutex while the unit is in flight
}

// flight is the state of a unit sent to a worker. Its zero value is a unit
// that has not been sent; reset returns a unit to it, to be queued again.
type flight struct {
	id         uint64    // the task ID its worker knows it by
	failed     error     // the outcome, once decided by a cancel, a timeout or a kill
	cause      cause     // why it was stopped, for Stats
	splitting  bool      // overran its timeout: to be run again in smaller chunks
	overrun    int       // 1 + the index of the item its worker reported overrunning; 0 if none
	stolen     bool      // an idle worker wants it: revoke it from this one
	lost       bool      // its task could not be written: the worker was gone
	revokeSent bool      // the revoke (or cancel) frame for it went out
	killAt     time.Time // when its worker is killed, if it has not returned by then
}

// reset readies a unit that never ran, or that is to run again, for the queue.
func (u *unit) reset() { u.flight = flight{} }

// A chunk whose worker died, or that overran its timeout, is split into
// single items if it has up to splitSingles of them, so the item at fault is
// found in one more round; a larger one is split into splitParts chunks, so
// that the extra round trips stay few.
const (
	splitSingles = 256
	splitParts   = 16
)

// split divides a chunk whose worker died, or that overran its timeout,
// into smaller chunks to run again, so that the item at fault ends up alone
// and the others succeed.
func (u *unit) split() []*unit {
	parts := u.n
	if parts > splitSingles {
		parts = splitParts
	}
	out := make([]*unit, 0, parts)
	for i := range parts {
		out = append(out, u.cut(u.n*i/parts, u.n*(i+1)/parts))
	}
	return out
}

// cut returns a new unit of items [lo, hi) of u, to run again.
func (u *unit) cut(lo, hi int) *unit {
	if lo == 0 && hi == u.n { // all of it, as encoded (an Apply has no encode)
		part := newUnit(u.c, u.index, u.n, u.encode, u.base)
		part.attempt, part.args = u.attempt, u.args
		for _, h := range u.handles {
			if h.acquire() { // u holds it: it cannot fail
				part.handles = append(part.handles, h)
			}
		}
		return part
	}
	part := newUnit(u.c, u.index+lo, hi-lo, u.encode, u.base+lo)
	part.attempt = u.attempt
	// These items were encoded together before, so this cannot fail unless
	// encoding is not deterministic; if it does, the part fails.
	part.args, part.handles, part.failed = part.encode(part.base, part.n)
	return part
}

// budget is how long the parent lets u run before it takes it back: its
// timeout for a single item; for a chunk, the sum of its items' timeouts,
// since the worker itself reports an item that overruns.
func (u *unit) budget() time.Duration {
	t := u.c.timeout
	if u.n == 1 || t <= 0 {
		return t
	}
	if t > 1<<62 {
		return 1 << 62 // as good as none, and no overflow
	}
	per := t + worker.OverrunGrace
	if per > time.Duration(1<<62)/time.Duration(u.n) {
		return 1 << 62
	}
	return per*time.Duration(u.n) + worker.OverrunGrace
}

// timeoutError is the error of an item that ran past its timeout.
func timeoutError(timeout time.Duration) error {
	return &prefixedError{
		prefix: fmt.Sprintf("mp: task ran past its %v TaskTimeout and was killed: ", timeout),
		err:    context.DeadlineExceeded, sentinel: ErrTaskTimeout,
	}
}

// newUnit makes the unit of items [index, index+n) of c. It encodes them
// now; the pool's failure paths use the units that fail to encode.
func newUnit(c *call, index, n int, encode func(off, n int) ([]byte, []*handle, error), base int) *unit {
	u := new(unit)
	u.init(c, index, n, encode, base)
	return u
}

// init makes u a new unit, as newUnit does.
func (u *unit) init(c *call, index, n int, encode func(off, n int) ([]byte, []*handle, error), base int) {
	*u = unit{c: c, index: index, n: n, encode: encode, base: base}
	u.head = wire.AppendTaskHeader(u.headBuf[:0], wire.Task{Func: c.fn, Deadline: c.deadline, Timeout: c.timeout, N: n})
}

// makeOne encodes the argument of an Apply into its one unit, u (part of
// its collector: no allocation of its own).
func makeOne[T any](c *call, u *unit, arg T, limit int) error {
	args, handles, err := encodeArgs(arg, c.handles)
	if err != nil {
		return fmt.Errorf("mp: encoding the argument %T: %w", arg, err)
	}
	u.init(c, 0, 1, nil, 0)
	if size := len(args) + len(u.head); size > limit {
		releaseAll(handles)
		return messageError(&wire.FrameTooLargeError{Size: int64(size), Limit: limit})
	}
	u.args, u.handles = args, handles
	return nil
}

// dropHandles lets go of the unit's references to its shared objects:
// it is released, or replaced by parts that took their own.
func (u *unit) dropHandles() {
	releaseAll(u.handles)
	u.handles = nil
}

// makeUnits cuts items (the call's items from index on) into units of
// chunk items and encodes them. Items that cannot be encoded, or are over
// the message limit alone, come back as failures instead.
func makeUnits[T any](c *call, index int, items []T, chunk, limit int) (units []*unit, failures map[int]error) {
	encode := func(off, n int) ([]byte, []*handle, error) {
		if n == 1 {
			return encodeArgs(items[off], c.handles)
		}
		return encodeArgs(items[off:off+n], c.handles)
	}
	var cut func(off, n int)
	cut = func(off, n int) {
		u := newUnit(c, index+off, n, encode, off)
		args, handles, err := encode(off, n)
		if err == nil && len(args)+len(u.head) > limit {
			releaseAll(handles)
			err = messageError(&wire.FrameTooLargeError{Size: int64(len(args) + len(u.head)), Limit: limit})
		}
		if err == nil {
			u.args, u.handles = args, handles
			units = append(units, u)
			return
		}
		if n > 1 { // find the items at fault
			for i := range n {
				cut(off+i, 1)
			}
			return
		}
		if failures == nil {
			failures = make(map[int]error)
		}
		failures[index+off] = fmt.Errorf("mp: encoding the argument %T: %w", items[off], err)
	}
	for off := 0; off < len(items); off += chunk {
		cut(off, min(chunk, len(items)-off))
	}
	return units, failures
}

// batch is the outcome of consecutive items of a call: one task's.
type batch[R any] struct {
	index  int
	values []R     // the zero value where an item failed
	errs   []error // nil if no item failed; else a *TaskError where one did
}

func (b batch[R]) err(i int) error {
	if b.errs == nil {
		return nil
	}
	return b.errs[i]
}

// collector gathers the outcomes of a call's units as workers return them.
type collector[R any] struct {
	call
	pool    *Pool
	apply   bool       // an Apply or ApplyAsync: one unit, errors carry index -1
	future  *Future[R] // an ApplyAsync's, resolved by resolve itself
	units   [1]*unit   // an Apply's, to submit without a slice
	oneUnit unit       // an Apply's unit, in units[0] (replaced by a new one if it overruns)
	// quiet: the caller needs waking only when all is done, or (failFast)
	// at the first error: a Map without Progress. Waking it for every
	// outcome would cost a thread wake-up per task.
	quiet, failFast bool
	one             R // an Apply's outcome, once pending is 0
	oneErr          error
	shared          *ctxWatch // an ApplyAsync's watch on its ctx, shared with others on it
	// out, if set (a Map's), takes the values of units that succeed
	// whole, as they come: such a unit adds no batch to ready, only its
	// items to done.
	out []R

	mu      sync.Mutex
	ready   []batch[R]
	done    int           // items written to out
	pending int           // units submitted and not yet resolved
	notify  chan struct{} // poked when ready grows, or partial moves; an Apply's is made once its caller waits, under mu
	// Items done in units still running, by unit, as their workers
	// report them: kept only for a call with a Progress function.
	partial      map[*unit]int
	partialItems int
	moved        bool // partialItems changed since the last take
}

// newCollector starts a call on p. The caller must call finish.
func newCollector[R any](ctx context.Context, p *Pool, fn string, cfg callConfig) *collector[R] {
	c := &collector[R]{pool: p, notify: make(chan struct{}, 1)}
	c.fn, c.timeout, c.nowait = fn, p.opts.TaskTimeout, cfg.nowait
	if cfg.progress != nil {
		c.partial = make(map[*unit]int)
	}
	c.ctx, c.cancel = context.WithCancelCause(ctx)
	c.deadline, _ = ctx.Deadline()
	c.sink = c
	c.stopWatch = context.AfterFunc(c.ctx, func() { p.cancelCall(&c.call) })
	return c
}

// newApplyCollector starts an Apply or ApplyAsync on p. Its one unit is
// always resolved before the call ends, so it needs no context of its own
// to cancel what is left, and no watch at all on a context that cannot
// end: the cheapest call the pool has.
func newApplyCollector[R any](ctx context.Context, p *Pool, fn string, cfg callConfig) *collector[R] {
	c := &collector[R]{pool: p, apply: true} // notify: made by waitOne if it waits
	c.fn, c.timeout, c.nowait = fn, p.opts.TaskTimeout, cfg.nowait
	c.ctx, c.cancel = ctx, noCancel
	c.deadline, _ = ctx.Deadline()
	c.sink = c
	c.stopWatch = noStop
	return c
}

// watch has the call cancelled when its ctx ends, for an ApplyAsync, whose
// caller does not wait (an Apply watches ctx itself, in waitOne).
func (c *collector[R]) watch() {
	switch {
	case c.ctx.Done() == nil:
	case reflect.TypeOf(c.ctx).Comparable() && c.setShared(): // one watch for all on c.ctx
	default:
		p := c.pool
		c.stopWatch = context.AfterFunc(c.ctx, func() { p.cancelCall(&c.call) })
	}
}

// setShared counts the call on its ctx's shared watch, and reports whether
// it could.
func (c *collector[R]) setShared() bool {
	c.shared = c.pool.watch(c.ctx)
	return c.shared != nil
}

// unwatch stops the watch on an ApplyAsync's ctx.
func (c *collector[R]) unwatch() {
	if c.shared != nil {
		c.pool.unwatch(c.shared)
		c.shared = nil
	}
	c.stopWatch()
}

func noCancel(error) {}
func noStop() bool   { return true }

// resolveOne is resolve for an Apply: one value, no batch.
func (c *collector[R]) resolveOne(res wire.Result, err error) {
	if fu := c.future; fu != nil {
		// An ApplyAsync: resolve its Future here, on the reader's
		// goroutine, rather than keep a goroutine waiting for every Future.
		if err == nil {
			err = decodeOneInto(res, &fu.value) // into the Future: no copy
		}
		if err != nil {
			err = c.taskError(-1, err)
		}
		c.mu.Lock()
		c.pending--
		c.mu.Unlock()
		fu.err = err
		close(fu.done)
		c.unwatch()
		return
	}
	var v R
	if err == nil {
		v, err = decodeOne[R](res)
	}
	if err != nil {
		err = c.taskError(-1, err)
	}
	c.mu.Lock()
	c.one, c.oneErr = v, err
	c.pending--
	notify := c.notify
	c.mu.Unlock()
	if notify != nil {
		c.poke()
	}
}

// waitOne waits for an Apply's outcome. If ctx ends first, it cancels the
// call, and waits for the outcome that follows: the unit's release with
// ctx's cause.
func (c *collector[R]) waitOne() (R, error) {
	done := c.ctx.Done()
	c.pool.readFor(&c.call, c)
	for {
		c.mu.Lock()
		if c.pending == 0 {
			v, err := c.one, c.oneErr
			c.mu.Unlock()
			return v, err
		}
		if c.notify == nil { // mostly, the caller read its outcome itself
			c.notify = make(chan struct{}, 1)
		}
		notify := c.notify
		c.mu.Unlock()
		select {
		case <-notify:
		case <-done:
			done = nil
			c.pool.cancelCall(&c.call)
		}
	}
}

// enough reports whether an Apply's outcome is in, for readFor.
func (c *collector[R]) enough() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.pending == 0
}

func (c *collector[R]) resolve(u *unit, res wire.Result, err error) {
	if c.apply {
		c.resolveOne(res, err)
		return
	}
	b := batch[R]{index: u.index}
	if err == nil {
		b.values, b.errs = decodeResult[R](res)
	} else {
		b.values, b.errs = make([]R, u.n), make([]error, u.n)
		for i := range b.errs {
			b.errs[i] = err
		}
	}
	for i, err := range b.errs {
		if err != nil {
			b.errs[i] = c.taskError(u.index+i, err)
		}
	}
	direct := c.out != nil && b.errs == nil
	if direct {
		// Its own items of out, which the caller reads only once all
		// are done (or after finish, which waits for every unit).
		copy(c.out[u.index:], b.values)
	}
	c.mu.Lock()
	if direct {
		c.done += len(b.values)
	} else {
		c.ready = append(c.ready, b)
	}
	c.pending--
	c.forgetLocked(u)
	wake := !c.quiet || c.pending == 0 || (c.failFast && b.errs != nil)
	c.mu.Unlock()
	if wake {
		c.poke()
	}
}

func (c *collector[R]) progress(u *unit, k int) {
	c.mu.Lock()
	if c.partial == nil {
		c.mu.Unlock()
		return
	}
	if old := c.partial[u]; k > old {
		c.partial[u] = k
		c.partialItems += k - old
		c.moved = true
	}
	c.mu.Unlock()
	c.poke()
}

func (c *collector[R]) forget(u *unit) {
	c.mu.Lock()
	c.forgetLocked(u)
	c.mu.Unlock()
}

func (c *collector[R]) forgetLocked(u *unit) {
	if k, ok := c.partial[u]; ok {
		c.partialItems -= k
		delete(c.partial, u)
	}
}

func (c *collector[R]) grow(units int) {
	c.mu.Lock()
	c.pending += units
	c.mu.Unlock()
}

func (c *collector[R]) poke() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *collector[R]) taskError(index int, err error) error {
	if c.apply {
		index = -1
	}
	return &TaskError{Func: c.fn, Index: index, Err: err}
}

// submit sends units to the pool and records failures found while encoding.
func (c *collector[R]) submit(units []*unit, failures map[int]error) error {
	if len(failures) > 0 {
		c.mu.Lock()
		for i, err := range failures {
			c.ready = append(c.ready, batch[R]{index: i, values: make([]R, 1), errs: []error{c.taskError(i, err)}})
		}
		c.mu.Unlock()
		c.poke()
	}
	if len(units) == 0 {
		return nil
	}
	for _, u := range units {
		u.c = &c.call
	}
	c.mu.Lock()
	c.pending += len(units)
	c.mu.Unlock()
	queued, err := c.pool.submit(c.ctx, units, c.nowait)
	if err != nil {
		c.mu.Lock()
		c.pending -= len(units) - queued
		c.mu.Unlock()
		for _, u := range units[queued:] {
			u.dropHandles()
		}
	}
	return err
}

// take waits until outcomes are ready, or nothing is pending, or (for a
// call with Progress) running units report progress, and returns the
// ready outcomes and how many units are still pending.
func (c *collector[R]) take(buf []batch[R]) ([]batch[R], int) {
	for {
		c.mu.Lock()
		if len(c.ready) > 0 || c.pending == 0 || c.moved {
			c.moved = false
			buf = append(buf[:0], c.ready...)
			clear(c.ready)
			c.ready = c.ready[:0]
			pending := c.pending
			c.mu.Unlock()
			return buf, pending
		}
		c.mu.Unlock()
		<-c.notify
	}
}

// doneDirect returns how many items resolve wrote to out.
func (c *collector[R]) doneDirect() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.done
}

// finish cancels whatever of the call is still running, waits until the
// pool has released all of its units (so its workers are free again), and
// returns. Outcomes still to come are dropped.
func (c *collector[R]) finish() {
	c.mu.Lock()
	pending := c.pending
	c.mu.Unlock()
	if pending == 0 {
		c.unwatch() // the common case: nothing left to cancel
		c.cancel(errCallDone)
		return
	}
	c.cancel(errCallDone)
	c.pool.cancelCall(&c.call)
	for {
		if _, pending := c.take(nil); pending == 0 {
			return
		}
	}
}

// errCallDone is the cause of the cancellation of a call's leftovers when
// its caller has what it needs (the first error of a Map, or a break out of
// an Imap loop).
var errCallDone = errors.New("mp: call ended by its caller")

// progressed returns how many items of the call are done, counting those
// that running units reported, given done, the items of resolved units.
// It never goes back: items of a unit whose worker died are counted until
// they are reported again.
func (c *collector[R]) progressed(done int, last *int) int {
	c.mu.Lock()
	n := done + c.partialItems
	c.mu.Unlock()
	*last = max(*last, n)
	return *last
}
