package mp

import (
	"context"
)

// Apply calls f(arg) in one of the pool's workers and returns its result,
// as Python's Pool.apply. It blocks until the call is done. Its errors are
// those of [Map], with Index -1 in the *[TaskError]. Of the options, only
// [NoWait] applies: with it, Apply fails at once with [ErrQueueFull] when
// the pool's queue is full. Cost: one round trip to a worker (see
// BenchmarkApply and BenchmarkFloor in bench/, and the README's table).
// When its task goes to an idle worker, the caller
// reads the result itself: no other goroutine wakes it, and it polls for
// the result for a few microseconds before it sleeps (while polling pays
// off), as the worker polls for its next task.
func Apply[T, R any](ctx context.Context, p *Pool, f Func[T, R], arg T, opts ...CallOption) (R, error) {
	c, err := startApply(ctx, p, f, arg, opts, nil)
	if err != nil {
		var zero R
		return zero, err
	}
	defer c.finish()
	return c.waitOne()
}

// Future is the pending result of [ApplyAsync] or [MapAsync]. Its methods
// are safe for concurrent use. The zero Future is not usable: Futures come
// from those calls only.
type Future[R any] struct {
	done  chan struct{}
	value R
	err   error
}

// ApplyAsync starts f(arg) in one of the pool's workers and returns at
// once, as Python's Pool.apply_async. Cancelling ctx cancels the call. The
// call runs whether or not anyone waits for it. Its Future is resolved as
// the result arrives, with no goroutine per call (see BenchmarkApplyAsync
// in bench/, and the README's table). Where the pool's queue is bounded
// and full, ApplyAsync blocks until there is room, or with
// [NoWait] returns a Future that holds [ErrQueueFull].
func ApplyAsync[T, R any](ctx context.Context, p *Pool, f Func[T, R], arg T, opts ...CallOption) *Future[R] {
	fu := &Future[R]{done: make(chan struct{})}
	if _, err := startApply(ctx, p, f, arg, opts, fu); err != nil {
		fu.err = err
		close(fu.done)
	}
	return fu
}

// startApply submits the one task of an Apply. The caller must call
// finish, unless fu is set: then the outcome goes to fu, and the call
// finishes by itself.
func startApply[T, R any](ctx context.Context, p *Pool, f Func[T, R], arg T, opts []CallOption, fu *Future[R]) (*collector[R], error) {
	e, err := f.begin(ctx)
	if err != nil {
		return nil, err
	}
	c := newApplyCollector[R](ctx, p, f.name, newCallConfig(opts))
	c.handles = e.handles
	if c.future = fu; fu != nil {
		c.watch()
	} else {
		c.claimable = true // its caller waits in waitOne, and reads there
	}
	if err := makeOne(&c.call, &c.oneUnit, arg, p.maxMessage()); err != nil { // the argument cannot be sent
		c.finish()
		return nil, c.taskError(0, err)
	}
	c.units[0] = &c.oneUnit
	if err := c.submit(c.units[:], nil); err != nil {
		c.finish()
		return nil, callError(f.name, err)
	}
	return c, nil
}

// Wait waits for the call to complete and returns its result. If ctx ends
// first, Wait returns ctx's error and the call goes on (cancel the context
// given to ApplyAsync to stop it). Wait may be called any number of times.
func (fu *Future[R]) Wait(ctx context.Context) (R, error) {
	if ctx == nil {
		var zero R
		return zero, nilContext("Future.Wait")
	}
	select {
	case <-fu.done:
		return fu.value, fu.err
	case <-ctx.Done():
		var zero R
		return zero, context.Cause(ctx)
	}
}

// Done returns a channel that is closed when the result is ready.
func (fu *Future[R]) Done() <-chan struct{} { return fu.done }
