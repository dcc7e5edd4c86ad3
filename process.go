package mp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mp/mp/internal/wire"
)

// Process is a worker process started by [Spawn] to run one function call,
// as Python's multiprocessing.Process. Its methods are safe for concurrent use.
//
// The process is reaped as soon as it exits, whether or not Wait is called:
// a Process never leaves a zombie behind.
type Process[R any] struct {
	wc      *workerConn
	fn      string
	done    chan struct{} // closed once the process has exited, and result and err are set
	settled chan struct{} // closed once result and err are set: at the result, or at done
	result  R
	err     error
	stop    func() bool // stops the ctx watch
	handles []*handle   // shared objects in the argument, referenced until the end
	refill  func()      // starts the next warm spare, if this process was one
	killed  atomic.Pointer[error]
}

var spawnCount atomic.Int64

// Spawn starts a new process that runs f(ctx, arg) and exits. It returns
// once the process has started; use [Process.Wait] (or [Process.Result],
// which does not wait for the exit) for the result.
//
// The argument is encoded before anything starts, so an argument that
// cannot be encoded, or a function that is not registered, is an error
// here, and no process is left behind. Spawn returns [ErrNoMain] if this
// process did not call [Main], and an error wrapping [ErrWorkerStart] if
// the process cannot be started. A process that starts but fails its
// handshake (it does not call Main, or is another build) is reported by
// Wait, with an error wrapping ErrWorkerStart.
//
// Cancelling ctx kills the process (and its process group), as
// exec.CommandContext does; the function's own context is not ctx but one
// that ends at ctx's deadline, if it has one.
//
// Cost: a new process of the program's binary, most of it the dynamic
// loader and the Go runtime starting, which is more than Python's fork
// takes; a binary built with CGO_ENABLED=0 needs no loader, and starts
// faster. With [WorkerOptions.KeepSpare], a Spawn that finds a spare
// process ready skips the start. See BenchmarkSpawn and BenchmarkSpawnWarm
// in bench/, and the README's table.
func Spawn[T, R any](ctx context.Context, f Func[T, R], arg T, o WorkerOptions) (*Process[R], error) {
	if ctx == nil {
		return nil, nilContext("Spawn")
	}
	fp, err := ready()
	if err != nil {
		return nil, err
	}
	e, err := f.begin(ctx)
	if err != nil {
		return nil, err
	}
	payload, handles, err := encodeArgs(arg, e.handles)
	if err != nil {
		return nil, fmt.Errorf("mp: %s: encoding the argument %T: %w", f.name, arg, err)
	}
	deadline, _ := ctx.Deadline()
	head := wire.AppendTaskHeader(nil, wire.Task{Func: f.name, Deadline: deadline, N: 1})
	if size, limit := len(head)+len(payload), o.maxMessage(); size > limit {
		releaseAll(handles)
		return nil, callError(f.name, messageError(&wire.FrameTooLargeError{Size: int64(size), Limit: limit}))
	}
	hello := wire.NewHello(fp)
	hello.Name = fmt.Sprintf("Process-%d", spawnCount.Add(1))
	hello.OneShot = true
	var wc *workerConn
	warm := false
	if o.spareable() {
		if wc = takeSpare(); wc != nil {
			// Hello and task go out together; the worker's hello was read
			// and checked when the spare started.
			wc.w.Add(wire.KindHello, 0, wc.setHello(o, hello))
			err := wc.sendHandles(handles, nil) // flushes the hello first, if any
			if err == nil {
				wc.w.Add(wire.KindTask, 1, head, payload)
				err = wc.w.Flush()
			}
			warm = err == nil
			if !warm {
				wc.kill()
			}
		}
		if !warm {
			refillSpare(fp, o)
		}
	}
	if !warm {
		if wc, err = startWorker(o, hello); err != nil {
			releaseAll(handles)
			return nil, err
		}
	}
	p := &Process[R]{wc: wc, fn: f.name, done: make(chan struct{}), settled: make(chan struct{}), handles: handles}
	p.stop = context.AfterFunc(ctx, func() {
		cause := context.Cause(ctx)
		p.killed.Store(&cause)
		wc.child.KillGroup()
	})
	if warm {
		head, payload = nil, nil // sent
		// The next spare starts once this one has answered, so that its
		// start does not compete with this call for the CPU.
		p.refill = func() { refillSpare(fp, o) }
	}
	go p.run(o.startTimeout(), head, payload)
	return p, nil
}

// run sends the task (unless head is nil: a warm spare has it already),
// completes the handshake, and waits for the result and the exit.
func (p *Process[R]) run(startTimeout time.Duration, head, payload []byte) {
	defer close(p.done)
	settled := false
	defer func() {
		if !settled {
			close(p.settled)
		}
	}()
	defer p.stop()
	defer releaseAll(p.handles)
	wc := p.wc
	defer wc.close()
	sent := make(chan error, 1)
	if head == nil {
		sent <- nil
	} else {
		go func() {
			err := wc.sendHandles(p.handles, nil)
			if err == nil {
				err = wc.w.Write(wire.KindTask, 1, head, payload)
			}
			sent <- err
		}()
		if err := wc.handshake(startTimeout); err != nil {
			<-sent
			p.err = p.withCause(err)
			return
		}
	}
	res, err := p.readResult()
	if p.refill != nil {
		p.refill()
	}
	if werr := <-sent; werr != nil && err == nil {
		err = werr
	}
	if err != nil && !peerGone(err) {
		wc.child.KillGroup() // alive but not speaking the protocol
		p.err = p.withCause(fmt.Errorf("mp: %s: worker %d: %w", p.fn, wc.child.PID(), err))
		wc.exitError(killReason{})
		return
	}
	if err == nil {
		// The outcome is known: Result returns it now, while the process
		// exits (which takes the kernel a few milliseconds more).
		values, errs := decodeResult[R](res)
		p.result = values[0]
		if errs != nil {
			p.err = errs[0]
			if errors.Is(p.err, wire.ErrMalformed) {
				p.err = callError(p.fn, p.err) // not the function's error: say whose result
			}
		}
		settled = true
		close(p.settled)
	}
	exit := wc.exitError(killReason{})
	if err != nil {
		p.err = p.withCause(exit)
	}
}

// readResult reads the one result a one-shot worker sends.
func (p *Process[R]) readResult() (wire.Result, error) {
	f, err := p.wc.r.Read()
	if err != nil {
		return wire.Result{}, err
	}
	if f.Kind != wire.KindResult {
		return wire.Result{}, fmt.Errorf("%w: expected a result, got a %v frame", wire.ErrMalformed, f.Kind)
	}
	res, err := wire.ParseResult(f.Payload)
	if err == nil && res.N != 1 {
		err = fmt.Errorf("%w: %d results for one task", wire.ErrMalformed, res.N)
	}
	if err == nil {
		res.Expand()
	}
	return res, err
}

// withCause adds the context's cause to the error of a process ctx killed.
func (p *Process[R]) withCause(err error) error {
	if cause := p.killed.Load(); cause != nil {
		return fmt.Errorf("mp: %s: %w: %w", p.fn, *cause, err)
	}
	return err
}

// decodeOne returns the value of the one item of res, or its error.
func decodeOne[R any](res wire.Result) (R, error) {
	var v R
	err := decodeOneInto(res, &v)
	return v, err
}

// decodeOneInto is decodeOne into *p, which holds R's zero value, and is
// left so if the item failed.
func decodeOneInto[R any](res wire.Result, p *R) error {
	if len(res.Failures) > 0 {
		return failureError(res.Failures[0])
	}
	if err := wire.UnmarshalInto(res.Values, p); err != nil {
		var zero R
		*p = zero
		return fmt.Errorf("mp: decoding the result: %w", err)
	}
	return nil
}

// decodeResult returns the values of the items of res, and if any failed,
// their errors: the function's own (a *RemoteError), a *PanicError, or a
// decoding error.
func decodeResult[R any](res wire.Result) (values []R, errs []error) {
	var err error
	switch {
	case len(res.Failures) == res.N:
		values = make([]R, res.N)
	case res.N == 1:
		values = make([]R, 1)
		err = wire.UnmarshalInto(res.Values, &values[0])
	default:
		values, err = wire.Unmarshal[[]R](res.Values)
		if err == nil && len(values) != res.N {
			err = fmt.Errorf("%w: %d results for %d items", wire.ErrMalformed, len(values), res.N)
		}
	}
	if err != nil {
		err = fmt.Errorf("mp: decoding the result: %w", err)
		values, errs = make([]R, res.N), make([]error, res.N)
		for i := range errs {
			errs[i] = err
		}
	}
	for _, f := range res.Failures {
		if errs == nil {
			errs = make([]error, res.N)
		}
		var zero R
		values[f.Index], errs[f.Index] = zero, failureError(f)
	}
	return values, errs
}

// failureError turns a failed item into the error callers see: a
// *RemoteError or a *PanicError.
func failureError(f wire.Failure) error {
	switch f.Status {
	case wire.StatusError:
		var info wire.ErrorInfo
		if err := wire.UnmarshalAny(f.Info, &info); err != nil {
			return err
		}
		return remoteError(info)
	case wire.StatusLost:
		var o outcomeErr
		if err := wire.UnmarshalAny(f.Info, &o); err != nil {
			return err
		}
		return o.error()
	case wire.StatusPanic:
		var info wire.PanicInfo
		if err := wire.UnmarshalAny(f.Info, &info); err != nil {
			return err
		}
		return &PanicError{Value: info.Value, Stack: info.Stack}
	}
	return fmt.Errorf("%w: item status %d", wire.ErrMalformed, f.Status)
}

// PID returns the process ID.
func (p *Process[R]) PID() int { return p.wc.child.PID() }

// Done returns a channel that is closed when the process has exited and
// its result is ready for Wait.
func (p *Process[R]) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns the function's result.
// The error is the function's own error (a [*RemoteError]), a
// [*PanicError] if it panicked, or an [*ExitError] if the process died
// before it returned (killed, os.Exit, a fatal runtime error); if the
// Spawn context killed it, the error also matches that context's error.
//
// Wait may be called any number of times, from any goroutine, and returns
// the same result each time. If ctx ends first, Wait returns ctx's error
// and leaves the process running.
func (p *Process[R]) Wait(ctx context.Context) (R, error) {
	if ctx == nil {
		var zero R
		return zero, nilContext("Process.Wait")
	}
	select {
	case <-p.done:
		return p.result, p.err
	case <-ctx.Done():
		var zero R
		return zero, context.Cause(ctx)
	}
}

// Result waits for the function's result, as Wait does, but returns it as
// soon as the process has sent it, without waiting for the process to
// exit (an exit takes the kernel a few milliseconds). If the process dies
// before it sends a result, Result returns what Wait does, once it has
// exited. If ctx ends first, Result returns ctx's error and leaves the
// process running.
func (p *Process[R]) Result(ctx context.Context) (R, error) {
	if ctx == nil {
		var zero R
		return zero, nilContext("Process.Result")
	}
	select {
	case <-p.settled:
		return p.result, p.err
	case <-ctx.Done():
		var zero R
		return zero, context.Cause(ctx)
	}
}

// ExitCode returns the exit code of the exited process: 0 if the function
// succeeded, 1 if it returned an error or panicked, another code if it
// called os.Exit, and -1 if a signal killed it or it has not exited yet.
func (p *Process[R]) ExitCode() int {
	select {
	case <-p.done:
		if st := p.wc.child.State(); st != nil {
			return st.ExitCode()
		}
	default:
	}
	return -1
}

// Signal sends sig to the process. It returns os.ErrProcessDone if the
// process has exited.
func (p *Process[R]) Signal(sig os.Signal) error { return p.wc.child.Signal(sig) }

// Terminate asks the process to stop with SIGTERM: it dies, unless the
// function handles SIGTERM itself (with os/signal) to stop gracefully. What
// the process started in its process group is killed once it has exited.
func (p *Process[R]) Terminate() error { return p.Signal(syscall.SIGTERM) }

// Kill kills the process and its process group with SIGKILL. It returns
// os.ErrProcessDone if the process has exited.
func (p *Process[R]) Kill() error {
	err := p.wc.child.KillGroup()
	if errors.Is(err, os.ErrProcessDone) {
		return os.ErrProcessDone
	}
	return err
}
