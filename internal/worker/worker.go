// Package worker is the loop a worker process runs: handshake with its
// parent, then run the tasks it is sent, one at a time, until its
// connection closes.
package worker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mp/mp/internal/rawio"
	"github.com/go-mp/mp/internal/spawn"
	"github.com/go-mp/mp/internal/wire"
)

// Handler runs a registered function over a task's n encoded arguments and
// returns their encoded results. It runs the items through each, which
// calls item(ctx, i) for every i in [0, n), in order, each with its own
// context, deadline and recovery: an item's error or panic is recorded as a
// failure of that item, and the others run. A non-nil error from the
// Handler (the arguments or results could not be coded) fails every item.
type Handler func(ctx context.Context, args []byte, n int, each func(item func(ctx context.Context, i int) error)) (values []byte, err error)

// Config is what the worker loop needs from the package that registers functions.
type Config struct {
	// Out, if set, carries the frames the worker sends its parent (a
	// pipe); else they go on the connection.
	Out *os.File

	Fingerprint string
	Lookup      func(name string) (Handler, bool)
	Describe    func(error) wire.ErrorInfo // how an error crosses the wire
	OnHello     func(wire.Hello)           // called with the parent's hello before any task
	// NotRegistered is the error wrapped for a task of an unknown function.
	NotRegistered error
	// OnFDs receives the descriptors of handles, by the IDs the parent
	// knows them by, before the first task that passes them. It owns them.
	OnFDs func(ids []uint64, fds []int)
	// OnForget drops handles the parent has closed.
	OnForget func(ids []uint64)
	// WithTask gives a task's context what its function may read of it:
	// its ID (the frame's, unless the task carries its caller's) and its
	// attempt.
	WithTask func(ctx context.Context, id uint64, attempt int) context.Context
	// Warm names a registered function of an int, run once with 0 by a
	// spare worker while it waits for its parent's hello, so that the
	// first task does not pay for code and data touched the first time.
	Warm string
	// TaskTimeout is the error wrapped around an item's error when the item
	// failed with context.DeadlineExceeded because its own timeout (the
	// pool's TaskTimeout) passed, not its call's deadline.
	TaskTimeout error
}

// Exit codes of a worker that stops on its own.
const (
	ExitOK        = 0 // the parent closed the connection, or a one-shot task succeeded
	ExitTaskError = 1 // a one-shot task returned an error or panicked
	ExitProtocol  = 3 // the parent spoke another protocol or build
	ExitOverrun   = 4 // an item of a chunk overran its timeout and ignored its context
)

// OverrunGrace is how long past its timeout an item of a chunk may run, to
// heed its cancelled context, before its worker reports it and exits.
const OverrunGrace = 100 * time.Millisecond

type task struct {
	id     uint64
	body   wire.Task
	ctx    context.Context    // set once it runs
	cancel context.CancelFunc // set once it runs
}

type server struct {
	cfg   Config
	conn  net.Conn
	fds   *wire.FDReader // nil if conn is not a Unix socket
	hello wire.Hello     // the parent's

	wmu sync.Mutex
	w   *wire.Writer

	replies chan struct{} // poked when revoked grows
	revoked []uint64      // tasks revoked, to be told; guarded by mu

	mu      sync.Mutex
	queue   []*task
	running *task
	item    int           // the item of running that runs, if watched; -1 if none
	ready   chan struct{} // poked when queue grows
}

// Serve runs the worker loop on conn and returns the process exit code.
func Serve(conn net.Conn, cfg Config) int {
	dieWithParent()
	s := &server{cfg: cfg, conn: conn, ready: make(chan struct{}, 1), item: -1}
	var r *wire.Reader
	if uc, ok := conn.(*net.UnixConn); ok {
		raw := rawio.New(uc)
		s.fds = wire.NewFDReader(raw)
		r = wire.NewReader(s.fds, 0)
		if cfg.Out != nil {
			s.w = wire.NewWriter(rawio.NewFile(cfg.Out), 0)
		} else {
			s.w = wire.NewWriter(raw, 0)
		}
	} else {
		r = wire.NewReader(conn, 0)
		s.w = wire.NewWriter(conn, 0)
	}
	me := wire.NewHello(cfg.Fingerprint)
	me.PID = os.Getpid()
	if err := s.w.Write(wire.KindHello, 0, wire.MarshalHello(me)); err != nil {
		return ExitOK // the parent is already gone
	}
	if spawn.IsSpare && cfg.Warm != "" {
		s.warm()
	}
	f, err := r.Read()
	if err != nil {
		return ExitOK
	}
	if f.Kind != wire.KindHello {
		fmt.Fprintf(os.Stderr, "mp: worker: expected a hello, got a %v frame\n", f.Kind)
		return ExitProtocol
	}
	if s.hello, err = wire.ParseHello(f.Payload, me); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return ExitProtocol
	}
	if s.hello.MaxProcs > 0 {
		runtime.GOMAXPROCS(s.hello.MaxProcs)
	}
	s.w.SetMax(s.hello.MaxFrame)
	r.SetMax(s.hello.MaxFrame)
	if cfg.OnHello != nil {
		cfg.OnHello(s.hello)
	}
	if s.hello.OneShot {
		// Its one task is read here, and runs on this goroutine without a
		// hand-off from the reader's: a fresh process pays for every
		// goroutine it wakes. (No other goroutine reads the queue yet.)
		for len(s.queue) == 0 {
			s.handle(s.readFrame(r))
		}
	}
	s.replies = make(chan struct{}, 1)
	go s.reply()
	go s.read(r)
	return s.run()
}

// warm runs cfg.Warm once, as a task would run, and throws the result away.
func (s *server) warm() {
	args, err := wire.Marshal(0)
	if err != nil {
		return
	}
	t := &task{body: wire.Task{Func: s.cfg.Warm, N: 1, Args: args}}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	res := s.execute(t)
	t.cancel()
	wire.AppendResultHeader(nil, res)
}

// exit ends the worker process with code, and takes its descendants with
// it: whatever its tasks started must not outlive it.
func exit(code int) {
	spawn.KillDescendants()
	os.Exit(code)
}

// dieWithParent makes the worker kill its descendants, then its process
// group and itself, when it gets the parent-death signal: the signal reaches
// the worker only, not the processes its tasks started. It is a signal
// nothing else sends, so the worker's own handling of SIGTERM and the like
// is its tasks' business.
func dieWithParent() {
	if spawn.ParentDeathSignal == nil {
		return
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, spawn.ParentDeathSignal)
	go func() {
		<-sigs
		spawn.KillDescendants()
		spawn.KillOwnGroup()
		os.Exit(ExitOK) // not reached where the group kill works
	}()
}

// read receives frames until the connection ends. EOF means the parent is
// gone or retires this worker; either way the worker must stop, even in the
// middle of a task, so read exits the process itself.
func (s *server) read(r *wire.Reader) {
	for {
		s.handle(s.readFrame(r))
	}
}

// readFrame reads the next frame from the parent, and exits the process
// if there is none.
func (s *server) readFrame(r *wire.Reader) wire.Frame {
	f, err := r.Read()
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			fmt.Fprintf(os.Stderr, "mp: worker %d: reading from parent: %v\n", os.Getpid(), err)
		}
		exit(ExitOK)
	}
	return f
}

// handle acts on a frame from the parent.
func (s *server) handle(f wire.Frame) {
	switch f.Kind {
	case wire.KindTask:
		body, err := wire.ParseTask(f.Payload)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mp: worker %d: %v\n", os.Getpid(), err)
			exit(ExitProtocol)
		}
		s.mu.Lock()
		s.queue = append(s.queue, &task{id: f.ID, body: body})
		s.mu.Unlock()
		select {
		case s.ready <- struct{}{}:
		default:
		}
	case wire.KindFDs:
		if err := s.receiveFDs(f.Payload); err != nil {
			fmt.Fprintf(os.Stderr, "mp: worker %d: %v\n", os.Getpid(), err)
			exit(ExitProtocol)
		}
	case wire.KindForget:
		ids, err := wire.ParseFDs(f.Payload)
		if err != nil {
			fmt.Fprintf(os.Stderr, "mp: worker %d: %v\n", os.Getpid(), err)
			exit(ExitProtocol)
		}
		if s.cfg.OnForget != nil {
			s.cfg.OnForget(ids)
		}
	case wire.KindCancel:
		s.cancel(f.ID, true)
	case wire.KindRevoke:
		s.cancel(f.ID, false)
	default:
		fmt.Fprintf(os.Stderr, "mp: worker %d: unexpected %v frame\n", os.Getpid(), f.Kind)
		exit(ExitProtocol)
	}
}

// receiveFDs takes the descriptors a KindFDs frame names, which arrived
// with its bytes, and hands them over to Config.OnFDs.
func (s *server) receiveFDs(payload []byte) error {
	ids, err := wire.ParseFDs(payload)
	if err != nil {
		return err
	}
	if s.fds == nil {
		return fmt.Errorf("%w: descriptors on a connection that cannot carry them", wire.ErrMalformed)
	}
	fds, err := s.fds.Take(len(ids))
	if err != nil {
		return err
	}
	if s.cfg.OnFDs != nil {
		s.cfg.OnFDs(ids, fds)
	}
	return nil
}

// cancel revokes task id if it is still queued, and if running is set,
// cancels its context if it runs.
func (s *server) cancel(id uint64, running bool) {
	s.mu.Lock()
	if running && s.running != nil && s.running.id == id {
		s.running.cancel()
		s.mu.Unlock()
		return
	}
	for i, t := range s.queue {
		if t.id == id {
			s.queue = append(s.queue[:i], s.queue[i+1:]...)
			s.revoked = append(s.revoked, id)
			s.mu.Unlock()
			select {
			case s.replies <- struct{}{}:
			default:
			}
			return
		}
	}
	s.mu.Unlock() // already done: its result is on its way
}

// reply sends the revoked frames that cancel queued. It runs in a
// goroutine of its own, because the read loop must never wait for a
// write: the parent may be writing to us, and reading only once its write
// is done, while our write waits for it to read.
func (s *server) reply() {
	for range s.replies {
		s.sendRevoked()
	}
}

// sendRevoked sends the revoked frames of the tasks cancel took out of the
// queue, if any. run calls it too, before each task: a worker that dies in
// the task after a revoked one must have said it revoked that one first,
// or the parent, which holds both in flight, would blame the revoked one
// for the death. It holds wmu from taking the IDs to sending them, so that
// run cannot start a task while reply is between the two.
func (s *server) sendRevoked() {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	ids := s.revoked
	s.revoked = nil
	s.mu.Unlock()
	for _, id := range ids {
		s.w.Write(wire.KindRevoked, id, nil)
	}
}

func (s *server) next() *task {
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			t := s.queue[0]
			s.queue = s.queue[1:]
			ctx := context.Background()
			if !t.body.Deadline.IsZero() {
				ctx, t.cancel = context.WithDeadline(ctx, t.body.Deadline)
			} else {
				ctx, t.cancel = context.WithCancel(ctx)
			}
			if s.cfg.WithTask != nil {
				id := t.body.Ref
				if id == 0 {
					id = t.id
				}
				ctx = s.cfg.WithTask(ctx, id, t.body.Attempt)
			}
			s.running = t
			t.ctx = ctx
			s.mu.Unlock()
			return t
		}
		s.mu.Unlock()
		<-s.ready
	}
}

// errGoexit fails a task that called runtime.Goexit.
var errGoexit = errors.New("mp: the task called runtime.Goexit")

// run executes tasks in the order they arrived, one at a time, on this
// goroutine, with no hand-off between goroutines for each (a one-shot
// worker's task runs on the goroutine that read it), and returns the
// process's exit code. A task that calls runtime.Goexit (which recover
// cannot stop) ends this goroutine, and with it run's caller: run then
// fails that task, and goes on in a new goroutine, which exits the process
// when it is done.
func (s *server) run() int {
	exited := true
	defer func() {
		if !exited {
			return
		}
		if v := recover(); v != nil {
			panic(v) // not Goexit: the codec panicked, which ends the worker
		}
		s.mu.Lock()
		t := s.running
		s.mu.Unlock()
		res := wire.Result{N: t.body.N}
		s.failAll(&res, errGoexit)
		if code, stop := s.finish(t, res); stop {
			os.Exit(code)
		}
		go func() { os.Exit(s.run()) }()
	}()
	for {
		t := s.next()
		s.sendRevoked()
		if code, stop := s.finish(t, s.execute(t)); stop {
			exited = false
			return code
		}
	}
}

// finish ends task t, sends its result, and says whether the worker stops,
// and with what exit code.
func (s *server) finish(t *task, res wire.Result) (code int, stop bool) {
	t.cancel()
	s.mu.Lock()
	s.running = nil
	s.mu.Unlock()
	if err := s.write(wire.KindResult, t.id, wire.AppendResultHeader(nil, res), res.Values); err != nil {
		fmt.Fprintf(os.Stderr, "mp: worker %d: sending result: %v\n", os.Getpid(), err)
		return ExitOK, true
	}
	if s.hello.OneShot {
		if len(res.Failures) > 0 {
			return ExitTaskError, true
		}
		return ExitOK, true
	}
	return 0, false
}

func (s *server) write(kind wire.Kind, id uint64, parts ...[]byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.w.Write(kind, id, parts...)
}

// execute runs every item of t. A panic in a task is caught; one in the
// codec (a MarshalCBOR method of the argument or result type) kills the
// worker, and the parent reports its exit.
func (s *server) execute(t *task) wire.Result {
	res := wire.Result{N: t.body.N}
	h, ok := s.cfg.Lookup(t.body.Func)
	if !ok {
		s.failAll(&res, fmt.Errorf("%w: %q, in worker %d", s.cfg.NotRegistered, t.body.Func, os.Getpid()))
		return res
	}
	var progress *progressReport
	if t.body.N > 1 {
		progress = s.reportProgress(t)
		defer progress.stop() // before the result is sent: no report follows it
	}
	each := func(item func(context.Context, int) error) {
		for i := 0; i < t.body.N; {
			i = s.runFrom(t, i, item, &res, progress)
		}
	}
	// The handler runs on the loop's goroutine: a task that calls
	// runtime.Goexit ends it, and loop goes on in another.
	values, err := h(t.ctx, t.body.Args, t.body.N, each)
	if err != nil {
		s.failAll(&res, err)
		return res
	}
	res.Values = values
	if s.hello.ReportRSS {
		res.RSS = rss()
	}
	if size := len(wire.AppendResultHeader(nil, res)) + len(values); size > s.w.Max() {
		var err error = &wire.FrameTooLargeError{Size: int64(size), Limit: s.w.Max()}
		if res.N > 1 {
			err = fmt.Errorf("mp: the %d results of one chunk total %d bytes: use a smaller chunk size or raise WorkerOptions.MaxMessageSize: %w", res.N, size, err)
		}
		s.failAll(&res, err)
	}
	return res
}

// ProgressInterval is how often a worker running a chunk of several items
// tells its parent how many are done, so that a call's Progress moves
// while a long chunk runs.
const ProgressInterval = 100 * time.Millisecond

// progressReport sends the progress of a running chunk every
// ProgressInterval, from a timer (no goroutine waits while items are quick).
type progressReport struct {
	done atomic.Int32 // items done

	mu      sync.Mutex
	stopped bool
	sent    int32
	timer   *time.Timer
}

func (s *server) reportProgress(t *task) *progressReport {
	pr := &progressReport{}
	pr.mu.Lock() // the callback reads pr.timer
	defer pr.mu.Unlock()
	pr.timer = time.AfterFunc(ProgressInterval, func() {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if pr.stopped {
			return
		}
		if k := pr.done.Load(); k > pr.sent {
			pr.sent = k
			s.write(wire.KindProgress, t.id, binary.BigEndian.AppendUint32(nil, uint32(k)))
		}
		pr.timer.Reset(ProgressInterval)
	})
	return pr
}

// stop ends the reports; none is sent once it returns.
func (pr *progressReport) stop() {
	pr.mu.Lock()
	pr.stopped = true
	pr.mu.Unlock()
	pr.timer.Stop()
}

// watch arms the watchdog of item i of chunk t. The parent cannot tell
// which item of a chunk runs; the worker can, so it is the worker that
// reports an item that ignores its context past its timeout, and exits so
// that the parent can replace it and run the chunk's other items again.
func (s *server) watch(t *task, i int) *time.Timer {
	s.mu.Lock()
	s.item = i
	s.mu.Unlock()
	return time.AfterFunc(t.body.Timeout+OverrunGrace, func() {
		// Hold the write lock to the end: run needs it to send the task's
		// result, which therefore cannot follow this report. Not s.mu:
		// the read loop takes it, and must never wait for a write.
		s.wmu.Lock()
		s.mu.Lock()
		overran := s.running == t && s.item == i
		s.mu.Unlock()
		if !overran {
			s.wmu.Unlock()
			return
		}
		s.w.Write(wire.KindOverrun, t.id, binary.BigEndian.AppendUint32(nil, uint32(i)))
		exit(ExitOverrun)
	})
}

// failAll fails every item of res with err. The report is one failure
// for all the items (wire.Result.All), whatever their number: one per item
// made the report of a chunk whose results were too large larger still,
// and over the limit itself (issue 19).
func (s *server) failAll(res *wire.Result, err error) {
	res.Values = nil
	res.Failures = append(res.Failures[:0], wire.Failure{Index: 0, Status: wire.StatusError, Info: s.errorInfo(err)})
	res.All = res.N > 1
}

// runFrom runs the items of t from i on, under one recover for all of
// them (not a closure and a defer for each): a panic fails its item, and
// runFrom returns the index after it, for the caller to go on from.
func (s *server) runFrom(t *task, i int, item func(context.Context, int) error, res *wire.Result, progress *progressReport) (next int) {
	defer func() {
		if v := recover(); v != nil {
			res.Failures = append(res.Failures, panicFailure(i, v))
			if progress != nil {
				progress.done.Add(1)
			}
			next = i + 1
		}
	}()
	for ; i < t.body.N; i++ {
		var err error
		if t.body.Timeout > 0 {
			err = s.runTimed(t, i, item)
		} else {
			err = item(t.ctx, i)
		}
		if err != nil {
			res.Failures = append(res.Failures, wire.Failure{Index: i, Status: wire.StatusError, Info: s.errorInfo(err)})
		}
		if progress != nil {
			progress.done.Add(1)
		}
	}
	return i
}

// runTimed runs item i of t under its own timeout (the pool's TaskTimeout),
// with the watchdog of a chunk. An error that the timeout caused, and not
// the call's deadline, is wrapped in Config.TaskTimeout.
func (s *server) runTimed(t *task, i int, item func(context.Context, int) error) error {
	ctx, cancel := context.WithTimeout(t.ctx, t.body.Timeout)
	defer cancel()
	if t.body.N > 1 && t.body.Timeout <= math.MaxInt64-OverrunGrace {
		watchdog := s.watch(t, i)
		defer func() { // deferred: a task may end with runtime.Goexit, or panic
			watchdog.Stop()
			s.mu.Lock()
			s.item = -1
			s.mu.Unlock()
		}()
	}
	err := item(ctx, i)
	if err != nil && s.cfg.TaskTimeout != nil && errors.Is(err, context.DeadlineExceeded) &&
		ctx.Err() != nil && t.ctx.Err() == nil {
		err = &timeoutError{timeout: s.cfg.TaskTimeout, err: err}
	}
	return err
}

// timeoutError is the error of an item that its timeout ended. It reads
// as the timeout's error with the item's own in place of the context
// error that ends it: "mp: task timeout: context deadline exceeded" for
// an item that returned ctx.Err(), not that with ": context deadline
// exceeded" twice. It matches both.
type timeoutError struct{ timeout, err error }

func (e *timeoutError) Error() string {
	msg := e.timeout.Error()
	if prefix, ok := strings.CutSuffix(msg, context.DeadlineExceeded.Error()); ok {
		return prefix + e.err.Error()
	}
	return msg + ": " + e.err.Error()
}

func (e *timeoutError) Unwrap() []error { return []error{e.timeout, e.err} }

// panicFailure is the failure of item i that panicked with v.
func panicFailure(i int, v any) wire.Failure {
	info := wire.PanicInfo{Value: fmt.Sprint(v), Stack: debug.Stack()}
	data, err := wire.MarshalAny(info)
	if err != nil {
		data, _ = wire.MarshalAny(wire.PanicInfo{Value: "unprintable panic value"})
	}
	return wire.Failure{Index: i, Status: wire.StatusPanic, Info: data}
}

func (s *server) errorInfo(err error) []byte {
	info := wire.ErrorInfo{Type: fmt.Sprintf("%T", err), Msg: err.Error()}
	if s.cfg.Describe != nil {
		info = s.cfg.Describe(err)
	}
	data, merr := wire.MarshalAny(info)
	if merr != nil {
		panic(merr) // ErrorInfo holds strings only
	}
	return data
}
